"""COCO-scale data path: what padding, stored bytes, batched prediction and streamed
evaluation cost, part by part.

    python -m benchmarks coco_scale [--part NAME,...] [--quick] [--out FILE]

Parts (each a module benchmarks/coco_scale_<part>.py with `run(quick) -> dict`, whose
docstring gives its settings):
  padding    padded pixels over content pixels per `Config.batch_padding`, COCO-like sizes
  train      R50-FPN training images/s, square padding against each batch's own canvas
  tfrecords  make-tfrecords bytes per image against the source JPEGs, records/s read back
  predict    predict images/s on 64 photos of mixed sizes, batch 1 against batch 8
  evaluate   evaluate peak RSS over 200 and 2,000 images
The numbers of each part run are merged into --out (default benchmarks/coco_scale.json,
written atomically), so parts can be run one at a time; `--quick` runs tiny settings (the
smoke test's) and writes nowhere unless --out is given.
"""

import importlib
import json
import os
import time

PARTS = ("padding", "train", "tfrecords", "predict", "evaluate")
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "coco_scale.json")


def add_arguments(parser):
    parser.add_argument("--part", default=",".join(PARTS),
                        help=f"comma-separated parts among {','.join(PARTS)}")
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    parser.add_argument("--out", default=None,
                        help="JSON file the parts' numbers are merged into (default "
                             "benchmarks/coco_scale.json; none with --quick)")


def parse_parts(text):
    """The part names of --part, in order; ValueError naming --part for an unknown one."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ValueError(f"--part={text!r}: expected some of {','.join(PARTS)}")
    return parts


def run(parts, quick=False):
    """{part: its numbers, with "seconds" the part took}."""
    results = {}
    for part in parts:
        module = importlib.import_module(f"benchmarks.coco_scale_{part}")
        start = time.perf_counter()
        results[part] = module.run(quick=quick)
        results[part]["seconds"] = round(time.perf_counter() - start, 1)
    return results


def main(args):
    from benchmarks.results_files import write_text_atomic  # noqa: PLC0415
    try:
        parts = parse_parts(args.part)
    except ValueError as error:
        print(f"benchmarks coco_scale: {error}")
        return 2
    results = run(parts, args.quick)
    print(json.dumps(results, indent=2))
    out = args.out or (None if args.quick else DEFAULT_OUT)
    if out:
        merged = {}
        if os.path.exists(out):
            with open(out) as f:
                merged = json.load(f)
        merged.update(results)
        write_text_atomic(out, json.dumps(merged, indent=2) + "\n")
    return 0
