"""Keypoint examples through the training streams (in-memory and TFRecords) and the choice of
synthetic set for a config."""

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.config import get_config
from mrcnn_tf.data import keypoint_shapes, synthetic, tfrecord_writer
from mrcnn_tf.training import input as training_input

SIZE = 64
CONFIG = get_config("shapes_keypoints_tiny", image_min_size=SIZE, image_max_size=SIZE)


@pytest.fixture(scope="module")
def examples():
    return keypoint_shapes.make_keypoint_arrays(4, seed=3, image_size=SIZE)


def _first_batch(source):
    stream = training_input.training_stream(source, CONFIG, 4, seed=1, augment=False)
    return next(iter(stream.take(1).as_numpy_iterator()))


def _expected(examples, batch):
    """The examples' keypoints in the order of the batch, padded, in resized pixels (the
    stream resizes 64 -> 64, so nothing moves)."""
    by_id = {int(e["image_id"]): e for e in examples}
    want = np.zeros_like(batch["gt_keypoints"])
    for row, image_id in enumerate(batch["image_id"]):
        kp = by_id[int(image_id)]["keypoints"]
        want[row, :len(kp)] = kp
    return want


def test_indexed_stream_carries_keypoints(examples):
    source = training_input.IndexedSource.from_examples(examples)
    assert source.num_keypoints == keypoint_shapes.NUM_KEYPOINTS
    batch = _first_batch(source)
    assert batch["gt_keypoints"].shape == (4, CONFIG.max_instances, 6, 3)
    np.testing.assert_array_equal(batch["gt_keypoints"], _expected(examples, batch))
    assert (batch["gt_keypoints"][..., 2] > 0).sum() > 0


def test_tfrecord_stream_carries_keypoints(examples, tmp_path):
    paths = tfrecord_writer.write_tfrecords(examples, str(tmp_path / "train"), 2, progress=False)
    source = training_input.TFRecordSource(paths, num_keypoints=CONFIG.num_keypoints)
    batch = _first_batch(source)
    np.testing.assert_array_equal(batch["gt_keypoints"], _expected(examples, batch))


def test_synthetic_set_follows_the_config():
    assert synthetic.synthetic_set_for(get_config("shapes_tiny")) is synthetic.SHAPES
    chosen = synthetic.synthetic_set_for(CONFIG)
    assert chosen is synthetic.KEYPOINT_SHAPES
    example = chosen.make_arrays(1, seed=0, image_size=SIZE)[0]
    assert example["keypoints"].shape[1:] == (6, 3)
    other = get_config("keypoint_rcnn_r50_fpn")
    with pytest.raises(ValueError, match="keypoint_names"):
        synthetic.synthetic_set_for(other)
