"""Tests for mrcnn_tf.ops.masks: mask targets (crop) and pasting masks into images."""


import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.ops import masks as mask_ops




from reference import numpy_reference as ref  # noqa: E402
from helpers import import_torch_or_skip  # noqa: E402


def _crop(masks, rois, matched, mask_size=28):
    return mask_ops.crop_mask_targets(
        tf.constant(masks), tf.constant(rois, tf.float32), tf.constant(matched, tf.int32),
        mask_size).numpy()


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_crop_roi_exactly_covering_filled_rectangle_gives_ones(dtype):
    masks = np.zeros((1, 1, 100, 90), dtype)
    masks[0, 0, 20:80, 10:70] = 1  # 60 x 60 rectangle
    out = _crop(masks, [[[20, 10, 80, 70]]], [[0]])
    assert out.shape == (1, 1, 28, 28)
    np.testing.assert_array_equal(out[0, 0], 1.0)
    # A RoI twice the rectangle's size: ones in the middle half, zeros around.
    out = _crop(masks, [[[-10, -20, 110, 100]]], [[0]])[0, 0]
    np.testing.assert_array_equal(out[8:20, 8:20], 1.0)
    assert out[:6].sum() == 0 and out[22:].sum() == 0


def test_crop_mask_filling_whole_image_gives_ones():
    # An object touching every image border (RoIAlign reads the edge pixel up to -1 / H).
    masks = np.ones((1, 1, 10, 12), np.uint8)
    out = _crop(masks, [[[0, 0, 10, 12]]], [[0]])
    np.testing.assert_array_equal(out[0, 0], 1.0)


def test_crop_left_half():
    masks = np.zeros((1, 1, 64, 128), np.uint8)
    masks[0, 0, :, :64] = 1
    out = _crop(masks, [[[0, 0, 64, 64], [0, 64, 64, 128], [0, 0, 64, 128]]], [[0, 0, 0]])
    np.testing.assert_array_equal(out[0, 0], 1.0)
    np.testing.assert_array_equal(out[0, 1], 0.0)
    np.testing.assert_array_equal(out[0, 2][:, :14], 1.0)
    np.testing.assert_array_equal(out[0, 2][:, 14:], 0.0)


def test_crop_picks_matched_mask_per_image():
    masks = np.zeros((2, 3, 32, 32), np.uint8)
    for b in range(2):
        for m in range(3):
            masks[b, m, :, : 4 + 8 * m + b] = 1  # each (image, mask) a distinct width
    rois = np.tile(np.array([[0, 0, 32, 32]], np.float32), (2, 4, 1))
    matched = np.array([[2, 0, 1, 2], [1, 1, 0, 2]])
    out = _crop(masks, rois, matched, mask_size=8)
    for b in range(2):
        for p in range(4):
            expected = ref.crop_mask(masks[b, matched[b, p]], rois[b, p], 8)
            np.testing.assert_array_equal(out[b, p], expected)
    assert not np.array_equal(out[0, 0], out[0, 1])


def test_crop_matches_numpy_on_random_masks_and_boxes():
    rng = np.random.default_rng(0)
    b, m, h, w, p, size = 2, 3, 40, 48, 12, 14
    # Blobby random masks: upsampled noise, thresholded.
    coarse = rng.random((b, m, h // 8, w // 8))
    masks = (np.kron(coarse, np.ones((8, 8))) > 0.5).astype(np.uint8)
    rois = np.zeros((b, p, 4), np.float32)
    for i in range(b):
        rois[i] = ref.random_boxes(rng, p, extent=44.0, min_size=3.0, max_size=30.0) - 4.0
    rois[0, 0] = [0, 0, h, w]  # whole image
    rois[0, 1] = [-5, -3, 10, 50]  # beyond the borders
    matched = rng.integers(0, m, (b, p))
    out = _crop(masks, rois, matched, mask_size=size)
    mismatches = 0
    for i in range(b):
        for k in range(p):
            soft = ref.crop_mask_soft(masks[i, matched[i, k]], rois[i, k], size)
            expected = (soft >= 0.5).astype(np.float32)
            clear = np.abs(soft - 0.5) > 1e-4  # skip bins on the threshold
            np.testing.assert_array_equal(out[i, k][clear], expected[clear],
                                          err_msg=f"image {i} roi {k}")
            mismatches += int((out[i, k] != expected).sum())
    assert mismatches <= 2


def test_paste_all_ones_mask_fills_the_box():
    masks = tf.ones([1, 28, 28])
    out = mask_ops.paste_masks(masks, tf.constant([[10.0, 20.0, 50.0, 60.0]]), 100, 100)
    out = out.numpy()[0]
    assert out.shape == (100, 100)
    np.testing.assert_allclose(out[11:49, 21:59], 1.0, atol=1e-5)
    assert np.all(out[:8] == 0) and np.all(out[52:] == 0)
    assert np.all(out[:, :18] == 0) and np.all(out[:, 62:] == 0)
    binary = out >= 0.5
    expected = np.zeros((100, 100), bool)
    expected[10:50, 20:60] = True
    np.testing.assert_array_equal(binary, expected)


def test_paste_matches_numpy():
    rng = np.random.default_rng(1)
    masks = rng.random((3, 7, 7)).astype(np.float32)
    boxes = np.array([[3.3, 5.1, 20.7, 17.2], [-4.0, 10.0, 12.0, 40.5], [0.0, 0.0, 30.0, 36.0]],
                     np.float32)
    out = mask_ops.paste_masks(tf.constant(masks), tf.constant(boxes), 30, 36).numpy()
    for i in range(3):
        np.testing.assert_allclose(out[i], ref.paste_mask(masks[i], boxes[i], 30, 36),
                                   atol=1e-4, err_msg=f"mask {i}")


def _legacy_paste(mask, box, height, width):
    """torchvision's paste_mask_in_image (after expand_masks / expand_boxes, padding 1), step by
    step in NumPy: box (y1, x1, y2, x2) float; bilinear resize with half-pixel centres."""
    m = mask.shape[0]
    padded = np.pad(mask.astype(np.float32), 1)
    scale = np.float32((m + 2) / m)
    box = box.astype(np.float32)
    y1, x1, y2, x2 = box
    half_h, half_w = (y2 - y1) * np.float32(0.5) * scale, (x2 - x1) * np.float32(0.5) * scale
    cy, cx = (y2 + y1) * np.float32(0.5), (x2 + x1) * np.float32(0.5)
    y1, y2 = int(cy - half_h), int(cy + half_h)  # int() truncates toward zero, as .to(int64)
    x1, x2 = int(cx - half_w), int(cx + half_w)
    h, w = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)

    def axis_weights(out_size, in_size):
        weights = np.zeros((out_size, in_size), np.float64)
        for i in range(out_size):
            src = max((i + 0.5) * in_size / out_size - 0.5, 0.0)
            lo = min(int(np.floor(src)), in_size - 1)
            hi = min(lo + 1, in_size - 1)
            lam = src - lo
            weights[i, lo] += 1.0 - lam
            weights[i, hi] += lam
        return weights

    resized = axis_weights(h, m + 2) @ padded @ axis_weights(w, m + 2).T
    out = np.zeros((height, width), np.float64)
    ys, ye = max(y1, 0), min(y2 + 1, height)
    xs, xe = max(x1, 0), min(x2 + 1, width)
    if ye > ys and xe > xs:
        out[ys:ye, xs:xe] = resized[ys - y1:ye - y1, xs - x1:xe - x1]
    return out


_LEGACY_BOXES = np.array([
    [3.3, 5.1, 20.7, 17.2],       # inside, fractional
    [-4.0, 10.0, 12.0, 40.5],     # crosses the top edge
    [0.0, 0.0, 30.0, 36.0],       # the whole image
    [25.2, 30.6, 44.9, 52.0],     # crosses the bottom-right corner
    [10.0, 12.0, 10.4, 12.3],     # smaller than a pixel: a 1 x 1 paste
    [-7.9, -3.6, 2.5, 4.1],       # negative ends, truncated toward zero
    [14.0, 7.0, 16.0, 29.0],      # flat
], np.float32)


@pytest.mark.parametrize("m", [7, 28])
def test_torchvision_paste_matches_the_legacy_steps(m):
    rng = np.random.default_rng(m)
    masks = rng.random((len(_LEGACY_BOXES), m, m)).astype(np.float32)
    out = mask_ops.paste_masks(tf.constant(masks), tf.constant(_LEGACY_BOXES), 30, 36,
                               paste_rule="torchvision").numpy()
    np.testing.assert_array_equal(
        out, mask_ops.paste_masks_torchvision(masks, _LEGACY_BOXES, 30, 36).numpy())
    assert out.shape == (len(_LEGACY_BOXES), 30, 36) and out.dtype == np.float32
    for i, box in enumerate(_LEGACY_BOXES):
        np.testing.assert_allclose(out[i], _legacy_paste(masks[i], box, 30, 36), atol=1e-5,
                                   err_msg=f"mask {i}, box {box}")


def test_torchvision_paste_of_ones_covers_the_expanded_integer_box():
    out = mask_ops.paste_masks_torchvision(tf.ones([1, 28, 28]),
                                           tf.constant([[10.0, 20.0, 50.0, 60.0]]), 100, 100)
    out = out.numpy()[0]
    # The box grows by 30/28 about its centre (40 -> 42.86 px): rows 8..51 and columns
    # 18..61 are pasted, and their outermost ring reads the zero frame.
    ys, xs = np.nonzero(out)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (9, 50, 19, 60)
    assert out[9:51, 19:61].min() > 0
    # Thresholded, it is one pixel wider on every side than the box (rows 9..50 instead of
    # 10..49), less the four corners (0.52 x 0.52 = 0.27): the legacy paste's known bias.
    expected = np.zeros((100, 100), bool)
    expected[9:51, 19:61] = True
    expected[[9, 9, 50, 50], [19, 60, 19, 60]] = False
    np.testing.assert_array_equal(out >= 0.5, expected)


def test_torchvision_paste_matches_torchvision_if_available():
    torch, torchvision = import_torch_or_skip("comparing with torchvision's "
                                              "paste_masks_in_image")
    roi_heads = torchvision.models.detection.roi_heads
    rng = np.random.default_rng(3)
    masks = rng.random((len(_LEGACY_BOXES), 28, 28)).astype(np.float32)
    # Random boxes that overlap the image (torchvision's paste fails on one wholly outside).
    start = rng.uniform([-5, -5], [25, 30], (20, 2))
    extra = np.concatenate([start, start + rng.uniform(6, 30, (20, 2))], axis=1)
    boxes = np.concatenate([_LEGACY_BOXES, extra.astype(np.float32)])
    masks = np.concatenate([masks, rng.random((20, 28, 28)).astype(np.float32)])
    xyxy = torch.from_numpy(np.ascontiguousarray(boxes[:, [1, 0, 3, 2]]))
    theirs = roi_heads.paste_masks_in_image(torch.from_numpy(masks)[:, None], xyxy,
                                            (30, 36)).numpy()[:, 0]
    ours = mask_ops.paste_masks_torchvision(masks, boxes, 30, 36).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_paste_masks_refuses_an_unknown_rule():
    with pytest.raises(ValueError, match="paste_rule"):
        mask_ops.paste_masks(tf.ones([1, 7, 7]), tf.constant([[0.0, 0.0, 5.0, 5.0]]), 8, 8,
                             paste_rule="opencv")


@pytest.mark.parametrize("rect,box,min_iou", [
    ((20, 30, 70, 95), (18.0, 28.0, 72.0, 97.0), 0.95),
    ((14, 26, 62, 98), (10.0, 20.0, 66.0, 104.0), 0.99),  # edges on 28-bin boundaries
    # Coarser bins (2.2 x 2.7 px) not aligned with the edges: a pixel of error per edge.
    ((20, 30, 70, 95), (14.5, 25.0, 76.0, 101.5), 0.93),
])
def test_crop_then_paste_round_trip(rect, box, min_iou):
    h, w = 100, 120
    full = np.zeros((h, w), np.uint8)
    full[rect[0]:rect[2], rect[1]:rect[3]] = 1
    box = np.array(box, np.float32)
    crop = _crop(full[None, None], box[None, None], [[0]])[0]  # [1, 28, 28]
    pasted = mask_ops.paste_masks(tf.constant(crop), tf.constant(box[None]), h, w).numpy()[0]
    back = pasted >= 0.5
    inter = np.logical_and(back, full).sum()
    union = np.logical_or(back, full).sum()
    assert inter / union > min_iou
    ys, xs = np.nonzero(back)
    np.testing.assert_allclose([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1], rect, atol=1)


@pytest.mark.parametrize("edge_pad", [True, False])
@pytest.mark.parametrize("sampling_ratio", [1, 2])
def test_gather_mask_sampling_matches_crop_and_resize(edge_pad, sampling_ratio):
    """The XLA-compatible (static_shapes) mask crop gives crop_and_resize's numbers, boxes that
    cross the border and tiny boxes included."""
    rng = np.random.default_rng(11)
    masks = tf.constant((rng.random((3, 40, 50)) < 0.5).astype(np.uint8))
    y1 = rng.uniform(-6, 36, 40)
    x1 = rng.uniform(-6, 46, 40)
    boxes = np.stack([y1, x1, y1 + rng.uniform(0.3, 20, 40), x1 + rng.uniform(0.3, 20, 40)], 1)
    indices = tf.constant(rng.integers(0, 3, 40), tf.int32)
    expected = mask_ops.sample_masks(masks, boxes, indices, 14, sampling_ratio, edge_pad)
    got = mask_ops.sample_masks(masks, boxes, indices, 14, sampling_ratio, edge_pad,
                                static_shapes=True)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=2e-5)
    compiled = tf.function(lambda m, b, i: mask_ops.sample_masks(
        m, b, i, 14, sampling_ratio, edge_pad, static_shapes=True), jit_compile=True)
    np.testing.assert_allclose(compiled(masks, tf.constant(boxes, tf.float32), indices).numpy(),
                               expected.numpy(), atol=2e-5)


@pytest.mark.parametrize("paste_rule", ["detectron2", "torchvision"])
@pytest.mark.parametrize("count", [0, 1, 8, 13])
def test_binary_paste_in_chunks_equals_the_thresholded_paste(paste_rule, count):
    """Chunks of 8 (a partial last one, exactly one, none at all): the same pixels as
    paste_masks(...) >= 0.5."""
    rng = np.random.default_rng(count)
    masks = rng.uniform(0, 1, (count, 14, 14)).astype(np.float32)
    y1, x1 = rng.uniform(-5, 30, count), rng.uniform(-5, 40, count)
    boxes = np.stack([y1, x1, y1 + rng.uniform(1, 25, count), x1 + rng.uniform(1, 30, count)],
                     axis=1).astype(np.float32).reshape(count, 4)
    binary = mask_ops.paste_binary_masks(masks, boxes, 37, 45, paste_rule).numpy()
    assert binary.dtype == bool and binary.shape == (count, 37, 45)
    if count:
        expected = mask_ops.paste_masks(masks, boxes, 37, 45, paste_rule).numpy() >= 0.5
        np.testing.assert_array_equal(binary, expected)
        assert binary.any()
