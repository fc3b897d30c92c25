"""Tests for mrcnn_tf.ops.keypoints (heatmap targets, loss and decoding)."""

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.ops.keypoints import (heatmaps_to_keypoints, heatmaps_to_keypoints_torchvision,
                                    keypoint_loss, keypoint_targets, torch_bicubic_resize,
                                    torch_bicubic_taps)

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


# -- torchvision's decode --------------------------------------------------------------------
def _keys_cubic(x, a=-0.75):
    """Keys' cubic convolution kernel at distances x (float64)."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def _reference_resize(maps, height, width):
    """float64 NumPy bicubic resize of [..., H, W] as F.interpolate(align_corners=False)
    documents it: sample u = (in / out)(i + 0.5) - 0.5, its 4 neighbours clamped to the
    border, Keys' weights of their distances."""
    out = np.asarray(maps, np.float64)
    for axis, size in ((-1, width), (-2, height)):
        n = out.shape[axis]
        u = n / size * (np.arange(size) + 0.5) - 0.5
        base = np.floor(u)
        moved = np.moveaxis(out, axis, -1)
        total = 0.0
        for j in range(-1, 3):
            taps = np.clip(base + j, 0, n - 1).astype(int)
            total = total + moved[..., taps] * _keys_cubic(u - (base + j))
        out = np.moveaxis(total, -1, axis)
    return out


def _reference_torchvision_decode(logits, rois):
    """NumPy transcription of the documented torchvision rule: [N, K, 3] (y, x, logit), and
    each map's margin between its best and second best resized value."""
    results, margins = [], []
    for maps, roi in zip(logits, rois.astype(np.float32)):
        sides = np.maximum(roi[2:] - roi[:2], np.float32(1))  # float32 (h, w), as the op
        size = np.ceil(sides).astype(int)
        flat = _reference_resize(maps.transpose(2, 0, 1), *size).reshape(maps.shape[-1], -1)
        best = flat.argmax(-1)
        rows, cols = np.divmod(best, size[1])
        top2 = np.sort(flat, axis=-1)[:, -2:]
        margins.append(top2[:, 1] - top2[:, 0] if flat.shape[1] > 1 else np.inf + top2[:, 0])
        results.append(np.stack([roi[0] + (rows + 0.5) * sides[0] / size[0],
                                 roi[1] + (cols + 0.5) * sides[1] / size[1],
                                 flat.max(-1)], axis=-1))
    return np.array(results), np.array(margins)


def _random_heatmaps_and_rois(num=12, size=56, k=5, seed=0):
    """Smooth random logits (a few bumps, as a head's heatmaps) and RoIs from under a pixel to
    hundreds of pixels, fractional corners, thin and wide."""
    rng = np.random.default_rng(seed)
    grid = np.arange(size)
    logits = rng.normal(0, 0.1, (num, size, size, k))
    for _ in range(3):
        cy, cx = rng.uniform(0, size, (2, num, 1, 1, k))
        sigma = rng.uniform(2, 8, (num, 1, 1, k))
        logits += rng.uniform(2, 8, (num, 1, 1, k)) * np.exp(
            -((grid[:, None, None] - cy) ** 2 + (grid[None, :, None] - cx) ** 2) / sigma ** 2)
    y1, x1 = rng.uniform(-5, 300, (2, num))
    h = np.exp(rng.uniform(np.log(0.4), np.log(400), num))
    w = np.exp(rng.uniform(np.log(0.4), np.log(400), num))
    rois = np.stack([y1, x1, y1 + h, x1 + w], -1).astype(np.float32)
    # Under a pixel each way (clamped to 1 x 1), and 56 x 56 pixels (the maps as they are).
    rois[:2] = [[3.0, 4.0, 3.2, 4.5], [10.0, 20.0, 66.0, 76.0]][:num]
    return logits.astype(np.float32), rois


def test_torch_bicubic_taps_identity_border_and_unit_sum():
    indices, weights = torch_bicubic_taps(7, 7)  # same size: each output is its own sample
    np.testing.assert_array_equal(weights.numpy(), np.tile([0.0, 1.0, 0.0, 0.0], (7, 1)))
    np.testing.assert_array_equal(indices.numpy()[:, 1], np.arange(7))
    for in_size, out_size in ((56, 3), (56, 113), (5, 64), (56, 1)):
        indices, weights = (t.numpy() for t in torch_bicubic_taps(in_size, out_size))
        assert indices.shape == weights.shape == (out_size, 4)
        assert indices.min() >= 0 and indices.max() <= in_size - 1  # the border repeats
        np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
    # Upsampling 5 -> 64: the first outputs sample before the first input (u < 0), whose
    # taps clamp to sample 0 (u is not clamped to 0, as PyTorch's linear modes do).
    indices, _ = torch_bicubic_taps(5, 64)
    np.testing.assert_array_equal(indices.numpy()[0], [0, 0, 0, 1])


@pytest.mark.parametrize("height,width", [(1, 1), (3, 200), (56, 56), (57, 113), (300, 17),
                                          (40, 29)])
def test_torch_bicubic_resize_matches_the_documented_kernel(height, width):
    maps = _random_heatmaps_and_rois(num=1, k=3)[0][0].transpose(2, 0, 1)  # [K, 56, 56]
    ours = torch_bicubic_resize(maps, height, width).numpy()
    expected = _reference_resize(maps, height, width)
    assert ours.shape == expected.shape == (3, height, width)
    np.testing.assert_allclose(ours, expected, atol=1e-5 * np.abs(expected).max())


def test_decode_torchvision_matches_the_documented_rule():
    logits, rois = _random_heatmaps_and_rois()
    ours = heatmaps_to_keypoints_torchvision(tf.constant(logits), tf.constant(rois)).numpy()
    expected, margin = _reference_torchvision_decode(logits, rois)
    assert ours.shape == expected.shape == (12, 5, 3)
    # Where the best resized value leads the second by more than float32 noise, the argmax is
    # the same pixel: positions agree to float32 rounding, and so does the logit.
    clear = margin > 1e-4
    assert clear.mean() > 0.8
    np.testing.assert_allclose(ours[clear][:, :2], expected[clear][:, :2], rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(ours[..., 2], expected[..., 2], atol=1e-5 * np.abs(logits).max())
    # A RoI under a pixel each way is clamped to 1 x 1: its only pixel's centre.
    np.testing.assert_allclose(ours[0, :, :2], np.tile([3.5, 4.5], (5, 1)), rtol=1e-6)


def test_decode_torchvision_in_a_graph_keeps_static_shapes_and_takes_no_rois():
    logits, rois = _random_heatmaps_and_rois(num=3)
    decode = tf.function(heatmaps_to_keypoints_torchvision)
    out = decode(tf.constant(logits), tf.constant(rois))
    assert out.shape == (3, 5, 3)
    np.testing.assert_array_equal(out.numpy(), heatmaps_to_keypoints_torchvision(
        logits, rois).numpy())
    assert heatmaps_to_keypoints_torchvision(np.zeros((0, 56, 56, 5), np.float32),
                                             np.zeros((0, 4), np.float32)).shape == (0, 5, 3)
    symbolic = decode.get_concrete_function(tf.TensorSpec([None, 56, 56, 5], tf.float32),
                                            tf.TensorSpec([None, 4], tf.float32))
    assert symbolic.output_shapes.as_list() == [None, 5, 3]


def test_decode_torchvision_matches_torchvision():
    """Bit for bit where PyTorch's CPU kernel fuses multiply-adds as x86 builds do; the
    assertions leave room for a build that rounds otherwise (a rare argmax flip)."""
    from helpers import import_torch_or_skip
    torch, _ = import_torch_or_skip("comparing with torchvision's heatmaps_to_keypoints")
    import torch.nn.functional as F
    from torchvision.models.detection.roi_heads import heatmaps_to_keypoints as reference
    logits, rois = _random_heatmaps_and_rois(num=24, k=17, seed=3)
    maps = torch.from_numpy(logits).permute(0, 3, 1, 2).contiguous()
    resized = F.interpolate(maps[:4], size=(97, 31), mode="bicubic", align_corners=False)
    ours_resized = torch_bicubic_resize(maps[:4].numpy(), 97, 31).numpy()
    resize_error = np.abs(ours_resized - resized.numpy()).max()
    with torch.no_grad():
        xy, scores = reference(maps, torch.from_numpy(rois[:, [1, 0, 3, 2]]))
    ours = heatmaps_to_keypoints_torchvision(logits, rois).numpy()
    same = (ours[..., 0] == xy[..., 1].numpy()) & (ours[..., 1] == xy[..., 0].numpy())
    score_error = np.abs(ours[..., 2] - scores.numpy()).max()
    print(f"torchvision decode: {int(same.sum())} of {same.size} keypoints identical, max "
          f"|score error| {score_error:.3g}, max |resize error| {resize_error:.3g}")
    assert resize_error <= 1e-5 * np.abs(logits).max()
    assert same.mean() >= 0.99
    assert score_error <= 1e-5 * np.abs(logits).max()
    # A flip moves a keypoint by one pixel of its RoI's grid at most (here <= 1 px).
    distance = np.abs(ours[..., 1::-1] - xy[..., :2].numpy()).max()
    assert distance <= 1.0 + 1e-4


def test_decode_torchvision_bad_arguments():
    with pytest.raises(ValueError, match="expected 4, \\[N, S, S, K\\]"):
        heatmaps_to_keypoints_torchvision(tf.zeros([1, 1, 8, 8, 2]), tf.zeros([1, 4]))
    with pytest.raises(ValueError, match="rois has last dimension 3"):
        heatmaps_to_keypoints_torchvision(tf.zeros([1, 8, 8, 2]), tf.zeros([1, 3]))
    with pytest.raises(ValueError, match="parallel_rois=0"):
        heatmaps_to_keypoints_torchvision(tf.zeros([1, 8, 8, 2]), tf.zeros([1, 4]),
                                          parallel_rois=0)
    with pytest.raises(ValueError, match="expected \\[..., H, W\\] with static H, W"):
        torch_bicubic_resize(tf.zeros([4]), 2, 2)
