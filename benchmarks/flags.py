"""The command-line flags the tasks share: argparse types, each of which checks one flag's
value and, when it does not fit, names the flag and what it expects (argparse then exits 2
with that line); and the flags of every task that times rows in benchmark processes."""

import argparse


def int_at_least(flag, lowest):
    """Type of an integer flag >= `lowest`: '3' -> 3."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < lowest:
            raise argparse.ArgumentTypeError(f"{flag}={text}: expected an integer >= {lowest}")
        return value
    return parse


def int_list(flag):
    """Type of a list of positive integers: '512,1024' -> [512, 1024]."""
    def parse(text):
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            values = []
        if not values or min(values) < 1:
            raise argparse.ArgumentTypeError(
                f"{flag}={text!r}: expected comma-separated positive integers, e.g. 512,1024")
        return values
    return parse


def subset(flag, known, noun):
    """Type of a comma-separated subset of `known` names: the names given, in `known`'s
    order; `noun` names them in the error ('unknown benchmark(s) [...]')."""
    def parse(text):
        names = {n.strip() for n in text.split(",") if n.strip()}
        unknown = sorted(names - set(known))
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"{flag}={text!r}: unknown {noun} {unknown}; expected a comma-separated "
                f"subset of {', '.join(known)}")
        return [n for n in known if n in names]
    return parse


def add_process_arguments(parser, repeats):
    """Adds the flags of a task whose benchmark processes time rows: --repeats (`repeats`
    says its defaults, e.g. "5; smoke 2"), --warmup, --threads, --omp_wait_policy, --timeout
    and --logs."""
    parser.add_argument("--repeats", type=int_at_least("--repeats", 1), default=None,
                        help=f"timed runs per row (default {repeats})")
    parser.add_argument("--warmup", type=int_at_least("--warmup", 0), default=None,
                        help="untimed runs before timing, tracing included (default 1)")
    parser.add_argument("--threads", type=int_at_least("--threads", 1), default=2,
                        help="TF intra/inter-op and torch threads (default 2)")
    parser.add_argument("--omp_wait_policy", choices=("PASSIVE", "ACTIVE", "default"),
                        default=None,
                        help="OMP_WAIT_POLICY of the benchmark processes (torch's OpenMP "
                             "threads): PASSIVE sleeps when idle, which a CPU shared with other "
                             "work needs; 'default' leaves the environment's (default: PASSIVE "
                             "with --smoke, else 'default')")
    parser.add_argument("--timeout", type=int_at_least("--timeout", 1), default=None,
                        help="seconds before a benchmark process is killed (default 3600; "
                             "smoke 300)")
    parser.add_argument("--logs", default=None,
                        help="keep each benchmark process's spec, result and log here "
                             "(default: a temporary folder, deleted; a failed process's last "
                             "log lines are printed and kept in the JSON)")
