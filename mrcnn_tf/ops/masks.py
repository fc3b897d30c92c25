"""Mask targets (ground-truth masks cropped to RoIs) and pasting predicted masks into images."""

import tensorflow as tf

from mrcnn_tf.ops.roi_align_builtin import gather_sampler


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


def sample_masks(images, boxes, box_indices, size, sampling_ratio=2, edge_pad=False,
                 static_shapes=False):
    """Mean of sampling_ratio^2 bilinear samples per output pixel of each box (RoIAlign,
    aligned, on one-channel mask images).

    Args:
      images: [K, H, W] uint8 or float masks.
      boxes: [N, 4] (y1, x1, y2, x2) in the pixel frame of `images`.
      box_indices: [N] int32 index into K.
      size: output side.
      edge_pad: read the edge pixel for samples within one pixel outside the mask image (as
        RoIAlign does for a map); otherwise samples outside read 0.
      static_shapes: gather the bilinear neighbours instead of `tf.image.crop_and_resize`
        (the same numbers to ~1e-5; compiles with XLA, which has no CropAndResize kernel,
        and has deterministic GPU gradients). False: crop_and_resize, fast on CPU and GPU.
    Returns:
      [N, size, size] float32 in [0, 1].
    """
    if static_shapes:
        return _sample_masks_gather(images, boxes, box_indices, size, sampling_ratio, edge_pad)
    images = images[..., None]
    h = tf.shape(images)[1]
    w = tf.shape(images)[2]
    offset = 0.0
    if edge_pad:
        images = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
        h, w, offset = h + 2, w + 2, 1.0
    y1, x1, y2, x2 = tf.unstack(tf.reshape(tf.cast(boxes, tf.float32), [-1, 4]), 4, axis=-1)
    n = size * sampling_ratio
    by1, by2 = _sample_box(y1 + offset, y2 - y1, n, h)
    bx1, bx2 = _sample_box(x1 + offset, x2 - x1, n, w)
    # crop_and_resize picks each box's source image by index, so masks are not copied per
    # box; uint8 input is accepted directly.
    crops = tf.image.crop_and_resize(
        images if images.dtype == tf.uint8 else tf.cast(images, tf.float32),
        tf.stack([by1, bx1, by2, bx2], axis=-1), box_indices, [n, n],
        method="bilinear", extrapolation_value=0.0)  # [N, n, n, 1]
    if sampling_ratio > 1:
        crops = tf.nn.avg_pool2d(crops, sampling_ratio, sampling_ratio, "VALID")
    return crops[..., 0]


def _sample_masks_gather(images, boxes, box_indices, size, sampling_ratio, edge_pad):
    """`sample_masks` with RoIAlign's gather sampler instead of crop_and_resize."""
    images = tf.cast(images, tf.float32)[..., None]
    h = tf.shape(images)[1]
    w = tf.shape(images)[2]
    y1, x1, y2, x2 = tf.unstack(tf.reshape(tf.cast(boxes, tf.float32), [-1, 4]), 4, axis=-1)
    n = size * sampling_ratio
    sub = (tf.range(n, dtype=tf.float32) + 0.5)[None, :]
    # Sample centres in pixel-index coordinates (pixel i's centre is at index i).
    ys = y1[:, None] + sub * ((y2 - y1) / n)[:, None] - 0.5
    xs = x1[:, None] + sub * ((x2 - x1) / n)[:, None] - 0.5
    if edge_pad:
        y_keep = x_keep = None  # RoIAlign's rule: [-1, H] reads the clamped edge, beyond 0
    else:  # crop_and_resize's rule: outside [0, H - 1] reads 0
        y_keep = (ys >= 0.0) & (ys <= tf.cast(h - 1, tf.float32))
        x_keep = (xs >= 0.0) & (xs <= tf.cast(w - 1, tf.float32))
    crops = gather_sampler(images, tf.cast(box_indices, tf.int32))(
        ys, y_keep, xs, x_keep)  # [N, n, n, 1]
    if sampling_ratio > 1:
        crops = tf.nn.avg_pool2d(crops, sampling_ratio, sampling_ratio, "VALID")
    return crops[..., 0]


def crop_mask_targets(gt_masks, rois, matched_gt, mask_size, sampling_ratio=2,
                      static_shapes=False):
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
    p = tf.shape(rois)[1]
    images = tf.reshape(gt_masks, tf.concat([[b * m], tf.shape(gt_masks)[2:]], axis=0))
    box_indices = tf.reshape(tf.range(b)[:, None] * m + matched_gt, [-1])
    crops = sample_masks(images, rois, box_indices, mask_size, sampling_ratio, edge_pad=True,
                         static_shapes=static_shapes)
    targets = tf.cast(crops >= 0.5, tf.float32)
    return tf.reshape(targets, tf.stack([b, p, mask_size, mask_size]))


def make_mini_masks(masks, boxes, size):
    """Each instance's mask resampled to size x size inside its own box ("mini-masks").

    Memory then stays bounded by the instance count, not by the image size: a COCO image
    with 100 instances needs 100 x 56 x 56 bytes instead of 100 x 1344 x 1344.

    Args:
      masks: [N, H, W] uint8 0/1 full-image masks.
      boxes: [N, 4] (y1, x1, y2, x2) in the same pixels (the instances' boxes).
      size: side of the mini-masks (56).
    Returns:
      [N, size, size] uint8 0/1.
    """
    num = tf.shape(masks)[0]
    crops = sample_masks(masks, boxes, tf.range(num), size, sampling_ratio=1)
    return tf.cast(crops >= 0.5, tf.uint8)


def crop_mini_mask_targets(mini_masks, gt_boxes, rois, matched_gt, mask_size,
                           sampling_ratio=2, static_shapes=False):
    """`crop_mask_targets` for ground truth stored as mini-masks.

    Each RoI is expressed in its matched box's mini-mask pixels, u = (y - box_y1) / box_h * m,
    and sampled there; outside the box the ground truth is 0.

    Args:
      mini_masks: [B, M, m, m] uint8 0/1, each mask inside its own gt box.
      gt_boxes: [B, M, 4] the boxes the mini-masks span.
      rois: [B, P, 4]; matched_gt: [B, P] int32 index into M.
    Returns:
      [B, P, mask_size, mask_size] float32 in {0, 1}.
    """
    b = tf.shape(mini_masks)[0]
    m = tf.shape(mini_masks)[1]
    p = tf.shape(rois)[1]
    side = tf.cast(tf.shape(mini_masks)[2], tf.float32)
    boxes = tf.gather(gt_boxes, matched_gt, batch_dims=1)  # [B, P, 4]
    by1, bx1, by2, bx2 = tf.unstack(boxes, 4, axis=-1)
    sy = side / tf.maximum(by2 - by1, 1e-6)
    sx = side / tf.maximum(bx2 - bx1, 1e-6)
    y1, x1, y2, x2 = tf.unstack(rois, 4, axis=-1)
    local = tf.stack([(y1 - by1) * sy, (x1 - bx1) * sx, (y2 - by1) * sy, (x2 - bx1) * sx], -1)
    images = tf.reshape(mini_masks, tf.concat([[b * m], tf.shape(mini_masks)[2:]], axis=0))
    box_indices = tf.reshape(tf.range(b)[:, None] * m + matched_gt, [-1])
    crops = sample_masks(images, local, box_indices, mask_size, sampling_ratio,
                         static_shapes=static_shapes)
    targets = tf.cast(crops >= 0.5, tf.float32)
    return tf.reshape(targets, tf.stack([b, p, mask_size, mask_size]))


def paste_masks(masks, boxes, height, width, paste_rule="detectron2"):
    """Pastes box-relative mask probabilities into full images by `paste_rule`.

    Args:
      masks: [N, m, m] float probabilities for N boxes.
      boxes: [N, 4] (y1, x1, y2, x2) in the target image's pixels.
      height, width: the target image size (ints or scalar tensors).
      paste_rule: a key of `PASTE_RULES` (Config.paste_rule): "detectron2"
        (`paste_masks_detectron2`) or "torchvision" (`paste_masks_torchvision`).
    Returns:
      [N, height, width] float32 probabilities (threshold at 0.5 for a binary mask).
    """
    if paste_rule not in PASTE_RULES:
        raise ValueError(f"paste_masks: paste_rule={paste_rule!r}, expected one of "
                         f"{tuple(PASTE_RULES)}")
    return PASTE_RULES[paste_rule](masks, boxes, height, width)


def paste_masks_detectron2(masks, boxes, height, width):
    """`paste_masks` as Detectron2 pastes.

    Each image pixel centre (i + 0.5, j + 0.5) is mapped into the box's mask and the mask is
    sampled bilinearly; the mask is framed by one pixel of zeros first so its edges fade out
    instead of ending abruptly (grid_sample with zero padding).

    Args, returns: as `paste_masks`.
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


def paste_binary_masks(masks, boxes, height, width, paste_rule="detectron2", threshold=0.5,
                       chunk=8):
    """`paste_masks(...) >= threshold`, pasted `chunk` masks at a time.

    The float32 pasted probabilities are the peak of inference memory on large images (100
    masks at 1024x1024 are 420 MB, next to a 105 MB boolean result); in chunks only
    [chunk, height, width] of them exist at once. The values are `paste_masks`' exactly.

    Args:
      masks: [N, m, m] float probabilities; boxes: [N, 4] (y1, x1, y2, x2) image pixels.
      height, width: the image size (ints or scalar tensors).
      paste_rule, threshold: as `paste_masks`; pixels with probability >= threshold are True.
      chunk: masks pasted together (Python int >= 1).
    Returns:
      [N, height, width] bool.
    """
    masks = tf.convert_to_tensor(masks, tf.float32)
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    n = tf.shape(masks)[0]
    m = tf.shape(masks)[1]
    # At least one group, so that no masks still give a well-shaped empty result.
    padded = tf.where(n == 0, chunk, (-n) % chunk)
    grouped_masks = tf.reshape(tf.pad(masks, [[0, padded], [0, 0], [0, 0]]),
                               tf.stack([-1, chunk, m, m]))
    grouped_boxes = tf.reshape(tf.pad(boxes, [[0, padded], [0, 0]]), [-1, chunk, 4])

    def paste_group(group):
        return paste_masks(group[0], group[1], height, width, paste_rule) >= threshold

    pasted = tf.map_fn(paste_group, (grouped_masks, grouped_boxes),
                       fn_output_signature=tf.TensorSpec([chunk, None, None], tf.bool),
                       parallel_iterations=1)
    return tf.reshape(pasted, tf.stack([-1, tf.shape(pasted)[2], tf.shape(pasted)[3]]))[:n]


def _resize_weights(start, end, size, extent):
    """[N, extent, size] bilinear weights (half-pixel centres, as F.interpolate with
    align_corners=False) that resize a length-`size` signal onto the image pixels
    start..end (inclusive, integers) of a length-`extent` axis; zero rows elsewhere."""
    start, end = start[:, None], end[:, None]  # [N, 1] int32
    out_size = tf.maximum(end - start + 1, 1)
    size_f = tf.cast(size, tf.float32)
    scale = size_f / tf.cast(out_size, tf.float32)
    pixels = tf.range(extent)[None, :]  # [1, extent]
    inside = (pixels >= start) & (pixels <= end)
    source = scale * (tf.cast(pixels - start, tf.float32) + 0.5) - 0.5
    source = tf.maximum(source, 0.0)
    lower = tf.minimum(tf.floor(source), size_f - 1.0)
    weight = tf.clip_by_value(source - lower, 0.0, 1.0)
    lower = tf.cast(lower, tf.int32)
    upper = tf.minimum(lower + 1, size - 1)
    weight = weight * tf.cast(upper > lower, tf.float32)
    keep = tf.cast(inside, tf.float32)
    return ((1.0 - weight) * keep)[..., None] * tf.one_hot(lower, size) + (
        weight * keep)[..., None] * tf.one_hot(upper, size)


def paste_masks_torchvision(masks, boxes, height, width):
    """`paste_masks` as torchvision pastes (roi_heads.paste_masks_in_image, padding 1).

    The m x m mask is framed by one pixel of zeros and its box scaled by (m + 2) / m about its
    centre, then truncated to integers (x1, y1, x2, y2); the framed mask is bilinearly resized
    (half-pixel centres, edge-clamped, no antialiasing) to (y2 - y1 + 1, x2 - x1 + 1), at least
    1 x 1, and written at rows y1..y2, columns x1..x2, clipped to the image; zero elsewhere.
    The resize is separable, so each mask is pasted as rows @ mask @ columns^T with sparse
    interpolation matrices.

    Args, returns: as `paste_masks`.
    """
    masks = tf.convert_to_tensor(masks, tf.float32)
    m = tf.shape(masks)[1]
    framed = tf.pad(masks, [[0, 0], [1, 1], [1, 1]])  # [N, m + 2, m + 2]
    scale = tf.cast(m + 2, tf.float32) / tf.cast(m, tf.float32)
    y1, x1, y2, x2 = tf.unstack(tf.cast(boxes, tf.float32), 4, axis=-1)

    def expand(lo, hi):
        # torchvision's expand_boxes in float32, then .to(int64) (truncation toward zero).
        half = (hi - lo) * 0.5 * scale
        centre = (hi + lo) * 0.5
        return tf.cast(centre - half, tf.int32), tf.cast(centre + half, tf.int32)

    ey1, ey2 = expand(y1, y2)
    ex1, ex2 = expand(x1, x2)
    rows = _resize_weights(ey1, ey2, m + 2, tf.cast(height, tf.int32))  # [N, H, m + 2]
    cols = _resize_weights(ex1, ex2, m + 2, tf.cast(width, tf.int32))  # [N, W, m + 2]
    return tf.matmul(tf.matmul(rows, framed), cols, transpose_b=True)


# Keyed by Config.paste_rule's allowed values.
PASTE_RULES = {"detectron2": paste_masks_detectron2, "torchvision": paste_masks_torchvision}
