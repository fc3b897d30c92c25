"""`mrcnn-tf evaluate`: COCO metrics (pycocotools) of a model on a COCO-format dataset.

Scores what the model predicts: boxes, masks (mask_on) and keypoints (num_keypoints > 0; OKS
against the "keypoints" of the annotations file, e.g. COCO's person_keypoints_val2017.json,
with the config's oks_sigmas)."""

from absl import flags

from mrcnn_tf.cli import common

FLAGS = flags.FLAGS

SUMMARY = "COCO box, mask and keypoint AP of a model on a COCO-format dataset"
USAGE = ("--weights MODEL.keras|RUN_DIR --annotations FILE --images DIR [--results FILE] "
         "[--precision float32|bfloat16|auto]")
FLAG_NAMES = common.MODEL_FLAGS + common.COCO_DATA_FLAGS + ("results", "precision")


def main():
    from mrcnn_tf.evaluation import coco_eval, evaluator  # noqa: PLC0415
    common.require("annotations", "images", "weights")
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
    metrics = evaluator.evaluate_model(model, dataset, model.label_map, coco_gt=dataset.coco,
                                       results_path=FLAGS.results)
    print(dataset.report())
    print("AP@[.5:.95]: " + ", ".join(
        f"{t} {metrics[f'{t}/AP']:.4f}" for t in coco_eval.SUPPORTED_IOU_TYPES
        if f"{t}/AP" in metrics))
