"""RoIAlign from TFLite-builtin ops only: gather the bilinear neighbours of every sample.

Same definition, contract and numbers as `mrcnn_tf.ops.roi_align.roi_align` (the definition
is written in that module's docstring), but the "sample the map at a regular grid of points"
step computes the two bilinear taps per axis and gathers the four neighbours from the map
flattened to rows [B*H*W, C], instead of calling `tf.image.crop_and_resize`. It uses only ops
with TFLite BUILTIN kernels (GATHER, arithmetic, FLOOR, CAST, MINIMUM/MAXIMUM, SELECT,
RESHAPE, MEAN; WHILE for sampling_ratio=0), so a model using it converts with
`tf.lite.OpsSet.TFLITE_BUILTINS` only, and it compiles with XLA (`Config.static_shapes`).

* `roi_align_builtin`: one feature map, as `roi_align`.
* `multilevel_roi_align_builtin`: each box on its own map among several (the FPN levels),
  in one pass over a table of all of them, with static shapes.
* `gather_sampler`: the sampler itself, also used to crop mask targets.

The box geometry and the bin pooling are `roi_align`'s (`mrcnn_tf.ops.roi_align`).
"""

from __future__ import annotations

import tensorflow as tf

from mrcnn_tf.ops.roi_align import (Sampler, adaptive_grid_pool, axis_valid,
                                    check_sampling_ratio, fixed_grid_pool,
                                    normalize_output_size, roi_align_with_sampler,
                                    roi_geometry)

__all__ = ["roi_align_builtin", "multilevel_roi_align_builtin", "gather_sampler"]


def _axis_taps(coords: tf.Tensor, size: tf.Tensor, keep=None):
    """One-dimensional bilinear taps (bilinear interpolation is separable).

    torchvision's rule: coord <= 0 reads index 0; low = floor(coord); if low >= size - 1 both
    taps are size - 1 with all weight on it. Clipping the coordinate to [0, size - 1] and
    taking high = min(low + 1, size - 1) gives the same indices and weights.

    Args: as `axis_valid`.
    Returns:
      low, high: [N, S] int32 indices in [0, size - 1];
      w_low, w_high: [N, S] float32 weights, both 0 where the sample is not valid.
    """
    valid = axis_valid(coords, size, keep)
    size_f = tf.cast(size, tf.float32)
    # Replace invalid (far away, NaN) coordinates before the int cast so every index is legal.
    c = tf.where(valid, coords, tf.zeros_like(coords))
    c = tf.minimum(tf.maximum(c, 0.0), size_f - 1.0)
    low_f = tf.floor(c)
    frac = c - low_f
    low = tf.cast(low_f, tf.int32)
    high = tf.minimum(low + 1, size - 1)
    valid_f = tf.cast(valid, tf.float32)
    return low, high, (1.0 - frac) * valid_f, frac * valid_f


def gather_sampler(features: tf.Tensor, box_indices: tf.Tensor) -> Sampler:
    """Sampler that gathers the four neighbours of each point from the flattened map.

    features: [B, H, W, C] float32; box_indices: [N] int32.
    """
    shape = tf.shape(features)
    height, width = shape[1], shape[2]
    channels = features.shape[-1] if features.shape[-1] is not None else shape[3]
    flat = tf.reshape(features, [-1, channels])  # [B*H*W, C], row = (b*H + y)*W + x
    base = box_indices * (height * width)  # [N] first row of each box's image
    return _table_sampler(flat, base, height, width)


def _table_sampler(table: tf.Tensor, base: tf.Tensor, height, width) -> Sampler:
    """Sampler reading a box's map from rows base + y * width + x of `table` [R, C].

    base: [N] int32, the row of each box's map pixel (0, 0). height, width: the map size,
    scalar int32 tensors, or [N, 1] int32 tensors (one map size per box).
    """

    def sample(ys, y_keep, xs, x_keep):
        y0, y1, wy0, wy1 = _axis_taps(ys, height, y_keep)  # [N, Sy]
        x0, x1, wx0, wx1 = _axis_taps(xs, width, x_keep)  # [N, Sx]
        row0 = (base[:, None] + y0 * width)[:, :, None]  # [N, Sy, 1]
        row1 = (base[:, None] + y1 * width)[:, :, None]
        x0 = x0[:, None, :]  # [N, 1, Sx]
        x1 = x1[:, None, :]
        wx0 = wx0[:, None, :, None]  # [N, 1, Sx, 1]
        wx1 = wx1[:, None, :, None]
        # Interpolate along x on the two rows, then along y: [N, Sy, Sx, C].
        top = tf.gather(table, row0 + x0) * wx0 + tf.gather(table, row0 + x1) * wx1
        bottom = tf.gather(table, row1 + x0) * wx0 + tf.gather(table, row1 + x1) * wx1
        return top * wy0[:, :, None, None] + bottom * wy1[:, :, None, None]

    return sample


def roi_align_builtin(features, boxes, box_indices, output_size, spatial_scale=1.0,
                      sampling_ratio=2, aligned=True):
    """RoIAlign from TFLite-builtin ops only (no CropAndResize); same contract as `roi_align`.

    Computes the two bilinear taps per axis for every sample and gathers the four neighbours
    from the map flattened to [B*H*W, C]. Same numbers as `roi_align` up to float32 rounding
    (~1e-6 relative). Uses more memory than `roi_align` in the fixed case: four gathered
    [N, out_h*g, out_w*g, C] tensors before the weighted sum.

    With sampling_ratio == 0 the per-box grid needs a while loop (TFLite WHILE is a builtin,
    but a fixed sampling ratio gives a simpler, faster graph for export).

    Args and Returns: as `roi_align`.
    """
    return roi_align_with_sampler(features, boxes, box_indices, output_size, spatial_scale,
                                  sampling_ratio, aligned, gather_sampler)


def multilevel_roi_align_builtin(features, boxes, box_indices, levels, spatial_scales,
                                 output_size, sampling_ratio=2, aligned=True):
    """`roi_align_builtin` of each box on its own map among several, in one pass.

    The maps are flattened into one table [sum_l B*H_l*W_l, C]; each box reads its level's
    rows with its level's size and scale. Every box is pooled once (pooling all boxes on every
    level and selecting costs L times the work) with the same arithmetic as
    `roi_align_builtin` on that level, and the graph keeps static shapes (TFLite, XLA).

    Args:
      features: list of L maps [B, H_l, W_l, C] (same B and C).
      boxes: [N, 4] (y1, x1, y2, x2) in input-image pixels.
      box_indices: [N] int32 image of each box.
      levels: [N] int32 in 0..L-1, the map of each box.
      spatial_scales: L Python floats, map pixels per input pixel of each level.
      output_size, sampling_ratio, aligned: as `roi_align`.
    Returns:
      [N, out_h, out_w, C] in the features' dtype.
    """
    out_h, out_w = normalize_output_size(output_size)
    sampling_ratio = check_sampling_ratio(sampling_ratio)
    if len(features) != len(spatial_scales) or not features:
        raise ValueError(f"multilevel_roi_align_builtin: {len(features)} maps and "
                         f"{len(spatial_scales)} spatial scales; expected as many, >= 1")
    out_dtype = features[0].dtype
    channels = features[0].shape[-1]
    maps = [tf.cast(f, tf.float32) for f in features]
    shapes = [tf.shape(m) for m in maps]
    sizes = [s[0] * s[1] * s[2] for s in shapes]
    table = tf.concat([tf.reshape(m, [-1, channels]) for m in maps], axis=0)
    offsets = tf.math.cumsum(tf.stack(sizes), exclusive=True)  # [L] first row of each map
    levels = tf.reshape(tf.cast(levels, tf.int32), [-1])
    box_indices = tf.reshape(tf.cast(box_indices, tf.int32), [-1])
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    height = tf.gather(tf.stack([s[1] for s in shapes]), levels)[:, None]  # [N, 1]
    width = tf.gather(tf.stack([s[2] for s in shapes]), levels)[:, None]
    base = tf.gather(offsets, levels) + box_indices * height[:, 0] * width[:, 0]
    scale = tf.gather(tf.constant([float(x) for x in spatial_scales], tf.float32), levels)

    geom = roi_geometry(boxes, scale, bool(aligned), out_h, out_w)
    sample = _table_sampler(table, base, height, width)
    num_boxes = tf.shape(boxes)[0]
    if sampling_ratio > 0:
        pooled = fixed_grid_pool(sample, geom, num_boxes, out_h, out_w, sampling_ratio,
                                 channels)
    else:
        pooled = adaptive_grid_pool(sample, geom, num_boxes, out_h, out_w, channels)
    pooled = tf.cast(pooled, out_dtype)
    pooled.set_shape([None, out_h, out_w, channels])
    return pooled
