"""Mask targets (ground-truth masks cropped to RoIs) and pasting predicted masks into images."""

import tensorflow as tf


def _sample_box(start, size, num_samples, extent):
    """crop_and_resize box ends that place `num_samples` samples at the centres of equal
    sub-intervals of [start, start + size) in pixel-index coordinates of a map of `extent`
    pixels (pixel i covers [i, i + 1), so its centre is i + 0.5).

    crop_and_resize puts its first sample at b1 * (extent - 1) and its last at
    b2 * (extent - 1), so b1, b2 encode the first and last sample centres.
    """
    step = size / num_samples
    first = start + 0.5 * step - 0.5
    last = start + (num_samples - 0.5) * step - 0.5
    denom = tf.maximum(tf.cast(extent, tf.float32) - 1.0, 1.0)
    return first / denom, last / denom


def crop_mask_targets(gt_masks, rois, matched_gt, mask_size, sampling_ratio=2):
    """Crops each RoI's matched ground-truth mask to mask_size x mask_size.

    Each output pixel averages sampling_ratio^2 samples of the binary mask at the centres of
    equal sub-bins of the RoI (RoIAlign, aligned), and is thresholded at 0.5, as Detectron2
    makes its mask targets. As in RoIAlign, a sample within one pixel index of the border
    (index in [-1, 0) or (H - 1, H]) reads the edge pixel and samples beyond read 0.

    Args:
      gt_masks: [B, M, H, W] uint8 or float 0/1 full-canvas masks.
      rois: [B, P, 4] (y1, x1, y2, x2) in the same pixel frame as the masks.
      matched_gt: [B, P] int32 index into M.
      mask_size: output side (28).
    Returns:
      [B, P, mask_size, mask_size] float32 in {0, 1}.
    """
    b = tf.shape(gt_masks)[0]
    m = tf.shape(gt_masks)[1]
    h = tf.shape(gt_masks)[2]
    w = tf.shape(gt_masks)[3]
    p = tf.shape(rois)[1]
    # crop_and_resize picks each box's source image by index, so the masks are not copied
    # per RoI; uint8 input is accepted directly.
    images = tf.reshape(gt_masks, tf.stack([b * m, h, w, 1]))
    # One edge-replicated pixel per side: crop_and_resize returns 0 outside [0, H - 1], but
    # RoIAlign clamps samples in [-1, 0) and (H - 1, H] to the edge pixel (DESIGN.md), which
    # matters for objects touching the image border.
    images = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    box_indices = tf.reshape(tf.range(b)[:, None] * m + matched_gt, [-1])
    y1, x1, y2, x2 = tf.unstack(tf.reshape(rois, [-1, 4]), 4, axis=-1)
    n = mask_size * sampling_ratio
    by1, by2 = _sample_box(y1 + 1.0, y2 - y1, n, h + 2)
    bx1, bx2 = _sample_box(x1 + 1.0, x2 - x1, n, w + 2)
    crops = tf.image.crop_and_resize(
        tf.cast(images, tf.float32) if images.dtype != tf.uint8 else images,
        tf.stack([by1, bx1, by2, bx2], axis=-1), box_indices, [n, n],
        method="bilinear", extrapolation_value=0.0)  # [B*P, n, n, 1]
    if sampling_ratio > 1:
        crops = tf.nn.avg_pool2d(crops, sampling_ratio, sampling_ratio, "VALID")
    targets = tf.cast(crops[..., 0] >= 0.5, tf.float32)
    return tf.reshape(targets, tf.stack([b, p, mask_size, mask_size]))


def paste_masks(masks, boxes, height, width):
    """Pastes box-relative mask probabilities into full images.

    Each image pixel centre (i + 0.5, j + 0.5) is mapped into the box's mask and the mask is
    sampled bilinearly; the mask is framed by one pixel of zeros first so its edges fade out
    instead of ending abruptly (Detectron2's paste, grid_sample with zero padding).

    Args:
      masks: [N, m, m] float probabilities for N boxes.
      boxes: [N, 4] (y1, x1, y2, x2) in the target image's pixels.
      height, width: the target image size (ints or scalar tensors).
    Returns:
      [N, height, width] float32 probabilities (threshold at 0.5 for a binary mask).
    """
    masks = tf.convert_to_tensor(masks, tf.float32)
    m = tf.cast(tf.shape(masks)[1], tf.float32)
    framed = tf.pad(masks, [[0, 0], [1, 1], [1, 1]])[..., None]  # [N, m + 2, m + 2, 1]
    y1, x1, y2, x2 = tf.unstack(tf.cast(boxes, tf.float32), 4, axis=-1)
    bh = tf.maximum(y2 - y1, 1e-6)
    bw = tf.maximum(x2 - x1, 1e-6)
    height_f = tf.cast(height, tf.float32)
    width_f = tf.cast(width, tf.float32)

    def ends(start, size, extent):
        # Mask index of the first image pixel centre, +1 for the zero frame, and the step.
        first = (0.5 - start) * m / size - 0.5 + 1.0
        step = m / size
        last = first + step * (extent - 1.0)
        return first / (m + 1.0), last / (m + 1.0)

    by1, by2 = ends(y1, bh, height_f)
    bx1, bx2 = ends(x1, bw, width_f)
    n = tf.shape(masks)[0]
    pasted = tf.image.crop_and_resize(
        framed, tf.stack([by1, bx1, by2, bx2], axis=-1), tf.range(n),
        tf.stack([tf.cast(height, tf.int32), tf.cast(width, tf.int32)]),
        method="bilinear", extrapolation_value=0.0)
    return pasted[..., 0]
