"""Shapes -> COCO JSON and PNGs on disk -> TFRecords -> train a few steps -> evaluate."""

import json

import keras
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn_tf.config import get_config
from mrcnn_tf.data import pipeline, tfrecord_reader, tfrecord_writer
from mrcnn_tf.data.coco import CocoDataset
from mrcnn_tf.data.shapes import CLASS_NAMES, write_shapes_coco
from mrcnn_tf.evaluation import evaluator
from mrcnn_tf.modeling.mask_rcnn import MaskRCNN

SIZE = 64
FIELDS = ("image", "boxes", "class_ids", "masks", "is_crowd")


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes_coco")
    annotations, images = write_shapes_coco(str(root), 10, seed=7, image_size=SIZE)
    dataset = CocoDataset(annotations, images)
    prefix = str(root / "records" / "shapes")
    shards = tfrecord_writer.make_tfrecords(dataset, prefix, 3, progress=False)
    return annotations, dataset, prefix, shards


def test_tfrecords_give_the_same_examples_as_the_json(on_disk):
    _, dataset, prefix, shards = on_disk
    assert len(shards) == 3
    from_json = {int(ex["image_id"]): ex for ex in dataset}
    from_records = {int(ex["image_id"]): ex for ex in tfrecord_reader.tfrecord_dataset(
        f"{prefix}-*-of-*.tfrecord", shuffle_files=False).as_numpy_iterator()}
    assert sorted(from_json) == sorted(from_records) == list(range(10))
    for image_id, expected in from_json.items():
        for field in FIELDS:
            np.testing.assert_array_equal(from_records[image_id][field], expected[field],
                                          err_msg=f"image {image_id} field {field}")
    assert tfrecord_reader.read_label_map(prefix) == dataset.label_map


def test_train_from_tfrecords_then_evaluate_equals_pycocotools(on_disk, tmp_path):
    annotations, dataset, prefix, _ = on_disk
    keras.utils.set_random_seed(0)
    # score_threshold 0: a barely trained model still answers, so every metric is exercised.
    config = get_config("shapes_tiny", image_min_size=SIZE, image_max_size=SIZE,
                        mini_mask_size=28, fpn_channels=32, box_head_fc_dim=64,
                        mask_head_conv_dim=32, roi_batch_size_per_image=32,
                        detections_per_image=10, score_threshold=0.0,
                        anchor_sizes=(8., 16., 32., 64., 128.))
    labels = dataset.label_map
    assert labels.names == CLASS_NAMES
    model = MaskRCNN(config, class_names=list(labels.names), category_ids=list(labels.dataset_ids))
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, global_clipnorm=5.0))
    train = pipeline.make_training_dataset(
        tfrecord_reader.tfrecord_dataset(f"{prefix}-*-of-*.tfrecord", seed=0), config, 2, seed=0)
    history = model.fit(train, steps_per_epoch=4, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])

    results_path = str(tmp_path / "results.json")
    metrics = evaluator.evaluate_model(model, dataset, model.label_map, coco_gt=dataset.coco,
                                       print_summary=False, results_path=results_path)
    assert metrics["num_images"] == 10

    # The same numbers straight from pycocotools on the files on disk.
    with open(results_path) as f:
        results = json.load(f)
    assert results, "the model returned no detections"
    coco_gt = COCO(annotations)
    for iou_type, compared in (("bbox", slice(None)), ("segm", slice(0, 3))):
        # pycocotools sizes segm detections by their box when a bbox is present, so the
        # area-range numbers of segm differ by design; AP, AP50 and AP75 must not.
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(results_path), iouType=iou_type)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
        names = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs",
                 "ARm", "ARl")[compared]
        for name, value in zip(names, coco_eval.stats[compared]):
            assert metrics[f"{iou_type}/{name}"] == pytest.approx(value, abs=1e-12), name
