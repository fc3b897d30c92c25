"""The files results go to: atomic writes, the suite's results JSON (where it goes by default,
the entries of an earlier run it keeps) and the section of RESULTS.md rendered from it.

Imports no framework.
"""

import datetime
import json
import os
import sys
import tempfile

from benchmarks import report
from benchmarks.registry import SUITE_NAMES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "benchmarks", "results.json")
DEFAULT_RESULTS_MD = os.path.join(REPO, "benchmarks", "RESULTS.md")


def write_text_atomic(path, text):
    """Writes `text` to `path` (creating its folder) with `mrcnn_tf.io_utils.atomic_write`, so
    a reader (or a crash) never sees a half-written file."""
    # Imported here, not at the top: io_utils imports OpenCV (~30 MB resident), which would
    # otherwise count in the memory of every benchmark process, the TFLite runtime's included.
    from mrcnn_tf.io_utils import atomic_write  # noqa: PLC0415
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "w") as f:
        f.write(text)


def now():
    """The local time with its offset, to the second (ISO 8601), for `generated_at` fields."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def default_paths(args):
    """(out JSON, results markdown) of a suite run's flags. The checked-in
    benchmarks/results.json and RESULTS.md are the defaults only of a full-size run given
    neither --out nor --results_md: a smoke run defaults to a temporary folder, and an --out
    elsewhere takes its RESULTS.md along."""
    if args.smoke and args.out is None:
        out = os.path.join(tempfile.mkdtemp(prefix="mrcnn-bench-smoke-"), "results.json")
    else:
        out = args.out or DEFAULT_OUT
    if args.results_md is not None:
        return out, args.results_md
    if os.path.abspath(out) == DEFAULT_OUT and not args.smoke:
        return out, DEFAULT_RESULTS_MD
    return out, os.path.join(os.path.dirname(os.path.abspath(out)), "RESULTS.md")


def merge_previous(out_path, entries, smoke):
    """`entries` (the benchmarks just run, by name) with the entries of the other benchmarks
    kept from an existing results file at `out_path` (only those of the same mode: smoke
    numbers never mix with full-size ones), in the suite's order."""
    if not os.path.exists(out_path):
        return entries
    try:
        with open(out_path) as f:
            previous = json.load(f).get("benchmarks", {})
    except (OSError, ValueError) as error:
        print(f"[benchmarks] not merging with {out_path}: {error}", file=sys.stderr)
        return entries
    merged = {n: previous[n] for n in SUITE_NAMES if n in previous and n not in entries
              and previous[n].get("smoke") == smoke}
    merged.update(entries)
    return {n: merged[n] for n in SUITE_NAMES if n in merged}


def write_markdown(results, results_md):
    """Replaces (or appends) the suite's section of `results_md` with `results`' tables."""
    document = ""
    if os.path.exists(results_md):
        with open(results_md) as f:
            document = f.read()
    write_text_atomic(results_md, report.replace_section(document, report.render(results)))
