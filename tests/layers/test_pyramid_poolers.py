"""PyramidRoIAlign with every pooler of ops/poolers.py: each box pooled on its own level by
the NumPy definition of its pooler, in both shape policies, and on a single coarse level."""

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.layers.pyramid_roi_align import PyramidRoIAlign
from mrcnn_tf.ops.poolers import ROI_POOLERS
from reference.roi_align_reference import roi_align_reference
from reference.roi_pool_reference import roi_pool_reference, roi_warp_reference

IMAGE = 128


def _reference(pooler, features, boxes, indices, size, scale):
    if pooler == "roi_pool":
        return roi_pool_reference(features, boxes, indices, size, scale)
    if pooler == "roi_warp":
        return roi_warp_reference(features, boxes, indices, size, scale, 2)
    return roi_align_reference(features, boxes, indices, size, scale, 2,
                               aligned=pooler == "roi_align")


def _inputs():
    rng = np.random.default_rng(3)
    features = [rng.normal(size=(2, IMAGE // 2 ** k, IMAGE // 2 ** k, 2)).astype(np.float32)
                for k in range(2, 6)]
    # Sides from 6 px (P2) to 500 px (P5), corners off the pixel grid, some leaving the image.
    sides = np.array([6.3, 13.0, 29.5, 70.2, 118.0, 250.0, 500.0, 9.9])
    boxes = np.zeros((2, len(sides), 4), np.float32)
    for b in range(2):
        for n, side in enumerate(rng.permutation(sides)):
            y, x = rng.uniform(-10 - side / 4, IMAGE - side / 4, 2)
            boxes[b, n] = [y, x, y + side, x + side * rng.uniform(0.5, 2.0)]
    return features, boxes


def _levels(boxes, low, high):
    sizes = np.sqrt((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]))
    return np.clip(np.floor(4 + np.log2(sizes / 224.0 + 1e-6)), low, high).astype(int)


@pytest.mark.parametrize("static_shapes", [False, True], ids=["dynamic", "static"])
@pytest.mark.parametrize("pooler", list(ROI_POOLERS))
@pytest.mark.parametrize("levels", [(2, 5), (3, 3)], ids=["fpn", "p3-only"])
def test_every_pooler_pools_each_box_on_its_level(pooler, static_shapes, levels):
    features, boxes = _inputs()
    layer = PyramidRoIAlign(5, 2, pooler, min_level=levels[0], max_level=levels[1],
                            static_shapes=static_shapes)
    got = layer([tf.constant(f) for f in features], tf.constant(boxes)).numpy()
    assigned = _levels(boxes, *levels)
    if levels == (2, 5):
        assert set(assigned.ravel()) == {2, 3, 4, 5}  # the boxes reach every level
    for b in range(2):
        for n in range(boxes.shape[1]):
            level = assigned[b, n]
            want = _reference(pooler, features[level - 2], boxes[b, n][None], [b], 5,
                              1.0 / 2 ** level)[0]
            np.testing.assert_allclose(got[b, n], want, rtol=1e-4, atol=1e-4,
                                       err_msg=f"{pooler} box {b},{n} on P{level}")


def test_the_poolers_really_differ():
    features, boxes = _inputs()
    outputs = {name: PyramidRoIAlign(5, 2, name)([tf.constant(f) for f in features],
                                                  tf.constant(boxes)).numpy()
               for name in ROI_POOLERS}
    names = list(outputs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(outputs[a] - outputs[b]).max() > 1e-2, (a, b)


@pytest.mark.parametrize("pooler", list(ROI_POOLERS))
def test_gradients_reach_the_features_in_both_shape_policies(pooler):
    features, boxes = _inputs()
    grads = []
    for static in (False, True):
        maps = [tf.Variable(f) for f in features]
        with tf.GradientTape() as tape:
            out = PyramidRoIAlign(5, 2, pooler, static_shapes=static)(maps, tf.constant(boxes))
            loss = tf.reduce_sum(out * out)
        grads.append([g.numpy() for g in tape.gradient(loss, maps)])
    for dynamic, static in zip(*grads):
        np.testing.assert_allclose(dynamic, static, rtol=1e-4, atol=1e-4)
    assert all(np.abs(g).sum() > 0 for g in grads[0])


def test_unknown_pooler_and_bad_levels_are_refused():
    with pytest.raises(ValueError, match="pooler='roi_max': expected one of"):
        PyramidRoIAlign(7, pooler="roi_max")
    with pytest.raises(ValueError, match="levels 4..3"):
        PyramidRoIAlign(7, min_level=4, max_level=3)


def test_layer_configs_saved_with_aligned_still_load():
    layer = PyramidRoIAlign.from_config({"output_size": 7, "sampling_ratio": 2,
                                         "aligned": False, "name": "old"})
    assert layer.pooler == "roi_align_v1"
