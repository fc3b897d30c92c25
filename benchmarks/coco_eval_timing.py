"""One COCOeval run of a backend, timed by phase, and how far two runs' numbers lie apart; the
child process that measures one backend's peak memory. Used by the coco_eval_backends task.

A run is what mrcnn_tf.evaluation.coco_eval.evaluate_coco does for one IoU type: loadRes of
the results into the ground truth, then `make_cocoeval` (the library's own choice of
backend) and evaluate, accumulate, summarize. Each run gets a fresh ground truth COCO (both
backends write into the annotations they read: pycocotools turns polygons into RLEs) and
fresh copies of the results (loadRes writes into them); making those is not timed.

Backends: "pycocotools", "faster" (faster-coco-eval's COCOeval_faster with its default
threads for mask IoUs: min(CPUs, 8)) and "faster_1thread" (the same, one thread), so the
C++ speed-up and the threads' share can be told apart.

`measure_memory` runs in a child process of its own (benchmarks/worker.py's job
coco_eval_memory), so that its peak is one backend's alone.
"""

import contextlib
import gc
import io
import json
import time

import numpy as np

from benchmarks import coco_eval_data, memory

BACKENDS = ("pycocotools", "faster", "faster_1thread")
IOU_TYPES = ("bbox", "segm", "keypoints")
PHASES = ("loadres_s", "evaluate_s", "accumulate_s", "summarize_s")


def dataset(iou_type, num_images, seed):
    """(ground truth dict, results list) of the synthetic data for `iou_type`."""
    if iou_type == "keypoints":
        gt = coco_eval_data.keypoint_ground_truth(num_images, seed)
        return gt, coco_eval_data.keypoint_detections(gt, seed)
    gt = coco_eval_data.ground_truth(num_images, seed)
    return gt, coco_eval_data.detections(gt, seed)


def shaped_results(iou_type, results):
    """The results as evaluate_coco hands them to loadRes for `iou_type` (segm: no bbox)."""
    from mrcnn_tf.evaluation import coco_eval  # noqa: PLC0415 (no TensorFlow)
    return coco_eval._results_for(iou_type, results)  # noqa: SLF001 (the library's own shaping)


def fresh_ground_truth(gt_json):
    """A pycocotools COCO of the ground truth's JSON text, index built."""
    from pycocotools.coco import COCO  # noqa: PLC0415
    coco = COCO()
    coco.dataset = json.loads(gt_json)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def evaluate_once(coco_gt, results, iou_type, backend):
    """Runs one backend on fresh copies of `results`; returns (its numbers: {"stats",
    "per_category_ap", "precision", "recall"}, seconds per phase {loadres_s (loadRes and the
    COCOeval's construction), evaluate_s, accumulate_s, summarize_s, total_s}).

    Only the numbers are kept: the evaluator (pycocotools' holds a per-image table of dicts)
    is dropped, and garbage collected before the clock starts, so that no run is slowed by
    collecting the objects of the run before it."""
    from mrcnn_tf.evaluation import coco_eval  # noqa: PLC0415
    copies = [dict(r) for r in results]
    gc.collect()
    times = {}
    with contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        coco_dt = coco_gt.loadRes(copies)
        made = coco_eval.make_cocoeval(coco_gt, coco_dt, iou_type,
                                       "pycocotools" if backend == "pycocotools" else "faster")
        if backend == "faster_1thread":
            made.rle_iou_max_workers = 1
        if iou_type == "keypoints":
            made.params.catIds = [c["id"] for c in coco_gt.dataset["categories"]
                                  if c.get("keypoints")]
            made.params.kpt_oks_sigmas = np.asarray(coco_eval_data.KEYPOINT_SIGMAS)
        times["loadres_s"] = time.perf_counter() - start
        for phase in ("evaluate", "accumulate", "summarize"):
            begin = time.perf_counter()
            getattr(made, phase)()
            times[f"{phase}_s"] = time.perf_counter() - begin
    times["total_s"] = time.perf_counter() - start
    numbers = {"stats": np.asarray(made.stats, np.float64),
               "per_category_ap": coco_eval.per_category_ap(made, coco_gt),
               "precision": np.asarray(made.eval["precision"], np.float64),
               "recall": np.asarray(made.eval["recall"], np.float64)}
    return numbers, times


def _max_abs(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return None  # shapes differ: reported as such, not as a number
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def differences(numbers, reference):
    """How far one run's numbers (`evaluate_once`) lie from the reference run's: max |a - b|
    of the summary stats (COCOeval's 12, keypoints' 10), of per-category AP
    (coco_eval.per_category_ap), of the precision [T, R, K, A, M] and recall [T, K, A, M]
    tables; None where the shapes (or the categories) differ."""
    count = len(reference["stats"])
    ours_ap, reference_ap = numbers["per_category_ap"], reference["per_category_ap"]
    return {
        "stats": _max_abs(numbers["stats"][:count], reference["stats"]),
        "per_category_ap": (_max_abs(list(ours_ap.values()), list(reference_ap.values()))
                            if list(ours_ap) == list(reference_ap) else None),
        "precision": _max_abs(numbers["precision"], reference["precision"]),
        "recall": _max_abs(numbers["recall"], reference["recall"]),
        "precision_shape": list(numbers["precision"].shape),
    }


def measure_memory(spec):
    """The child's work: builds the data of spec's images, then runs `spec["backend"]` once
    on each of spec["iou_types"], one after another as evaluate_coco does, under PeakMemory.

    Returns {backend, images, start_rss_mb (data built), eval_peak_rss_mb, eval_growth_mb
    (peak - start), process_peak_rss_mb (ru_maxrss: the whole child's), seconds}."""
    data = {t: dataset(t, spec["images"], spec["seed"]) for t in spec["iou_types"]}
    prepared = {t: (json.dumps(gt), shaped_results(t, results))
                for t, (gt, results) in data.items()}
    del data
    start = time.perf_counter()
    with memory.PeakMemory() as peak:
        for t, (gt_json, results) in prepared.items():
            coco_gt = fresh_ground_truth(gt_json)
            evaluate_once(coco_gt, results, t, spec["backend"])
            del coco_gt
    return {"backend": spec["backend"], "images": spec["images"],
            "start_rss_mb": round(peak.start_mb, 1), "eval_peak_rss_mb": round(peak.peak_mb, 1),
            "eval_growth_mb": round(peak.peak_mb - peak.start_mb, 1),
            "peak_is_reset": peak.peak_is_reset,
            "process_peak_rss_mb": round(memory.process_peak_rss_mb(), 1),
            "seconds": round(time.perf_counter() - start, 2)}
