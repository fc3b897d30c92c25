"""Tests for mrcnn_tf.ops.keypoints (heatmap targets, loss and decoding)."""

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.ops.keypoints import heatmaps_to_keypoints, keypoint_loss, keypoint_targets

# One RoI 32 high and 64 wide with an 8 x 8 heatmap: a bin is 4 pixels high and 8 wide.
ROI = [10.0, 20.0, 42.0, 84.0]  # (y1, x1, y2, x2)
S = 8


def _targets(points, roi=ROI, size=S):
    """points: list of (y, x, v) for one RoI -> (indices [K], valid [K]) as NumPy."""
    indices, valid = keypoint_targets(tf.constant([points], tf.float32),
                                      tf.constant([roi], tf.float32), size)
    return indices.numpy()[0], valid.numpy()[0]


def test_targets_known_bins():
    # y: floor((23 - 10) / 4) = 3, x: floor((45 - 20) / 8) = 3 -> 3 * 8 + 3.
    # y: floor(31.9 / 4) = 7, x on the left edge -> bin 0 -> 7 * 8 + 0.
    # A point on the top-left corner is inside: bin 0.
    indices, valid = _targets([(23.0, 45.0, 2), (41.9, 20.0, 1), (10.0, 20.0, 2)])
    np.testing.assert_array_equal(indices, [27, 56, 0])
    np.testing.assert_array_equal(valid, [True, True, True])


def test_targets_right_and_bottom_edges_go_to_the_last_bin():
    # x == x2 would be bin 8 (out of range); Detectron2 moves it to S - 1, same for y == y2.
    indices, valid = _targets([(23.0, 84.0, 2), (42.0, 45.0, 2), (42.0, 84.0, 2)])
    np.testing.assert_array_equal(indices, [3 * 8 + 7, 7 * 8 + 3, 63])
    np.testing.assert_array_equal(valid, [True, True, True])


def test_targets_outside_and_unlabelled_are_invalid_with_index_zero():
    points = [(23.0, 84.5, 2),   # right of x2
              (23.0, 19.9, 2),   # left of x1
              (9.9, 45.0, 2),    # above y1
              (42.1, 45.0, 2),   # below y2
              (23.0, 45.0, 0)]   # inside but not labelled
    indices, valid = _targets(points)
    np.testing.assert_array_equal(valid, [False] * 5)
    np.testing.assert_array_equal(indices, [0] * 5)
    # Occluded (v = 1) keypoints train, as in Detectron2.
    assert _targets([(23.0, 45.0, 1)])[1][0]


def test_targets_zero_size_roi_gives_no_nan_index():
    roi = [10.0, 20.0, 10.0, 20.0]
    indices, valid = _targets([(10.0, 20.0, 2), (11.0, 21.0, 2)], roi=roi)
    np.testing.assert_array_equal(valid, [True, False])  # only the (right/bottom) edge point
    np.testing.assert_array_equal(indices, [63, 0])


def _reference_targets(keypoints, rois, size):
    """NumPy transcription of the documented rule (Detectron2's keypoints_to_heatmap)."""
    y, x, v = keypoints[..., 0], keypoints[..., 1], keypoints[..., 2]
    y1, x1, y2, x2 = [rois[:, i:i + 1] for i in range(4)]
    xb = np.floor((x - x1) * (np.float32(size) / (x2 - x1)))
    yb = np.floor((y - y1) * (np.float32(size) / (y2 - y1)))
    xb[x == x2] = size - 1
    yb[y == y2] = size - 1
    valid = (xb >= 0) & (xb < size) & (yb >= 0) & (yb < size) & (v > 0)
    return np.where(valid, yb * size + xb, 0).astype(np.int32), valid


def test_targets_match_reference_on_random_points_and_batched_shapes():
    rng = np.random.default_rng(0)
    n, k, size = 6, 17, 56
    y1 = rng.uniform(0, 50, n)
    x1 = rng.uniform(0, 50, n)
    rois = np.stack([y1, x1, y1 + rng.uniform(5, 80, n), x1 + rng.uniform(5, 80, n)],
                    -1).astype(np.float32)
    kp = np.stack([rng.uniform(-10, 140, (n, k)), rng.uniform(-10, 140, (n, k)),
                   rng.integers(0, 3, (n, k))], -1).astype(np.float32)
    kp[:, 0, 1] = rois[:, 3]  # some points exactly on the right edge
    ref_idx, ref_valid = _reference_targets(kp, rois, size)
    assert 0 < ref_valid.sum() < ref_valid.size  # the case covers both outcomes
    # Leading batch dimension [B, N, K, 3] / [B, N, 4].
    idx, valid = keypoint_targets(kp[None], rois[None], size)
    np.testing.assert_array_equal(idx.numpy()[0], ref_idx)
    np.testing.assert_array_equal(valid.numpy()[0], ref_valid)


def test_targets_bad_arguments():
    with pytest.raises(ValueError, match="keypoints has last dimension 2"):
        keypoint_targets(tf.zeros([1, 3, 2]), tf.zeros([1, 4]), 8)
    with pytest.raises(ValueError, match="rois has last dimension 5"):
        keypoint_targets(tf.zeros([1, 3, 3]), tf.zeros([1, 5]), 8)
    with pytest.raises(ValueError, match="heatmap_size=0"):
        keypoint_targets(tf.zeros([1, 3, 3]), tf.zeros([1, 4]), 0)


def _reference_loss(logits, indices, valid):
    """Mean over valid (b, n, k) of -log softmax(logits[b, n, :, :, k].ravel())[index]."""
    total, count = 0.0, 0
    for b, n, k in zip(*np.nonzero(valid)):
        flat = logits[b, n, :, :, k].astype(np.float64).ravel()
        log_z = np.log(np.sum(np.exp(flat - flat.max()))) + flat.max()
        total += log_z - flat[indices[b, n, k]]
        count += 1
    return total / count


def test_loss_matches_numpy_softmax_cross_entropy():
    rng = np.random.default_rng(1)
    b, n, size, k = 2, 3, 4, 5  # S != K, so a wrong transpose would break the shapes
    logits = rng.normal(0, 2, (b, n, size, size, k)).astype(np.float32)
    indices = rng.integers(0, size * size, (b, n, k)).astype(np.int32)
    valid = rng.random((b, n, k)) < 0.5
    loss = keypoint_loss(tf.constant(logits), tf.constant(indices), tf.constant(valid))
    assert loss.dtype == tf.float32 and loss.shape == ()
    np.testing.assert_allclose(loss.numpy(), _reference_loss(logits, indices, valid),
                               rtol=1e-5)


def test_loss_reads_channels_last_maps():
    # Keypoint 1's map is confident at (y=2, x=1); keypoint 0's map is flat.
    size = 4
    logits = np.zeros((1, 1, size, size, 2), np.float32)
    logits[0, 0, 2, 1, 1] = 20.0
    valid = np.array([[[False, True]]])
    right = keypoint_loss(logits, np.array([[[0, 2 * size + 1]]], np.int32), valid)
    wrong = keypoint_loss(logits, np.array([[[0, 1 * size + 2]]], np.int32), valid)  # (x, y)
    assert right.numpy() < 1e-6 and wrong.numpy() > 19.0


def test_loss_is_zero_with_zero_gradients_when_nothing_is_valid():
    logits = tf.Variable(tf.random.normal([1, 2, 4, 4, 3]))
    with tf.GradientTape() as tape:
        loss = keypoint_loss(logits, tf.zeros([1, 2, 3], tf.int32), tf.zeros([1, 2, 3], bool))
    grad = tape.gradient(loss, logits)
    assert loss.numpy() == 0.0
    np.testing.assert_array_equal(grad.numpy(), 0.0)


def _one_hot_maps(rows, cols, size, num_rois=1, high=12.0):
    """[num_rois, size, size, K] zero logits with `high` at (rows[k], cols[k]) of map k."""
    maps = np.zeros((num_rois, size, size, len(rows)), np.float32)
    for k, (r, c) in enumerate(zip(rows, cols)):
        maps[:, r, c, k] = high
    return maps


def test_decode_one_hot_returns_the_bin_centre_and_softmax_score():
    rows, cols = [3, 0, 7], [5, 7, 0]
    maps = _one_hot_maps(rows, cols, S)
    out = heatmaps_to_keypoints(tf.constant(maps), tf.constant([ROI])).numpy()[0]
    # Bin centres: y = 10 + (row + 0.5) * 4, x = 20 + (col + 0.5) * 8.
    np.testing.assert_allclose(out[:, 0], [24.0, 12.0, 40.0])
    np.testing.assert_allclose(out[:, 1], [64.0, 80.0, 24.0])
    prob = np.exp(12.0) / (np.exp(12.0) + S * S - 1)
    np.testing.assert_allclose(out[:, 2], prob, rtol=1e-5)  # float32 sum of 64 terms


def test_decode_inverts_targets():
    """Decoding a one-hot map at a target bin and re-encoding gives the same bin."""
    rows, cols = [1, 6, 4], [2, 0, 7]
    maps = _one_hot_maps(rows, cols, S)
    decoded = heatmaps_to_keypoints(tf.constant(maps), tf.constant([ROI])).numpy()
    points = np.concatenate([decoded[..., :2], np.full((1, 3, 1), 2.0, np.float32)], -1)
    indices, valid = keypoint_targets(points, tf.constant([ROI]), S)
    np.testing.assert_array_equal(indices.numpy()[0], np.array(rows) * S + np.array(cols))
    assert valid.numpy().all()


@pytest.mark.parametrize("resize_to,method", [(4 * S, "bicubic"), (5 * S, "bilinear"),
                                              (3 * S, "bilinear")])
def test_decode_resized_is_within_half_a_bin(resize_to, method):
    rows, cols = [3, 4], [5, 2]  # interior peaks
    maps = _one_hot_maps(rows, cols, S, num_rois=2)
    rois = np.array([ROI, [0.0, 0.0, 100.0, 30.0]], np.float32)
    out = heatmaps_to_keypoints(tf.constant(maps), tf.constant(rois), resize_to=resize_to,
                                method=method).numpy()
    for roi, points in zip(rois, out):
        bin_h, bin_w = (roi[2] - roi[0]) / S, (roi[3] - roi[1]) / S
        expected_y = roi[0] + (np.array(rows) + 0.5) * bin_h
        expected_x = roi[1] + (np.array(cols) + 0.5) * bin_w
        assert np.all(np.abs(points[:, 0] - expected_y) <= 0.5 * bin_h + 1e-4)
        assert np.all(np.abs(points[:, 1] - expected_x) <= 0.5 * bin_w + 1e-4)
        if method == "bilinear" and resize_to % (2 * S) == S:
            # Odd factor: the fine grid holds the bin centres, where a bilinear map peaks.
            np.testing.assert_allclose(points[:, 0], expected_y, rtol=1e-6)
            np.testing.assert_allclose(points[:, 1], expected_x, rtol=1e-6)


def test_decode_clamps_small_rois_to_one_pixel():
    maps = _one_hot_maps([0], [S - 1], S)
    out = heatmaps_to_keypoints(maps, np.array([[5.0, 7.0, 5.0, 7.25]], np.float32)).numpy()
    # Both sides count as 1 pixel: y = 5 + 0.5 / 8, x = 7 + 7.5 / 8.
    np.testing.assert_allclose(out[0, 0, :2], [5.0 + 0.5 / S, 7.0 + 7.5 / S], rtol=1e-6)


def test_decode_bad_arguments():
    with pytest.raises(ValueError, match="expected 4, \\[N, S, S, K\\]"):
        heatmaps_to_keypoints(tf.zeros([1, 1, 8, 8, 2]), tf.zeros([1, 4]))
    with pytest.raises(ValueError, match="resize_to=0"):
        heatmaps_to_keypoints(tf.zeros([1, 8, 8, 2]), tf.zeros([1, 4]), resize_to=0)
    with pytest.raises(ValueError, match="rois has last dimension 3"):
        heatmaps_to_keypoints(tf.zeros([1, 8, 8, 2]), tf.zeros([1, 3]))
