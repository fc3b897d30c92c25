"""The arguments of the suite's benchmarks, the same for `python -m benchmarks all` and for
one benchmark alone (`python -m benchmarks inference ...`)."""

import argparse
import os

from benchmarks.flags import add_process_arguments, int_at_least, int_list
from benchmarks.results_files import DEFAULT_OUT, DEFAULT_RESULTS_MD
from benchmarks.suite_settings import DEFAULT_PRECISIONS, POLICIES


def policy_list(text):
    """argparse type of --precisions: 'float32,mixed_bfloat16' -> a list of POLICIES, each
    once, in the order given."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in values if v not in POLICIES]
    if unknown or not values:
        raise argparse.ArgumentTypeError(
            f"--precisions={text!r}: expected comma-separated Keras dtype policies from "
            f"{', '.join(POLICIES)}")
    return list(dict.fromkeys(values))


def add_arguments(parser):
    """Adds the suite's flags to `parser` (what each sets: benchmarks/suite_settings.py)."""
    parser.add_argument("--smoke", action="store_true",
                        help="every benchmark on a tiny model at 64 px (checks the harness)")
    parser.add_argument("--out", default=None,
                        help=f"results JSON (default {os.path.relpath(DEFAULT_OUT)}; with "
                             "--smoke, a temporary folder)")
    parser.add_argument("--results_md", default=None,
                        help=f"markdown file whose section to replace (default "
                             f"{os.path.relpath(DEFAULT_RESULTS_MD)}; with --smoke, next to "
                             "--out)")
    parser.add_argument("--sizes", type=int_list("--sizes"), default=None,
                        help="square image sizes of inference/stages/train/export/flops "
                             "(default 512,1024; smoke 64)")
    parser.add_argument("--batches", type=int_list("--batches"), default=None,
                        help="inference batch sizes (default 1,4; smoke 1,2)")
    parser.add_argument("--export_sizes", type=int_list("--export_sizes"), default=None,
                        help="sizes of the exported files (default: --sizes)")
    parser.add_argument("--scaling_sizes", type=int_list("--scaling_sizes"), default=None,
                        help="scaling_size image sizes (default 512,768,1024,1333; smoke 64,96)")
    parser.add_argument("--scaling_batches", type=int_list("--scaling_batches"), default=None,
                        help="scaling_batch batch sizes at the first --sizes size (default "
                             "1,2,4,8; smoke 1,2)")
    parser.add_argument("--scaling_instances", type=int_list("--scaling_instances"),
                        default=None,
                        help="scaling_instances objects per training image (default "
                             "1,10,50,100; smoke 1,3)")
    parser.add_argument("--scaling_proposals", type=int_list("--scaling_proposals"),
                        default=None,
                        help="scaling_proposals RPN proposals per image (default "
                             "250,500,1000,2000; smoke 25,50)")
    parser.add_argument("--precisions", type=policy_list, default=None,
                        help="Keras dtype policies of inference, stages and train_step, one "
                             f"row each (default {','.join(DEFAULT_PRECISIONS)}; smoke the "
                             "same, stages float32 only)")
    parser.add_argument("--jobs", type=int_at_least("--jobs", 1), default=1,
                        help="benchmark processes at once (default 1; more only for --smoke, "
                             "since parallel runs share the CPU and skew timings)")
    parser.add_argument("--markdown_only", action="store_true",
                        help="run nothing: rewrite the --results_md section from the --out "
                             "JSON of an earlier run")
    add_process_arguments(parser, repeats="5; smoke 2")
