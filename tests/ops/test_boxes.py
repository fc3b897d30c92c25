"""Tests for mrcnn_tf.ops.boxes against the NumPy reference in numpy_reference.py."""

import math

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.ops import boxes as box_ops




from reference import numpy_reference as ref  # noqa: E402


def _boxes_with_degenerate(rng, n):
    boxes = ref.random_boxes(rng, n, extent=50.0, max_size=30.0)
    boxes[0, 2] = boxes[0, 0]  # zero height
    boxes[1, 3] = boxes[1, 1]  # zero width
    boxes[2] = [5.0, 5.0, 5.0, 5.0]  # a point
    return boxes


def test_iou_and_ioa_match_numpy_on_random_boxes_with_degenerate_ones():
    rng = np.random.default_rng(0)
    a = _boxes_with_degenerate(rng, 12)
    b = _boxes_with_degenerate(rng, 9)
    b[3] = a[4]  # an identical pair: IoU 1
    got_iou = box_ops.iou(tf.constant(a), tf.constant(b)).numpy()
    got_ioa = box_ops.ioa(tf.constant(a), tf.constant(b)).numpy()
    assert got_iou.shape == (12, 9)
    np.testing.assert_allclose(got_iou, ref.iou(a, b), atol=1e-6)
    np.testing.assert_allclose(got_ioa, ref.ioa(a, b), atol=1e-6)
    assert got_iou[4, 3] == pytest.approx(1.0)
    # Degenerate boxes: IoU and IoA 0, never NaN.
    assert np.all(got_iou[:3] == 0.0) and np.all(got_ioa[:3] == 0.0)
    assert np.all(np.isfinite(got_iou)) and np.all(np.isfinite(got_ioa))
    # Some pairs actually overlap, so the comparison is not trivially all zeros.
    assert np.count_nonzero(ref.iou(a, b)) > 5


def test_iou_and_ioa_hand_made():
    a = tf.constant([[0.0, 0.0, 10.0, 10.0]])
    b = tf.constant([[0.0, 5.0, 10.0, 15.0], [2.0, 2.0, 4.0, 4.0], [20.0, 20.0, 30.0, 30.0]])
    np.testing.assert_allclose(box_ops.iou(a, b).numpy(), [[50.0 / 150.0, 0.04, 0.0]],
                               rtol=1e-6)
    # IoA divides by the first argument's area.
    np.testing.assert_allclose(box_ops.ioa(a, b).numpy(), [[0.5, 0.04, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(box_ops.ioa(b, a).numpy(), [[0.5], [1.0], [0.0]], rtol=1e-6)


def test_iou_and_ioa_batched():
    rng = np.random.default_rng(1)
    a = np.stack([_boxes_with_degenerate(rng, 7) for _ in range(3)])
    b = np.stack([_boxes_with_degenerate(rng, 5) for _ in range(3)])
    got_iou = box_ops.iou(tf.constant(a), tf.constant(b)).numpy()
    got_ioa = box_ops.ioa(tf.constant(a), tf.constant(b)).numpy()
    assert got_iou.shape == (3, 7, 5)
    for i in range(3):
        np.testing.assert_allclose(got_iou[i], ref.iou(a[i], b[i]), atol=1e-6)
        np.testing.assert_allclose(got_ioa[i], ref.ioa(a[i], b[i]), atol=1e-6)


def test_area():
    boxes = tf.constant([[0.0, 0.0, 2.0, 3.0], [1.0, 1.0, 1.0, 5.0], [4.0, 4.0, 2.0, 6.0]])
    np.testing.assert_allclose(box_ops.area(boxes).numpy(), [6.0, 0.0, 0.0])


@pytest.mark.parametrize("weights", [(10.0, 10.0, 5.0, 5.0), (1.0, 1.0, 1.0, 1.0)])
def test_encode_matches_numpy_and_decode_round_trips(weights):
    rng = np.random.default_rng(2)
    boxes = ref.random_boxes(rng, 20, min_size=2.0)
    anchors = ref.random_boxes(rng, 20, min_size=2.0)
    deltas = box_ops.encode(tf.constant(boxes), tf.constant(anchors), weights)
    np.testing.assert_allclose(deltas.numpy(), ref.encode(boxes, anchors, weights),
                               rtol=1e-4, atol=1e-4)
    back = box_ops.decode(deltas, tf.constant(anchors), weights).numpy()
    np.testing.assert_allclose(back, boxes, atol=1e-3)
    # Decoding arbitrary deltas agrees with the formula too.
    d = rng.normal(0, 1, (20, 4)).astype(np.float32)
    np.testing.assert_allclose(box_ops.decode(tf.constant(d), tf.constant(anchors), weights),
                               ref.decode(d, anchors, weights), rtol=1e-4, atol=1e-3)


def test_encode_hand_made():
    anchor = tf.constant([[0.0, 0.0, 10.0, 20.0]])
    box = tf.constant([[5.0, 0.0, 25.0, 20.0]])  # centre moved 10 down, height doubled
    np.testing.assert_allclose(box_ops.encode(box, anchor, (10.0, 10.0, 5.0, 5.0)).numpy(),
                               [[10.0, 0.0, 5.0 * math.log(2.0), 0.0]], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_decode_clamps_size_deltas(weights):
    anchor = tf.constant([[10.0, 20.0, 30.0, 60.0]])  # h 20, w 40, centre (20, 40)
    deltas = tf.constant([[0.0, 0.0, 1e4, 1e4]])
    out = box_ops.decode(deltas, anchor, weights).numpy()[0]
    assert np.all(np.isfinite(out))
    scale = 1000.0 / 16.0  # exp(log(1000 / 16))
    np.testing.assert_allclose(out, [20 - 10 * scale, 40 - 20 * scale,
                                     20 + 10 * scale, 40 + 20 * scale], rtol=1e-4)
    # Just below the clamp nothing is clamped; negative deltas are not clamped.
    below = math.log(30.0)
    out = box_ops.decode(tf.constant([[0.0, 0.0, below * weights[2], -2.0 * weights[3]]]),
                         anchor, weights).numpy()[0]
    np.testing.assert_allclose(out[2] - out[0], 20 * 30.0, rtol=1e-4)
    np.testing.assert_allclose(out[3] - out[1], 40 * math.exp(-2.0), rtol=1e-4)


def test_clip_per_image_shapes():
    boxes = tf.constant([
        [[-5.0, -5.0, 60.0, 90.0], [10.0, 10.0, 20.0, 20.0], [70.0, 0.0, 80.0, 10.0]],
        [[-5.0, -5.0, 60.0, 90.0], [10.0, 10.0, 20.0, 20.0], [70.0, 0.0, 80.0, 10.0]],
    ])
    shapes = tf.constant([[50, 80], [100, 40]], tf.int32)
    out = box_ops.clip(boxes, shapes).numpy()
    np.testing.assert_allclose(out[0], [[0, 0, 50, 80], [10, 10, 20, 20], [50, 0, 50, 10]])
    np.testing.assert_allclose(out[1], [[0, 0, 60, 40], [10, 10, 20, 20], [70, 0, 80, 10]])
    # Unbatched form.
    out = box_ops.clip(boxes[0], tf.constant([50.0, 80.0])).numpy()
    np.testing.assert_allclose(out, [[0, 0, 50, 80], [10, 10, 20, 20], [50, 0, 50, 10]])


def test_normalize_and_sizes():
    boxes = tf.constant([[10.0, 20.0, 30.0, 60.0]])
    np.testing.assert_allclose(box_ops.normalize(boxes, 100.0, 200.0).numpy(),
                               [[0.1, 0.1, 0.3, 0.3]], rtol=1e-6)
    h, w = box_ops.sizes(boxes)
    assert h.numpy()[0] == 20.0 and w.numpy()[0] == 40.0
