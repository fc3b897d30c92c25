"""`mrcnn-tf evaluate`: COCO metrics (pycocotools) of a model on a COCO-format dataset."""

from absl import flags

from mrcnn_tf.cli import common

FLAGS = flags.FLAGS

SUMMARY = "COCO box and mask AP of a model on a COCO-format dataset"
USAGE = "--weights MODEL.keras|RUN_DIR --annotations FILE --images DIR [--results FILE]"
FLAG_NAMES = common.MODEL_FLAGS + common.COCO_DATA_FLAGS + ("results",)


def main():
    from mrcnn_tf.evaluation import evaluator  # noqa: PLC0415
    common.require("annotations", "images", "weights")
    model = common.load_model()
    dataset = common.coco_dataset()
    unknown = sorted(set(model.category_ids) - set(dataset.label_map.dataset_ids))
    if unknown:
        raise common.UsageError(
            f"--weights={FLAGS.weights}: the model's category ids {unknown} are not in "
            f"{FLAGS.annotations} (its ids: {list(dataset.label_map.dataset_ids)})")
    # Results use the model's own label map: its class k is dataset category
    # model.category_ids[k - 1], whatever order the annotation file lists categories in.
    evaluator.evaluate_model(model, dataset, model.label_map, coco_gt=dataset.coco,
                             results_path=FLAGS.results)
    print(dataset.report())
