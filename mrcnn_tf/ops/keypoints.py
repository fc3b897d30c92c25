"""Keypoint R-CNN ops: heatmap targets, the spatial softmax loss and heatmap decoding.

Conventions: boxes are (y1, x1, y2, x2) and keypoints (y, x, v) in continuous image pixels
(pixel i covers [i, i + 1), its centre is i + 0.5). v is the COCO visibility: 0 not labelled,
1 labelled but occluded, 2 visible; as in Detectron2, every labelled keypoint (v > 0) trains.

COCO stores keypoints as integer pixel indices; Detectron2's dataset loader adds 0.5 to turn
them into continuous coordinates. That conversion belongs to the data pipeline, not here.

As in Detectron2, a heatmap is S x S bins over the RoI (S = 56) and each keypoint type is one
softmax over the S * S bins (one location per keypoint type and instance), not a per-pixel
sigmoid as for masks.
"""

import tensorflow as tf

from mrcnn_tf.modeling.losses import _global_mean


def _check_last_dim(tensor, size, name, expected):
    """Raises a ValueError naming `name` when the static last dimension is not `size`."""
    last = tensor.shape[-1]
    if last is not None and last != size:
        raise ValueError(f"{name} has last dimension {last}: expected {size} ({expected})")


def _bins(coord, start, end, heatmap_size):
    """Heatmap bin of each coordinate along one axis, as a float (may be out of range).

    Args: coord [..., K]; start, end [..., 1] the RoI's extent on this axis.
    Returns: [..., K] float32 floor((coord - start) * S / (end - start)), with coordinates
      exactly on `end` moved to bin S - 1 (the interval [start, end] is closed on the right).
    """
    size = float(heatmap_size)
    # Scale first, then multiply, in Detectron2's order, so that floor() rounds the same way.
    scale = size / (end - start)
    bins = tf.floor((coord - start) * scale)
    return tf.where(tf.equal(coord, end), size - 1.0, bins)


def keypoint_targets(keypoints, rois, heatmap_size):
    """Encodes each RoI's matched ground-truth keypoints as flat heatmap indices.

    Detectron2's rule (`keypoints_to_heatmap`), per axis (shown for x):

        x_bin = floor((x - x1) * (S / (x2 - x1)))
        x_bin = S - 1                   where x == x2 exactly (the right edge is inside)
        valid = v > 0 and 0 <= x_bin < S and 0 <= y_bin < S
        index = y_bin * S + x_bin       where valid, else 0

    So a keypoint is valid when labelled and inside the closed box [x1, x2] x [y1, y2]
    (up to the float rounding of the floor). Invalid entries get index 0, which is a legal
    label that the loss masks out. A zero-width RoI keeps only keypoints on x == x2 (the
    division gives +-inf bins, which are out of range; no NaN reaches the index).

    Args:
      keypoints: [..., N, K, 3] float (y, x, v) in image pixels.
      rois: [..., N, 4] float (y1, x1, y2, x2) in the same pixels, the RoI each keypoint set
        is matched to.
      heatmap_size: S, the heatmap side (56).
    Returns:
      indices: [..., N, K] int32 in [0, S * S).
      valid: [..., N, K] bool.
    """
    keypoints = tf.convert_to_tensor(keypoints)
    rois = tf.convert_to_tensor(rois)
    _check_last_dim(keypoints, 3, "keypoints", "(y, x, v)")
    _check_last_dim(rois, 4, "rois", "(y1, x1, y2, x2)")
    if int(heatmap_size) < 1:
        raise ValueError(f"heatmap_size={heatmap_size}: expected a positive integer")
    size = int(heatmap_size)
    keypoints = tf.cast(keypoints, tf.float32)
    rois = tf.cast(rois, tf.float32)[..., None, :]  # [..., N, 1, 4], broadcasts over K
    y, x, v = tf.unstack(keypoints, 3, axis=-1)
    y_bin = _bins(y, rois[..., 0], rois[..., 2], size)
    x_bin = _bins(x, rois[..., 1], rois[..., 3], size)
    in_range = (y_bin >= 0.0) & (y_bin < size) & (x_bin >= 0.0) & (x_bin < size)
    valid = in_range & (v > 0.0)
    # Zero the bins before the cast: casting inf (zero-size RoIs) to int is undefined.
    flat = tf.where(valid, y_bin * size + x_bin, 0.0)
    return tf.cast(flat, tf.int32), valid


def keypoint_loss(logits, indices, valid):
    """Softmax cross-entropy over the S * S heatmap bins of each valid (RoI, keypoint).

    As Detectron2's `keypoint_rcnn_loss` with its default normalization: summed over the valid
    pairs and divided by their number (over the global batch under tf.distribute), so images
    with few labelled keypoints weigh less. 0, with zero gradients, when nothing is valid.

    Args:
      logits: [B, N, S, S, K] heatmap logits, channels last (any float dtype).
      indices: [B, N, K] int32 flat index y_bin * S + x_bin (`keypoint_targets`).
      valid: [B, N, K] bool.
    Returns:
      float32 scalar.
    """
    logits = tf.convert_to_tensor(logits)
    if logits.shape.rank is not None and logits.shape.rank != 5:
        raise ValueError(f"logits has rank {logits.shape.rank}: expected 5, [B, N, S, S, K]")
    shape = tf.shape(logits)
    # [B, N, K, S, S] -> [B, N, K, S * S]: row-major (y, x), matching index = y * S + x.
    flat = tf.transpose(tf.cast(logits, tf.float32), [0, 1, 4, 2, 3])
    flat = tf.reshape(flat, tf.stack([shape[0], shape[1], shape[4], shape[2] * shape[3]]))
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(indices, tf.int32), logits=flat)  # [B, N, K]
    weight = tf.cast(valid, tf.float32)
    return _global_mean(tf.reduce_sum(ce * weight), tf.reduce_sum(weight))


def _decode_axis(index, start, end, grid):
    """Image coordinate of the centre of cell `index` of `grid` equal cells over a RoI side.

    Args: index [N, K] int32; start, end [N, 1]; grid: cells per side (python int).
    Returns: [N, K] float32 start + (index + 0.5) * max(end - start, 1) / grid.
    """
    # Detectron2 clamps the RoI side to at least 1 pixel before decoding.
    length = tf.maximum(end - start, 1.0)
    return start + (tf.cast(index, tf.float32) + 0.5) * length / float(grid)


def heatmaps_to_keypoints(logits, rois, resize_to=None, method="bicubic"):
    """Decodes each RoI's heatmaps into one (y, x, score) per keypoint type.

    Detectron2 resizes each RoI's S x S maps (bicubic) to the RoI's ceiled pixel size, takes
    the argmax cell (col, row) and returns x = x1 + (col + 0.5) * w / ceil(w) (w clamped to
    >= 1), likewise for y. Here, to keep static shapes, every RoI's maps are resized to the
    same U x U grid, U = `resize_to` (S when None: no resizing), and

        x = x1 + (col + 0.5) * max(w, 1) / U,   y = y1 + (row + 0.5) * max(h, 1) / U.

    Approximation: the answer is a cell centre of a U x U grid over the RoI instead of a pixel
    centre, so positions are quantized in steps of w / U (Detectron2's step is one pixel):
    a peak anywhere inside the winning cell is reported within w / (2U) of where it is, i.e.
    within half a heatmap bin for U = S (Detectron2: half a pixel). With U = S the answer is
    exactly the centre of the argmax bin, which is
    where a bilinear (not bicubic) resize peaks too (a bilinear surface peaks at a sample), so
    resizing bilinearly would add nothing; bicubic can move the peak between bins.
    tf.image.resize's bicubic kernel is Keys' a = -0.5, PyTorch's is a = -0.75, so even at
    U = ceil(w) the argmax can differ slightly from Detectron2's.

    Score: Detectron2's reported keypoint score (column 3 of its `heatmaps_to_keypoints`,
    which `keypoint_rcnn_inference` keeps), not the raw logit:
    exp(m - m) / sum over the S x S maps of exp(logit - m) with m the resized maximum, i.e.
    1 / sum(exp(logits - m)) = exp(m - logsumexp(S x S logits)). Normalizing over the S x S
    maps (not the resized ones) keeps scores of large and small RoIs comparable. With U = S it
    is the softmax probability of the argmax bin, in (0, 1]; a bicubic overshoot can push it
    slightly above 1.

    Args:
      logits: [N, S, S, K] heatmap logits, channels last.
      rois: [N, 4] (y1, x1, y2, x2) in image pixels.
      resize_to: U, the side of the decoding grid; None means S.
      method: a tf.image.resize method ("bicubic" as Detectron2, or "bilinear").
    Returns:
      [N, K, 3] float32 (y, x, score).
    """
    logits = tf.convert_to_tensor(logits)
    rois = tf.convert_to_tensor(rois)
    if logits.shape.rank is not None and logits.shape.rank != 4:
        raise ValueError(f"logits has rank {logits.shape.rank}: expected 4, [N, S, S, K]")
    _check_last_dim(rois, 4, "rois", "(y1, x1, y2, x2)")
    size = logits.shape[1]
    if size is None or logits.shape[2] != size:
        raise ValueError(f"logits has shape {logits.shape}: expected static square S x S maps")
    grid = size if resize_to is None else int(resize_to)
    if grid < 1:
        raise ValueError(f"resize_to={resize_to}: expected a positive integer or None")
    logits = tf.cast(logits, tf.float32)
    rois = tf.cast(rois, tf.float32)
    maps = logits if grid == size else tf.image.resize(logits, [grid, grid], method=method)
    num = tf.shape(maps)[0]
    num_keypoints = tf.shape(maps)[3]
    flat = tf.transpose(tf.reshape(maps, tf.stack([num, grid * grid, num_keypoints])),
                        [0, 2, 1])  # [N, K, U * U]
    best = tf.argmax(flat, axis=-1, output_type=tf.int32)  # [N, K], first maximum on ties
    peak = tf.reduce_max(flat, axis=-1)
    row, col = best // grid, best % grid
    y = _decode_axis(row, rois[:, 0:1], rois[:, 2:3], grid)
    x = _decode_axis(col, rois[:, 1:2], rois[:, 3:4], grid)
    # Detectron2's form, 1 / sum exp(logit - m); float32 sums of S * S terms carry ~1e-6
    # relative error either way.
    score = 1.0 / tf.reduce_sum(tf.exp(logits - peak[:, None, None, :]), axis=[1, 2])
    return tf.stack([y, x, score], axis=-1)
