"""COCOeval backends: pycocotools' COCOeval against faster-coco-eval's COCOeval_faster (the
library's default, mrcnn_tf.evaluation.coco_eval.make_cocoeval), on synthetic COCO-val-like
data (benchmarks/coco_eval_data.py: ~7 instances an image over COCO's 80 categories, 100
detections an image; keypoints: ~3 people, 20 detections an image, custom OKS sigmas).

    python -m benchmarks coco_eval_backends --images 500,5000
    python -m benchmarks coco_eval_backends --images 500 --types segm --repeats 5
    python -m benchmarks coco_eval_backends --smoke          # 20 images: checks the task

Per image count and IoU type, each backend (benchmarks/coco_eval_timing.py: "pycocotools",
"faster" with its default mask-IoU threads, "faster_1thread") runs loadRes + evaluate +
accumulate + summarize --repeats times in this one process, the backends alternating and
their order reversed every other round, so that a change of load on a shared machine falls
on all of them: the ratio is per round (pycocotools' seconds / the backend's), its median
reported. Each run's numbers are compared with pycocotools' of the same round: max |a - b|
of the summary stats, per-category AP, and the precision and recall tables. With --memory (the
default), each backend then runs every type once in a child process of its own, whose peak RSS
during the evaluation (and ru_maxrss) is that backend's alone.

Prints a markdown table and writes the JSON to --out (default: a new temporary folder).
"""

import json
import os
import statistics
import sys
import tempfile
import time

from benchmarks import coco_eval_timing, machine, worker
from benchmarks.flags import int_at_least, int_list, subset
from benchmarks.results_files import now, write_text_atomic
from benchmarks.tables import table

DEFAULT_IMAGES = [500, 5000]
SMOKE_IMAGES = [20]
AGREEMENT = 1e-4  # the largest difference from pycocotools' numbers called "the same"
MEMORY_TIMEOUT_S = 3600


def add_arguments(parser):
    parser.add_argument("--images", type=int_list("--images"), default=None,
                        help="image counts (default 500,5000; smoke 20)")
    parser.add_argument("--types", type=subset("--types", coco_eval_timing.IOU_TYPES,
                                               "iou types"),
                        default=list(coco_eval_timing.IOU_TYPES),
                        help="comma-separated subset of bbox,segm,keypoints (default all)")
    parser.add_argument("--backends", type=subset("--backends", coco_eval_timing.BACKENDS,
                                                  "backends"),
                        default=list(coco_eval_timing.BACKENDS),
                        help="comma-separated subset of pycocotools,faster,faster_1thread "
                             "(default all; pycocotools is always run, as the reference)")
    parser.add_argument("--repeats", type=int_at_least("--repeats", 1), default=None,
                        help="alternating rounds per image count and type (default 3; "
                             "smoke 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-memory", dest="memory", action="store_false",
                        help="skip the per-backend peak memory children")
    parser.add_argument("--smoke", action="store_true",
                        help="20 images, one round: checks the task in seconds")
    parser.add_argument("--out", default=None,
                        help="results JSON (default: a new temporary folder, printed)")


def _time_type(num_images, iou_type, backends, repeats, seed):
    """The rows of one image count and IoU type: one per backend (module doc)."""
    built = time.perf_counter()
    gt, results = coco_eval_timing.dataset(iou_type, num_images, seed)
    build_s = time.perf_counter() - built
    gt_json = json.dumps(gt)
    shaped = coco_eval_timing.shaped_results(iou_type, results)
    runs = {b: [] for b in backends}
    diffs = {b: [] for b in backends}
    for round_index in range(repeats):
        order = backends if round_index % 2 == 0 else backends[::-1]
        numbers = {}
        for backend in order:
            coco_gt = coco_eval_timing.fresh_ground_truth(gt_json)
            numbers[backend], times = coco_eval_timing.evaluate_once(coco_gt, shaped,
                                                                     iou_type, backend)
            runs[backend].append(times)
            del coco_gt
        for backend in backends:
            diffs[backend].append(coco_eval_timing.differences(numbers[backend],
                                                               numbers["pycocotools"]))
        # Progress on stderr: a 5,000-image round of pycocotools takes minutes.
        print(f"{num_images} images, {iou_type}, round {round_index + 1}/{repeats}: "
              + ", ".join(f"{b} {runs[b][-1]['total_s']:.2f} s" for b in backends),
              file=sys.stderr, flush=True)
    rows = []
    for backend in backends:
        totals = [r["total_s"] for r in runs[backend]]
        ratios = [p["total_s"] / r["total_s"] for p, r in zip(runs["pycocotools"],
                                                               runs[backend])]
        worst = {key: (None if any(d[key] is None for d in diffs[backend])
                       else max(d[key] for d in diffs[backend]))
                 for key in ("stats", "per_category_ap", "precision", "recall")}
        rows.append({
            "images": num_images, "iou_type": iou_type, "backend": backend,
            "instances": len(gt["annotations"]), "results": len(results),
            "data_build_s": round(build_s, 2),
            "median_s": round(statistics.median(totals), 3), "min_s": round(min(totals), 3),
            "runs_s": [round(t, 3) for t in totals],
            **{phase: round(statistics.median(r[phase] for r in runs[backend]), 3)
               for phase in coco_eval_timing.PHASES},
            "speedup_median": round(statistics.median(ratios), 2),
            "max_abs_diff": worst,
            "precision_shape": diffs[backend][0]["precision_shape"],
            "agrees": all(value is not None and value <= AGREEMENT for value in worst.values()),
        })
    return rows


def _memory(num_images, iou_types, backends, seed, workdir):
    """One child per backend (worker job coco_eval_memory: coco_eval_timing.measure_memory):
    its row, with the child's ru_maxrss as the parent's wait4 saw it."""
    rows = []
    for backend in backends:
        spec = {"images": num_images, "iou_types": list(iou_types), "backend": backend,
                "seed": seed, "threads": os.cpu_count() or 1}
        result = worker.run_worker("coco_eval_memory", spec, workdir, MEMORY_TIMEOUT_S)
        if result["status"] != "ok":
            raise RuntimeError(f"coco_eval_backends: the memory child of {backend}, "
                               f"{num_images} images: {result.get('error')}\n"
                               f"{result.get('log_tail', '')}")
        rows.append(dict(result["results"], child_maxrss_mb=result["process"]["peak_rss_mb"]))
    return rows


def run(images, iou_types, backends, repeats, seed=0, memory=True):
    """Times and compares the backends (module doc). Returns {"rows": one per image count,
    type and backend, "memory": one per image count and backend (or []), "settings"}."""
    from importlib.metadata import version  # noqa: PLC0415
    backends = ["pycocotools"] + [b for b in backends if b != "pycocotools"]
    load_before = machine.load_average()
    rows, memory_rows = [], []
    with tempfile.TemporaryDirectory(prefix="coco_eval_backends_") as workdir:
        for num_images in images:
            for iou_type in iou_types:
                rows += _time_type(num_images, iou_type, backends, repeats, seed)
            if memory:
                memory_rows += _memory(num_images, iou_types, backends, seed, workdir)
    return {
        "rows": rows, "memory": memory_rows,
        "settings": {
            "images": list(images), "iou_types": list(iou_types), "backends": backends,
            "repeats": repeats, "seed": seed, "agreement": AGREEMENT,
            "faster_mask_iou_threads": min(os.cpu_count() or 1, 8),
            "cpu": machine.cpu_description(), "load_average_before": load_before,
            "load_average_after": machine.load_average(),
            "versions": dict(machine.package_versions(),
                             **{"faster-coco-eval": version("faster-coco-eval")}),
            "generated_at": now(),
        },
    }


def markdown(result):
    """The timing table (seconds are medians; x = pycocotools' time over the backend's, the
    median of the rounds' ratios) and, when measured, the memory table."""
    rows = result["rows"]
    others = [b for b in result["settings"]["backends"] if b != "pycocotools"]
    header = ["images", "type", "instances / results", "pycocotools s"]
    for backend in others:
        header += [f"{backend} s", "x"]
    header += ["max abs diff: stats / per-cat AP / precision"]
    lines = []
    for (num_images, iou_type) in dict.fromkeys((r["images"], r["iou_type"]) for r in rows):
        group = {r["backend"]: r for r in rows
                 if r["images"] == num_images and r["iou_type"] == iou_type}
        reference = group["pycocotools"]
        line = [num_images, iou_type, f"{reference['instances']:,} / {reference['results']:,}",
                reference["median_s"]]
        for backend in others:
            line += [group[backend]["median_s"], f"{group[backend]['speedup_median']:.1f}"]
        worst = [max((group[b]["max_abs_diff"][k] or 0.0) for b in others)
                 for k in ("stats", "per_category_ap", "precision")]
        line.append(" / ".join(f"{w:.1e}" for w in worst))
        lines.append(line)
    text = "\n".join(table(header, lines))
    if result["memory"]:
        memory_rows = [[m["images"], m["backend"], m["start_rss_mb"], m["eval_peak_rss_mb"],
                        m["eval_growth_mb"], m["child_maxrss_mb"], m["seconds"]]
                       for m in result["memory"]]
        text += "\n\n" + "\n".join(table(["images", "backend", "RSS before MB", "peak MB",
                                          "growth MB", "child ru_maxrss MB", "all types s"],
                                         memory_rows))
    return text


def main(args):
    """Runs, prints the table, writes the JSON; exit status 1 if a backend disagrees."""
    images = args.images or (SMOKE_IMAGES if args.smoke else DEFAULT_IMAGES)
    repeats = args.repeats or (1 if args.smoke else 3)
    result = run(images, args.types, args.backends, repeats, args.seed, args.memory)
    result["settings"]["command"] = getattr(args, "command", None)
    out = args.out or os.path.join(tempfile.mkdtemp(prefix="coco_eval_backends-"),
                                   "coco_eval_backends.json")
    write_text_atomic(out, json.dumps(result, indent=1))
    print(markdown(result))
    print(f"\nJSON: {out}")
    disagreeing = sorted({(r["images"], r["iou_type"], r["backend"])
                          for r in result["rows"] if not r["agrees"]})
    if disagreeing:
        print(f"differs from pycocotools by more than {AGREEMENT}: {disagreeing}",
              file=sys.stderr)
        return 1
    return 0
