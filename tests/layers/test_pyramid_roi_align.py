"""Tests for PyramidRoIAlign: level assignment, order preservation, both implementations."""

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.layers.pyramid_roi_align import PyramidRoIAlign, assign_levels
from mrcnn_tf.ops.roi_align import roi_align


def _square(side, y=0.0, x=0.0):
    return [y, x, y + side, x + side]


def test_assign_levels_hand_made():
    boxes = tf.constant([_square(112), _square(224), _square(448), _square(20),
                         _square(2000), [0, 0, 112, 448], [5, 5, 5, 5], _square(223)])
    np.testing.assert_array_equal(assign_levels(boxes).numpy(), [3, 4, 5, 2, 5, 4, 2, 3])
    # Other level ranges clamp accordingly.
    np.testing.assert_array_equal(
        assign_levels(boxes, min_level=3, max_level=4).numpy(), [3, 4, 4, 3, 4, 4, 3, 3])


def _features(rng, batch=2, image=256, channels=3):
    return [tf.constant(rng.normal(0, 1, (batch, image // 2 ** k, image // 2 ** k, channels))
                        .astype(np.float32)) for k in range(2, 6)]


def _boxes(rng, batch=2):
    # Sizes spanning all levels (and beyond), positions partly outside the 256-px image.
    sides = np.array([20, 60, 120, 230, 460, 700, 100, 300, 30])
    out = np.zeros((batch, len(sides), 4), np.float32)
    for b in range(batch):
        perm = rng.permutation(len(sides))  # different level order per image
        for n, side in enumerate(sides[perm]):
            h = side * rng.uniform(0.7, 1.3)
            w = side * side / h
            y, x = rng.uniform(-20, 200, 2)
            out[b, n] = [y, x, y + h, x + w]
    return out


def _expected_level(box):
    size = np.sqrt((box[2] - box[0]) * (box[3] - box[1]))
    return int(np.clip(np.floor(4 + np.log2(size / 224.0)), 2, 5))


@pytest.mark.parametrize("static_shapes", [False, True])
def test_each_box_pooled_from_its_level_in_order(static_shapes):
    rng = np.random.default_rng(0)
    features = _features(rng)
    boxes = _boxes(rng)
    layer = PyramidRoIAlign(7, static_shapes=static_shapes)
    out = layer(features, tf.constant(boxes)).numpy()
    assert out.shape == (2, boxes.shape[1], 7, 7, 3)
    levels_seen = set()
    for b in range(2):
        for n in range(boxes.shape[1]):
            level = _expected_level(boxes[b, n])
            levels_seen.add(level)
            expected = roi_align(features[level - 2], tf.constant(boxes[b, n][None]),
                                 tf.constant([b]), 7, spatial_scale=1.0 / 2 ** level,
                                 sampling_ratio=2, aligned=True).numpy()[0]
            np.testing.assert_allclose(out[b, n], expected, atol=1e-4,
                                       err_msg=f"image {b} box {n} level {level}")
    assert levels_seen == {2, 3, 4, 5}


def test_static_shapes_pool_what_crop_and_resize_pools():
    rng = np.random.default_rng(1)
    features = _features(rng, channels=4)
    boxes = tf.constant(_boxes(rng))
    a = PyramidRoIAlign(5, sampling_ratio=2, static_shapes=False)(features, boxes)
    b = PyramidRoIAlign(5, sampling_ratio=2, static_shapes=True)(features, boxes)
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)
    assert float(tf.reduce_max(tf.abs(a))) > 0.1


def test_pyramid_roi_align_under_tf_function():
    rng = np.random.default_rng(2)
    features = _features(rng, batch=1, channels=2)
    boxes = tf.constant(_boxes(rng, batch=1))
    layer = PyramidRoIAlign(4)
    eager = layer(features, boxes)
    graph = tf.function(lambda f, b: layer(f, b))(features, boxes)
    np.testing.assert_allclose(eager.numpy(), graph.numpy(), atol=1e-4)


def test_pyramid_roi_align_get_config_round_trip():
    layer = PyramidRoIAlign(14, sampling_ratio=0, pooler="roi_warp", min_level=3, max_level=4,
                            static_shapes=True, name="pool")
    config = layer.get_config()
    clone = PyramidRoIAlign.from_config(config)
    assert clone.get_config() == config
    assert (clone.output_size, clone.sampling_ratio, clone.pooler, clone.min_level,
            clone.max_level, clone.static_shapes) == (14, 0, "roi_warp", 3, 4, True)
    assert clone.supports_jit and not PyramidRoIAlign(7).supports_jit
