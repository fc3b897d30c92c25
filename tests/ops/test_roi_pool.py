"""RoIPool and RoIWarp (ops/roi_pool.py) against the plain NumPy definitions, boxes leaving
the map and bins falling outside it included."""

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.ops.roi_pool import roi_pool, roi_warp, round_half_away
from reference.roi_pool_reference import roi_pool_reference, roi_warp_reference

FEATURES = np.random.default_rng(0).normal(size=(2, 9, 11, 3)).astype(np.float32)
BOXES = np.array([
    [0.0, 0.0, 17.0, 21.0],      # the whole map at scale 0.5
    [3.2, 5.7, 9.9, 12.4],       # fractional corners
    [-6.0, -4.0, 5.0, 7.0],      # leaving the map at the top left
    [12.0, 14.0, 30.0, 40.0],    # leaving it at the bottom right
    [40.0, 40.0, 60.0, 60.0],    # wholly outside: every bin empty
    [5.0, 5.0, 5.0, 5.0],        # a point
    [1.0, 3.0, 2.0, 19.0],       # thinner than a bin
], np.float32)
INDICES = np.array([0, 1, 0, 1, 0, 1, 0], np.int32)


@pytest.mark.parametrize("output_size", [2, (3, 4), 7])
@pytest.mark.parametrize("spatial_scale", [0.5, 0.25, 1.0])
def test_roi_pool_matches_the_reference(output_size, spatial_scale):
    got = roi_pool(FEATURES, BOXES, INDICES, output_size, spatial_scale).numpy()
    want = roi_pool_reference(FEATURES, BOXES, INDICES, output_size, spatial_scale)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_roi_pool_empty_bins_are_zero_and_the_whole_map_gives_its_maximum():
    pooled = roi_pool(FEATURES, BOXES, INDICES, 1, 0.5).numpy()
    np.testing.assert_allclose(pooled[0, 0, 0], FEATURES[0].max(axis=(0, 1)), rtol=1e-6)
    assert not pooled[4].any()


def test_roi_pool_gradient_reaches_each_bins_maximum_only():
    features = tf.Variable(FEATURES)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(roi_pool(features, BOXES[:1], INDICES[:1], 1, 0.5))
    grad = tape.gradient(total, features).numpy()
    assert grad.sum() == pytest.approx(3.0)  # one maximum per channel
    for c in range(3):
        assert grad[0, ..., c].flatten()[FEATURES[0, ..., c].argmax()] == 1.0


@pytest.mark.parametrize("sampling_ratio", [1, 2])
@pytest.mark.parametrize("spatial_scale", [0.5, 0.25])
def test_roi_warp_matches_the_reference(sampling_ratio, spatial_scale):
    got = roi_warp(FEATURES, BOXES, INDICES, (3, 4), spatial_scale, sampling_ratio).numpy()
    want = roi_warp_reference(FEATURES, BOXES, INDICES, (3, 4), spatial_scale, sampling_ratio)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_rounding_is_half_away_from_zero():
    np.testing.assert_array_equal(round_half_away(tf.constant([0.5, 1.5, 2.5, -0.5, -1.4])),
                                  [1.0, 2.0, 3.0, -1.0, -1.0])


def test_both_run_in_a_function_with_unknown_sizes_and_keep_bfloat16():
    spec = [tf.TensorSpec([None, None, None, 3], tf.bfloat16), tf.TensorSpec([None, 4]),
            tf.TensorSpec([None], tf.int32)]
    for op in (roi_pool, roi_warp):
        pooled = tf.function(lambda f, b, i: op(f, b, i, 2, 0.5), input_signature=spec)(
            tf.cast(FEATURES, tf.bfloat16), BOXES, INDICES)
        assert pooled.dtype == tf.bfloat16 and pooled.shape == (7, 2, 2, 3)


@pytest.mark.parametrize("output_size", [2, (3, 4), 7])
@pytest.mark.parametrize("spatial_scale", [0.5, 0.25, 1.0])
def test_roi_pool_matches_torchvision(output_size, spatial_scale):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    torchvision = pytest.importorskip("torchvision", reason="torchvision is not installed")
    size = (output_size, output_size) if isinstance(output_size, int) else output_size
    rois = np.concatenate([INDICES[:, None].astype(np.float32), BOXES[:, [1, 0, 3, 2]]], 1)
    want = torchvision.ops.roi_pool(torch.tensor(FEATURES).permute(0, 3, 1, 2),
                                    torch.tensor(rois), size, spatial_scale)
    got = roi_pool(FEATURES, BOXES, INDICES, output_size, spatial_scale).numpy()
    np.testing.assert_allclose(got, want.permute(0, 2, 3, 1).numpy(), rtol=1e-6, atol=1e-6)


def test_roi_pool_in_a_graph_equals_the_reference():
    # Bin edges such as ceil(7 * 6 / 7) are exact integers; float32 products once rounded
    # differently inside tf.function than eagerly.
    rng = np.random.default_rng(5)
    features = rng.normal(size=(1, 16, 16, 2)).astype(np.float32)
    corners = rng.uniform(0, 40, (40, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + rng.uniform(1, 30, (40, 2))], 1).astype(
        np.float32)
    indices = np.zeros(40, np.int32)
    graph = tf.function(lambda f, b, i: roi_pool(f, b, i, 7, 0.25))
    want = roi_pool_reference(features, boxes, indices, 7, 0.25)
    np.testing.assert_allclose(graph(features, boxes, indices).numpy(), want, atol=1e-6)
    np.testing.assert_allclose(graph(features, boxes[:1], indices[:1]).numpy(), want[:1],
                               atol=1e-6)
