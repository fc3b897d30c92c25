"""Speed and memory of Keypoint R-CNN (R50-FPN), against torchvision's keypointrcnn_resnet50_fpn
on the same machine, image size, threads, score threshold and detection count.

    python -m benchmarks keypoints                    # 512 and 800 px, 3 timed runs
    python -m benchmarks keypoints --sizes 512 --repeats 1 --out /tmp/keypoints.json
    python -m benchmarks keypoints --smoke            # tiny preset at 64 px, < 60 s

What is measured, per framework and image size (batch 1, float32), each (framework, size) in
its own process (benchmarks/worker.py: jobs keypoints_mrcnn_tf and keypoints_torchvision) so
that its peak RSS is its own:

  end_to_end         the whole model on one uint8 / float image: latency median and p90 over
                     --repeats timed runs after --warmup untimed ones, peak RSS of those runs
  without_keypoints  the same model without its keypoint branch: mrcnn_tf's backbone_fpn,
                     rpn_proposals and box_detection stage functions (benchmarks/stages.py)
                     chained; torchvision's model with its keypoint predictor switched off
  keypoint_branch    keypoint RoIAlign + keypoint head + heatmap decode alone, fed the real
                     features and detections of that image (recorded once)

The keypoint share is keypoint_branch / end_to_end (and, as a cross-check that is noisier,
(end_to_end - without_keypoints) / end_to_end). The keypoint head's FLOPs per RoI are analytic
(keypoints_results.py's `keypoint_head_flops`: its 3x3 convs at the RoIAlign size and the
stride-2 transposed conv; 1 multiply-add = 2 FLOP, as benchmarks/flops.py), checked against
benchmarks/flops.py's layer counts for mrcnn_tf and torch's FlopCounterMode for torchvision;
GFLOP/s of the branch is that count times the RoIs the head ran on, over the branch's median
latency.

Weights are random, made numerically sane as the other benchmarks' (benchmarks/random_init.py;
torchvision's likewise) and the box score threshold is 0, so that every one of the D = 100
detection slots is a real detection and reaches the keypoint head (mrcnn_tf's crop_and_resize
RoIAlign runs the head on the real detections only, `MaskRCNN.head_rows`; torchvision's head
runs on its post-NMS detections): the output says how many ran. `--smoke` runs the
shapes_keypoints_tiny preset with 10 detections (torchvision's R50 with 2) at 64 px, one timed
run, to check this task in the test suite; its numbers mean nothing.

Prints a markdown table and writes the JSON to --out (default: a temporary folder, printed).
Nothing here imports TensorFlow or torch: each child imports only its own.
"""

import contextlib
import copy
import json
import os
import sys
import tempfile
import time

from benchmarks import machine, results_files, suite_settings, worker
from benchmarks.flags import add_process_arguments, int_list, subset
from benchmarks.tables import status_cell, table
from benchmarks.tasks.keypoints_results import PARTS

FRAMEWORKS = ("mrcnn_tf", "torchvision")
JOB_NAMES = {framework: f"keypoints_{framework}" for framework in FRAMEWORKS}

FULL = {
    "model": {"preset": "keypoint_rcnn_r50_fpn", "overrides": {}},
    "sizes": [512, 800], "warmup": 1, "repeats": 3, "timeout_s": 3600,
    # num_classes=2: background + person, the one class of keypoint_rcnn_r50_fpn.
    "torchvision": {"kwargs": {"num_classes": 2}},
}
SMOKE = {
    "model": {"preset": "shapes_keypoints_tiny", "overrides": {
        "detections_per_image": 10, "rpn_pre_nms_topk_test": 100,
        "rpn_post_nms_topk_test": 50}},
    "sizes": [64], "warmup": 1, "repeats": 1, "timeout_s": 300,
    # torchvision's model is always R50-FPN: the suite's few proposals and detections keep it
    # quick at 64 px (2 RoIs through the 8 x 512 head are still ~14 GFLOP).
    "torchvision": {"kwargs": dict(suite_settings.SMOKE["torchvision"]["kwargs"],
                                   num_classes=2)},
}


def add_arguments(parser):
    parser.add_argument("--sizes", type=int_list("--sizes"), default=None,
                        help="square image sizes (default 512,800; smoke 64)")
    parser.add_argument("--frameworks", type=subset("--frameworks", FRAMEWORKS, "frameworks"),
                        default=list(FRAMEWORKS),
                        help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default both)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny preset at 64 px, 1 timed run: checks the task, < 60 s")
    parser.add_argument("--out", default=None,
                        help="results JSON (default: a new temporary folder, printed)")
    add_process_arguments(parser, repeats="3; smoke 1")


def resolve_spec(args):
    """The settings each child gets (with one of its sizes): the mode's defaults, the flags."""
    spec = copy.deepcopy(SMOKE if args.smoke else FULL)
    given = {"sizes": args.sizes, "repeats": args.repeats, "warmup": args.warmup,
             "timeout_s": args.timeout}
    spec.update({key: value for key, value in given.items() if value is not None})
    # Spinning OpenMP threads fight other work for the cores (threads.thread_env): a smoke run
    # in the test suite shares the CPU, so it sleeps them; "default" leaves the environment's.
    policy = args.omp_wait_policy or ("PASSIVE" if args.smoke else "default")
    spec.update(smoke=bool(args.smoke), threads=args.threads,
                omp_wait_policy=None if policy == "default" else policy,
                init="random weights (seed 0) made numerically sane by benchmarks/"
                     "random_init.py (zero_init_residual, calibrated stem norm), "
                     "torchvision's by the same treatment")
    return spec


@contextlib.contextmanager
def _logs_folder(path):
    """Yields `path` (created) or, when it is None, a temporary folder deleted afterwards."""
    if path:
        os.makedirs(path, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="mrcnn-keypoints-logs-") as folder:
        yield folder


def run(spec, frameworks, workdir):
    """Runs each (framework, size) in its own process, one at a time (parallel runs would
    share the CPU and skew each other's timings). Returns the list of run entries: the
    worker's result of each, with its framework and size."""
    runs, skipped = [], {}
    for size in spec["sizes"]:
        for framework in frameworks:
            if framework in skipped:  # torch absent: no point in asking at every size
                runs.append({"framework": framework, "size": size, "status": "skipped",
                             "reason": skipped[framework]})
                continue
            folder = os.path.join(workdir, f"{framework}_{size}")
            os.makedirs(folder, exist_ok=True)
            entry = worker.run_worker(JOB_NAMES[framework], dict(spec, sizes=[size]),
                                      folder, spec["timeout_s"])
            entry.update(framework=framework, size=size)
            print(f"[keypoints] {framework} {size}px ({entry['process']['wall_s']} s, "
                  f"process peak RSS {entry.get('process_peak_rss_mb')} MB): "
                  f"{status_cell(entry)}", flush=True)
            if entry["status"] == "skipped":
                skipped[framework] = entry["reason"]
            runs.append(entry)
    return runs


def table_rows(runs):
    """One flat row per measured (framework, size): the numbers of the markdown table, the
    child's process peak RSS included."""
    rows = []
    for entry in runs:
        for result in (entry.get("results") or {}).get("rows", []):
            parts = result["parts"]
            rows.append({
                "framework": result["framework"], "size": result["size"],
                "min_detections": result["min_detections"],
                "keypoint_rows": result["keypoint_rows"],
                "detections_per_image": result["detections_per_image"],
                **{f"{part}_{stat}": parts[part][stat] for part in PARTS
                   for stat in ("median_ms", "p90_ms")},
                "keypoint_share": result["keypoint_share"],
                "keypoint_share_by_difference": result["keypoint_share_by_difference"],
                "keypoint_gflop": result["keypoint_gflop"],
                "keypoint_achieved_gflops": result["keypoint_achieved_gflops"],
                "total_gflop": result.get("total_gflop"),
                "achieved_gflops": result.get("achieved_gflops"),
                "peak_rss_mb": parts["end_to_end"]["peak_rss_mb"],
                "process_peak_rss_mb": entry.get("process_peak_rss_mb")})
    return rows


def _ratio_lines(rows):
    """'- SIZEpx: mrcnn_tf / torchvision end to end R, keypoint branch R' for each size
    measured by both (none: no lines, not even the blank one before them)."""
    theirs = {r["size"]: r for r in rows if r["framework"] == "torchvision"}
    lines = []
    for ours in rows:
        other = theirs.get(ours["size"]) if ours["framework"] == "mrcnn_tf" else None
        if other:
            ratio = {part: ours[f"{part}_median_ms"] / other[f"{part}_median_ms"]
                     for part in ("end_to_end", "keypoint_branch")}
            lines.append(f"- {ours['size']}px: mrcnn_tf / torchvision end to end "
                         f"{ratio['end_to_end']:.2f}, keypoint branch "
                         f"{ratio['keypoint_branch']:.2f} (> 1: mrcnn_tf slower)")
    return [""] + lines if lines else []


def render(results):
    """The markdown: settings, one table row per (framework, size), the mrcnn_tf /
    torchvision ratios, and what was skipped or failed."""
    settings = results["settings"]
    lines = ["### Keypoint R-CNN: mrcnn_tf against torchvision", "",
             f"`{settings['model']['preset']}` vs keypointrcnn_resnet50_fpn, batch 1, float32, "
             f"{settings['init']}; box score threshold 0; {settings['threads']} threads; "
             f"{settings['warmup']} warm-up + {settings['repeats']} timed runs, median and "
             "p90. Keypoint branch = keypoint RoIAlign + head + decode timed alone on the real "
             "detections; share = branch / end to end (by difference: (end to end - without "
             "keypoints) / end to end). Peak RSS: the end-to-end runs' (process: the whole "
             "child process's)." + (" SMOKE RUN: tiny model, numbers mean nothing."
                                    if results["smoke"] else ""), ""]
    body = [[r["framework"], r["size"],
             f"{r['min_detections']} / {r['keypoint_rows']} of {r['detections_per_image']}",
             r["end_to_end_median_ms"], r["end_to_end_p90_ms"], r["without_keypoints_median_ms"],
             r["keypoint_branch_median_ms"], r["keypoint_branch_p90_ms"],
             f"{100 * r['keypoint_share']:.1f}%",
             f"{100 * r['keypoint_share_by_difference']:.1f}%", r["keypoint_gflop"],
             r["keypoint_achieved_gflops"], r["total_gflop"], r["achieved_gflops"],
             r["peak_rss_mb"], r["process_peak_rss_mb"]] for r in results["rows"]]
    lines += table(
        ["framework", "size", "detections / head RoIs", "median ms", "p90 ms",
         "without keypoints ms", "keypoint branch ms", "branch p90 ms", "branch share",
         "share by difference", "keypoint GFLOP", "keypoint GFLOP/s", "total GFLOP",
         "GFLOP/s", "peak RSS MB", "process peak RSS MB"], body)
    lines += _ratio_lines(results["rows"])
    lines += [f"- {entry['framework']} {entry['size']}px: {status_cell(entry)}"
              for entry in results["runs"] if entry["status"] != "ok"]
    return "\n".join(lines) + "\n"


def main(args):
    """Runs every (framework, size), writes the JSON, prints the table; the exit status (1
    when a run failed)."""
    spec = resolve_spec(args)
    out = args.out or os.path.join(tempfile.mkdtemp(prefix="mrcnn-keypoints-"), "keypoints.json")
    results = {"schema": 1, "benchmark": "keypoints", "generated_at": results_files.now(),
               "command": args.command, "smoke": spec["smoke"], "settings": spec,
               "machine": dict(machine.cpu_description(),
                               load_average_before=machine.load_average()),
               "versions": machine.package_versions()}
    start = time.perf_counter()
    with _logs_folder(args.logs) as workdir:
        results["runs"] = run(spec, args.frameworks, workdir)
    results["wall_s"] = round(time.perf_counter() - start, 1)
    results["machine"]["load_average_after"] = machine.load_average()
    results["rows"] = table_rows(results["runs"])
    results_files.write_text_atomic(out, json.dumps(results, indent=1) + "\n")
    print(render(results))
    print(f"[keypoints] results {out}", flush=True)
    errors = [entry for entry in results["runs"] if entry["status"] == "error"]
    for entry in errors:  # the child's traceback, which the table shortens to one line
        print(entry.get("log_tail", ""), file=sys.stderr)
    return 1 if errors else 0
