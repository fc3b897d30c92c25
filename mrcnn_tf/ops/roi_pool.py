"""The poolers RoIAlign replaced: Fast R-CNN's RoIPool and the RoIWarp of Mask R-CNN's Table 2.

Both round the box to the feature grid, the misalignment RoIAlign removes (He et al., 2017,
Sec. 3 and Table 2c). They exist here to rerun that comparison; the model pools with RoIAlign
(`mrcnn_tf.ops.roi_align`).

`roi_pool` (Girshick, 2015; Caffe's and torchvision's `roi_pool`). For a box (y1, x1, y2, x2)
in input-image pixels and a map of height H and width W, with s = spatial_scale and round()
rounding halves away from zero:

  start_y = round(y1 * s),  end_y = round(y2 * s)          (x likewise)
  roi_h = max(end_y - start_y + 1, 1)   (an integer)
  bin ph covers rows [floor(ph * roi_h / out_h), ceil((ph + 1) * roi_h / out_h)) + start_y,
  clipped to [0, H] (computed with integers, so exact)
  out[n, ph, pw, :] = max of F[b_n] over the bin's rows and columns, 0 for an empty bin

`roi_warp` (Dai et al., 2016): the box's corners rounded to the nearest feature cell, round(y1 *
s) / s and so on, then bilinear sampling of the rounded box exactly as RoIAlign with
aligned=False does (`sampling_ratio` samples per bin side, averaged).

Precision and gradients as `roi_align`: float32 arithmetic, the result in features.dtype;
gradients flow to the features (RoIPool's to each bin's maximum), none to the boxes.
"""

from __future__ import annotations

import tensorflow as tf

from mrcnn_tf.ops.roi_align import normalize_output_size, roi_align


def round_half_away(values: tf.Tensor) -> tf.Tensor:
    """C's round(): halves away from zero (tf.round rounds halves to even)."""
    return tf.sign(values) * tf.floor(tf.abs(values) + 0.5)


def _bin_edges(start, end, num_bins: int, size):
    """RoIPool's bins along one axis, in exact integer arithmetic.

    The rounded ends are whole cells, so the extent is an integer and floor(p * extent / n),
    ceil((p + 1) * extent / n) are integer divisions. (Float32 products such as
    7 * float32(6 / 7) land on either side of 6 depending on how a graph is optimized:
    tf.function and eager gave different bins before this was exact.)

    Args: start, end: float32 [N] rounded box ends in feature cells; num_bins: out size;
      size: int32 [] the map's extent.
    Returns: (first cell int32 [N, num_bins], cell count int32 [N, num_bins]), clipped to the
      map (count 0: an empty bin).
    """
    # Ends beyond 2^20 cells (no real box) are clipped there so index * extent fits int32.
    start = tf.cast(tf.clip_by_value(start, -2.0 ** 20, 2.0 ** 20), tf.int32)[:, None]
    end = tf.cast(tf.clip_by_value(end, -2.0 ** 20, 2.0 ** 20), tf.int32)[:, None]
    extent = tf.maximum(end - start + 1, 1)  # [N, 1]
    index = tf.range(num_bins, dtype=tf.int32)[None, :]
    first = tf.clip_by_value(tf.math.floordiv(index * extent, num_bins) + start, 0, size)
    last = tf.clip_by_value(-tf.math.floordiv(-(index + 1) * extent, num_bins) + start, 0, size)
    return first, tf.maximum(last - first, 0)


def roi_pool(features, boxes, box_indices, output_size, spatial_scale=1.0):
    """Fast R-CNN's RoIPool (module docstring).

    Args:
      features: [B, H, W, C] floating tensor.
      boxes: [N, 4] (y1, x1, y2, x2) float32 in input-image pixels.
      box_indices: [N] int32, the image of `features` each box belongs to.
      output_size: int or (out_h, out_w).
      spatial_scale: feature cells per input pixel (1 / stride), Python float.
    Returns:
      [N, out_h, out_w, C] in features.dtype.

    The bins' maxima are taken in a loop over the cell offset within a bin, up to the largest
    bin, so memory stays O(N * out_h * out_w * C).
    """
    out_h, out_w = normalize_output_size(output_size)
    dtype = features.dtype
    features = tf.cast(features, tf.float32)
    shape = tf.shape(features)
    scaled = round_half_away(tf.cast(tf.stop_gradient(boxes), tf.float32) * spatial_scale)
    y1, x1, y2, x2 = tf.unstack(scaled, 4, axis=1)
    row0, rows = _bin_edges(y1, y2, out_h, shape[1])  # [N, out_h]
    col0, cols = _bin_edges(x1, x2, out_w, shape[2])  # [N, out_w]
    num = tf.shape(boxes)[0]
    images = tf.broadcast_to(tf.cast(box_indices, tf.int32)[:, None, None], [num, out_h, out_w])
    max_rows = tf.reduce_max(tf.concat([tf.reshape(rows, [-1]), [0]], 0))
    max_cols = tf.reduce_max(tf.concat([tf.reshape(cols, [-1]), [0]], 0))
    lowest = tf.fill([num, out_h, out_w, shape[3]], tf.float32.min)

    def step(k, pooled):
        dy, dx = k // tf.maximum(max_cols, 1), k % tf.maximum(max_cols, 1)
        y = tf.minimum(row0 + dy, shape[1] - 1)
        x = tf.minimum(col0 + dx, shape[2] - 1)
        inside = (dy < rows)[:, :, None] & (dx < cols)[:, None, :]  # [N, out_h, out_w]
        index = tf.stack([images, tf.broadcast_to(y[:, :, None], [num, out_h, out_w]),
                          tf.broadcast_to(x[:, None, :], [num, out_h, out_w])], axis=-1)
        values = tf.gather_nd(features, index)
        return k + 1, tf.where(inside[..., None], tf.maximum(pooled, values), pooled)

    _, pooled = tf.while_loop(lambda k, _: k < max_rows * max_cols, step,
                              (tf.constant(0), lowest))
    empty = (rows == 0)[:, :, None] | (cols == 0)[:, None, :]
    return tf.cast(tf.where(empty[..., None], 0.0, pooled), dtype)


def roi_warp(features, boxes, box_indices, output_size, spatial_scale=1.0, sampling_ratio=2):
    """RoIWarp (module docstring): RoIAlign with aligned=False on the box whose corners are
    rounded to the feature grid. Arguments and result as `roi_align`'s."""
    rounded = round_half_away(tf.cast(tf.stop_gradient(boxes), tf.float32) * spatial_scale)
    return roi_align(features, rounded / spatial_scale, box_indices, output_size,
                     spatial_scale, sampling_ratio, aligned=False)
