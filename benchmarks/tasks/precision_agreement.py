"""bfloat16 against float32 on a trained model: COCO APs, detection agreement and latency at a
realistic score threshold.

    python -m benchmarks precision_agreement --weights runs/demo/model.keras --images 200

The model (a `.keras` file or run folder, e.g. what `mrcnn-tf demo` writes) runs in float32
and, with the same weights, in mixed_bfloat16 (`training.precision.inference_model`, what
`--precision bfloat16` runs), on the held-out synthetic images its config's synthetic set
gives (the demo's evaluation images: seed 1000). For each precision: box and mask AP
(pycocotools), and the time of `predict_images` per image at --score_threshold (default 0.5,
`mrcnn-tf predict`'s), where a trained model keeps a handful of detections. Agreement over
the detections float32 keeps at that threshold: the share with a same-class bfloat16
detection of box IoU >= 0.9, and those pairs' mask IoU and score difference.

Prints the numbers as JSON and a markdown table; writes the JSON to --out (atomically).
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks import agreement, trained_model  # noqa: E402
from benchmarks.tables import table  # noqa: E402
from mrcnn_tf import demo  # noqa: E402
from mrcnn_tf.evaluation import evaluator  # noqa: E402
from mrcnn_tf.training import precision  # noqa: E402

POLICIES = ("float32", "mixed_bfloat16")


def add_arguments(parser):
    trained_model.add_arguments(parser)
    parser.add_argument("--score_threshold", type=float, default=0.5,
                        help="detections kept for the agreement and the timing")


def run(weights, num_images=200, score_threshold=0.5):
    """{"rows": one per policy (APs, ms per image, detections per image), "agreement":
    bfloat16's detections against float32's, "settings"}."""
    float32_model, _, examples = trained_model.model_and_examples(weights, num_images)
    config = float32_model.config
    rows, kept = [], {}
    for policy in POLICIES:
        model = precision.inference_model(float32_model, policy)
        metrics = evaluator.evaluate_model(model, examples, model.label_map,
                                           print_summary=False)
        seconds, kept[policy] = _timed_predictions(model, examples, score_threshold)
        rows.append({"precision": policy, **trained_model.ap_values(metrics),
                     "ms_per_image_median": round(1000 * statistics.median(seconds), 2),
                     "ms_per_image_mean": round(1000 * statistics.mean(seconds), 2),
                     "detections_per_image": round(
                         float(np.mean([len(p["boxes"]) for p in kept[policy]])), 2)})
    return {"rows": rows, "agreement": _agreement(kept["float32"], kept["mixed_bfloat16"]),
            "settings": {"weights": weights, "images": num_images, "seed": demo.EVAL_SEED,
                         "score_threshold": score_threshold, "config": config.name}}


def _timed_predictions(model, examples, score_threshold):
    """(seconds per image, predictions) of `model.predict_images` one image at a time, after
    one untimed call per image size (tracing)."""
    for size in {example["image"].shape for example in examples}:
        model.predict_images([next(e["image"] for e in examples
                                   if e["image"].shape == size)], score_threshold)
    seconds, predictions = [], []
    for example in examples:
        start = time.perf_counter()
        predictions.append(model.predict_images([example["image"]], score_threshold)[0])
        seconds.append(time.perf_counter() - start)
    return seconds, predictions


def _agreement(reference, other):
    """Over every float32 detection: matched (a same-class detection of the other precision
    with box IoU >= agreement.MATCH_BOX_IOU), and the matched pairs' mask IoU and score
    difference."""
    matched, mask_ious, score_differences = [], [], []
    for ref, got in zip(reference, other):
        index, ious = agreement.match_detections(ref["boxes"], ref["class_ids"], got["boxes"],
                                                 got["class_ids"])
        for i, (j, iou) in enumerate(zip(index, ious)):
            hit = j >= 0 and iou >= agreement.MATCH_BOX_IOU
            matched.append(hit)
            if hit:
                mask_ious.append(agreement.mask_iou(ref["masks"][i], got["masks"][j]))
                score_differences.append(abs(float(ref["scores"][i] - got["scores"][j])))
    mask_ious, score_differences = np.asarray(mask_ious), np.asarray(score_differences)
    return {"float32_detections": len(matched), "matched": int(np.sum(matched)),
            "matched_fraction": round(float(np.mean(matched)), 4) if matched else None,
            "mask_iou_min": _rounded(np.min, mask_ious),
            "mask_iou_median": _rounded(np.median, mask_ious),
            "mask_iou_at_least_0.9": _rounded(lambda v: np.mean(v >= 0.9), mask_ious),
            "score_difference_max": _rounded(np.max, score_differences),
            "score_difference_median": _rounded(np.median, score_differences),
            "match_box_iou": agreement.MATCH_BOX_IOU}


def _rounded(fn, values):
    return round(float(fn(values)), 4) if len(values) else None


def markdown(results):
    """The two tables of `run`'s results, as markdown lines."""
    rows = results["rows"]
    lines = table(["precision", "box AP", "box AP50", "mask AP", "mask AP50",
                   "ms/image (median)", "detections/image"],
                  [[r["precision"], r["bbox/AP"], r["bbox/AP50"], r["segm/AP"],
                    r["segm/AP50"], r["ms_per_image_median"], r["detections_per_image"]]
                   for r in rows])
    a = results["agreement"]
    lines += [""] + table(
        ["float32 detections", "matched (box IoU >= 0.9)", "mask IoU min", "mask IoU median",
         "mask IoU >= 0.9", "score diff median", "score diff max"],
        [[a["float32_detections"], f"{a['matched']} ({a['matched_fraction']})",
          a["mask_iou_min"], a["mask_iou_median"], a["mask_iou_at_least_0.9"],
          a["score_difference_median"], a["score_difference_max"]]])
    return lines


def main(args):
    """Measures, prints JSON and markdown, writes --out; exit status 0."""
    results = run(args.weights, args.images, args.score_threshold)
    return trained_model.report(results, markdown(results), args.out)
