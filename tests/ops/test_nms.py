"""Tests for mrcnn_tf.ops.nms against a NumPy greedy NMS."""


import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.ops import nms




from reference import numpy_reference as ref  # noqa: E402


def _clustered_boxes(rng, n):
    # Few clusters so plenty of pairs overlap above the thresholds tested.
    centres = rng.uniform(10, 60, (4, 2))[rng.integers(0, 4, n)]
    size = rng.uniform(8, 20, (n, 2))
    jitter = rng.normal(0, 3, (n, 2))
    c = centres + jitter
    return np.concatenate([c - size / 2, c + size / 2], axis=1).astype(np.float32)


@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("seed", [0, 1])
def test_nms_padded_matches_numpy_greedy(iou_threshold, seed):
    rng = np.random.default_rng(seed)
    boxes = _clustered_boxes(rng, 40)
    scores = rng.permutation(40).astype(np.float32) / 40.0  # distinct
    expected = ref.greedy_nms(boxes, scores, iou_threshold)
    assert 1 < len(expected) < 40  # suppression happened
    max_out = 45
    indices, count = nms.nms_padded(tf.constant(boxes), tf.constant(scores), max_out,
                                    iou_threshold)
    indices, count = indices.numpy(), int(count)
    assert indices.shape == (max_out,)
    assert count == len(expected)
    np.testing.assert_array_equal(indices[:count], expected)
    np.testing.assert_array_equal(indices[count:], 0)
    # Truncated output: the first kept boxes, in score order.
    indices, count = nms.nms_padded(tf.constant(boxes), tf.constant(scores), 2, iou_threshold)
    assert int(count) == 2
    np.testing.assert_array_equal(indices.numpy(), expected[:2])


def test_nms_suppresses_only_above_threshold():
    # IoU of these two is exactly 0.5: kept at threshold 0.5, suppressed at 0.49.
    boxes = tf.constant([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0]])
    scores = tf.constant([0.9, 0.8])
    _, count = nms.nms_padded(boxes, scores, 2, 0.5)
    assert int(count) == 2
    indices, count = nms.nms_padded(boxes, scores, 2, 0.49)
    assert int(count) == 1 and indices.numpy()[0] == 0


def test_nms_score_threshold():
    boxes = tf.constant([[0.0, 0.0, 1.0, 1.0], [5.0, 5.0, 6.0, 6.0], [9.0, 9.0, 10.0, 10.0]])
    scores = tf.constant([0.2, 0.6, 0.1])
    indices, count = nms.nms_padded(boxes, scores, 3, 0.5, score_threshold=0.15)
    assert int(count) == 2
    np.testing.assert_array_equal(indices.numpy(), [1, 0, 0])


def test_batched_nms_padded_per_image():
    rng = np.random.default_rng(3)
    b, n, max_out, thr = 3, 30, 32, 0.5
    boxes = np.stack([_clustered_boxes(rng, n) for _ in range(b)])
    scores = np.stack([rng.permutation(n) for _ in range(b)]).astype(np.float32)
    indices, valid = nms.batched_nms_padded(tf.constant(boxes), tf.constant(scores), max_out,
                                            thr)
    indices, valid = indices.numpy(), valid.numpy()
    assert indices.shape == (b, max_out) and valid.dtype == bool
    for i in range(b):
        expected = ref.greedy_nms(boxes[i], scores[i], thr)
        k = len(expected)
        np.testing.assert_array_equal(valid[i], np.arange(max_out) < k)
        np.testing.assert_array_equal(indices[i, :k], expected)
        np.testing.assert_array_equal(indices[i, k:], 0)
    # Images differ, so their results do too (each image used its own boxes).
    assert not np.array_equal(valid[0], valid[1]) or not np.array_equal(indices[0], indices[1])


def test_offset_boxes_by_group_separates_groups():
    boxes = tf.constant([[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0],
                          [1.0, 1.0, 10.0, 10.0], [-20.0, -5.0, 30.0, 8.0]]])
    groups = tf.constant([[1, 2, 1, 0]])
    shifted = nms.offset_boxes_by_group(boxes, groups)
    # Identical boxes in different groups no longer overlap; same group: unchanged IoU.
    indices, valid = nms.batched_nms_padded(shifted, tf.constant([[0.9, 0.8, 0.7, 0.6]]), 4,
                                            0.5)
    kept = set(indices.numpy()[0][valid.numpy()[0]].tolist())
    assert kept == {0, 1, 3}  # box 2 (same group as 0, IoU 0.81) suppressed
    s = shifted.numpy()[0]
    b = boxes.numpy()[0]
    np.testing.assert_allclose(s[:, 2:] - s[:, :2], b[:, 2:] - b[:, :2], atol=1e-4)
    iou = ref.iou(s, s)
    groups_np = groups.numpy()[0]
    for i in range(4):
        for j in range(4):
            if groups_np[i] != groups_np[j]:
                assert iou[i, j] == 0.0
    assert iou[0, 2] == pytest.approx(ref.iou(b[:1], b[2:3])[0, 0], rel=1e-4)


def test_offset_boxes_by_group_random_no_cross_group_overlap():
    rng = np.random.default_rng(4)
    boxes = _clustered_boxes(rng, 30)[None] - 30.0  # some negative coordinates
    groups = rng.integers(0, 5, (1, 30))
    s = nms.offset_boxes_by_group(tf.constant(boxes), tf.constant(groups)).numpy()[0]
    iou = ref.iou(s, s)
    cross = groups[0][:, None] != groups[0][None, :]
    assert np.all(iou[cross] == 0.0)
    same = ~cross & ~np.eye(30, dtype=bool)
    np.testing.assert_allclose(iou[same], ref.iou(boxes[0], boxes[0])[same], atol=1e-4)
