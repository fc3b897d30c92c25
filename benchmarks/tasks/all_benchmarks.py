"""Task `all`: every benchmark of the suite (or --only some), each in its own process, into
results.json and RESULTS.md (benchmarks/suite.py says how)."""

from benchmarks import suite, suite_flags
from benchmarks.flags import subset
from benchmarks.registry import SUITE_NAMES


def add_arguments(parser):
    suite_flags.add_arguments(parser)
    parser.add_argument("--only", type=subset("--only", SUITE_NAMES, "benchmark(s)"),
                        default=None,
                        help="comma-separated benchmarks to run (default: all): "
                             + ", ".join(SUITE_NAMES))


def main(args):
    return suite.main(args, args.only or list(SUITE_NAMES))
