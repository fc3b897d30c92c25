"""`mrcnn-tf evaluate`: COCO metrics of a model on a COCO-format dataset (COCOeval:
faster-coco-eval, or pycocotools' with MRCNN_TF_COCOEVAL=pycocotools).

Scores what the model predicts: boxes, masks (mask_on) and keypoints (num_keypoints > 0; OKS
against the "keypoints" of the annotations file, e.g. COCO's person_keypoints_val2017.json,
with the config's oks_sigmas). With --plots DIR, also the pictures of the evaluation:
precision-recall curves, TIDE's error breakdown and the worst images (evaluation/plots.py)."""

import os
import time

from absl import flags

from mrcnn_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("plots", None, "evaluate: also write pictures into this folder: "
                    "precision-recall curves per class at IoU 0.5 and 0.75 (pr_<type>_iou*.png),"
                    " TIDE's error breakdown (errors.png), the worst images with predictions "
                    "and ground truth (worst_images.png; --score_threshold picks the "
                    "predictions), overview.png, and plots.json with the numbers.")

SUMMARY = "COCO box, mask and keypoint AP of a model on a COCO-format dataset"
USAGE = ("--weights MODEL.keras|RUN_DIR --annotations FILE --images DIR [--results FILE] "
         "[--precision float32|bfloat16|auto] [--plots DIR [--score_threshold 0.5]]")
FLAG_NAMES = common.MODEL_FLAGS + common.COCO_DATA_FLAGS + ("results", "precision", "plots",
                                                            "score_threshold")


def main():
    from mrcnn_tf.evaluation import coco_eval, evaluator, plots  # noqa: PLC0415
    common.require("annotations", "images", "weights")
    if FLAGS.plots is not None:
        common.check_writable(FLAGS.plots, "--plots")  # before the model is loaded and run
    model = common.load_model_in_precision()
    dataset = common.coco_dataset()
    unknown = sorted(set(model.category_ids) - set(dataset.label_map.dataset_ids))
    if unknown:
        raise common.UsageError(
            f"--weights={FLAGS.weights}: the model's category ids {unknown} are not in "
            f"{FLAGS.annotations} (its ids: {list(dataset.label_map.dataset_ids)})")
    # Results use the model's own label map: its class k is dataset category
    # model.category_ids[k - 1], whatever order the annotation file lists categories in.
    # The file's annotations already hold keypoints in COCO's convention, which is what the
    # results are written in, so dataset.coco serves every iou type as it is.
    collector = (plots.PlotCollector(score_threshold=FLAGS.score_threshold)
                 if FLAGS.plots is not None else None)
    metrics = evaluator.evaluate_model(model, dataset, model.label_map, coco_gt=dataset.coco,
                                       results_path=FLAGS.results,
                                       on_evaluated=collector and collector.on_evaluated)
    print(dataset.report())
    print("AP@[.5:.95]: " + ", ".join(
        f"{t} {metrics[f'{t}/AP']:.4f}" for t in coco_eval.SUPPORTED_IOU_TYPES
        if f"{t}/AP" in metrics))
    if collector is not None:
        if not collector.curves:
            print(f"--plots={FLAGS.plots}: no detections, so no pictures")
            return
        start = time.perf_counter()
        written = plots.write_plots(FLAGS.plots, collector, dataset)
        print(f"plots: {len(written)} files in {FLAGS.plots} (breakdown "
              f"{collector.seconds:.1f} s, drawing {time.perf_counter() - start:.1f} s): "
              + ", ".join(os.path.basename(p) for p in written))
