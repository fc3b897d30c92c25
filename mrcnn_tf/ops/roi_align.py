"""RoIAlign (He et al., 2017, Sec. 3) with the torchvision / Detectron2 ROIAlignV2 semantics.

Definition implemented (see DESIGN.md, "RoIAlign, exactly"). For a box (y1, x1, y2, x2) in
input-image pixels and a feature map of height H, width W:

  y1' = y1 * spatial_scale - o,  y2' = y2 * spatial_scale - o,   o = 0.5 if aligned else 0
  roi_h = y2' - y1'   (aligned=False: roi_h = max(roi_h, 1), torchvision's legacy rule)
  bin_h = roi_h / out_h
  grid_h = sampling_ratio            if sampling_ratio > 0
         = ceil(roi_h / out_h)       if sampling_ratio == 0 (adaptive, per box)
  sample (ph, iy):  y = y1' + ph * bin_h + (iy + 0.5) * bin_h / grid_h
  (x likewise), and

  out[n, ph, pw, :] = 1 / max(grid_h * grid_w, 1) * sum_{iy, ix} bilinear(F[b_n], y, x)

where bilinear() is 0 when y < -1 or y > H (or x < -1, x > W), reads row 0 for y in [-1, 0]
and row H - 1 for y in [H - 1, H] (x likewise). Out-of-map samples still count in the
divisor, exactly as torchvision does.

Two implementations with the same contract and numbers:

* `roi_align`: fast default. Bilinear sampling is done by `tf.image.crop_and_resize` on an
  edge-padded feature map. CropAndResize is not a TFLite builtin op, and has no XLA kernel
  (it fails under `jit_compile=True`, so not on TPU either).
* `roi_align_builtin` (in `mrcnn_tf.ops.roi_align_builtin`, with its multi-level form
  `multilevel_roi_align_builtin`): computes the four neighbours of every sample and gathers
  them from the flattened map; it uses only ops that have TFLite BUILTIN kernels (GATHER,
  arithmetic, FLOOR, CAST, MINIMUM/MAXIMUM, SELECT, RESHAPE, MEAN; WHILE for
  sampling_ratio=0), so a model using it converts with `tf.lite.OpsSet.TFLITE_BUILTINS`
  only. It also compiles with XLA.

Both share the geometry (`roi_geometry`, `_bin_sample_coords`, `axis_valid`) and the bin
pooling (`fixed_grid_pool`, `adaptive_grid_pool`, driven by `roi_align_with_sampler`), all
defined here; only the "sample the map at a regular grid of points" step (a `Sampler`)
differs.

Cost of `sampling_ratio=0` (adaptive): each box may have its own grid, so the bins are
accumulated in a `tf.while_loop` over the sub-bin sample index (iy, ix) up to the largest
grid among the boxes, G_h x G_w steps. Each step samples one point per bin for every box
(N * out_h * out_w points), so memory stays O(N * out_h * out_w * C) whatever the grid, but
the work is max_grid^2 / mean_grid^2 times the minimum and the steps run one after another.
With FPN level assignment the boxes on a level are of similar size, so G is small (1 to 6);
a single huge box on a fine level makes every box pay for its grid. Prefer a fixed
`sampling_ratio` (the project default is 2) where speed matters.

Precision: coordinates and the bilinear arithmetic are always float32. Features of another
floating dtype (bfloat16, float16, float64) are cast to float32 for the arithmetic and the
result is cast back to `features.dtype`.

Gradients flow to `features` (the op is linear in them). Boxes are treated as constants
(`tf.stop_gradient`), as in torchvision, whose roi_align has no gradient for the boxes.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence, Tuple, Union

import tensorflow as tf

__all__ = ["roi_align"]

# Edge-replicated border (pixels per side) added before crop_and_resize. One pixel is enough
# in exact arithmetic (a sample in [-1, H] maps to [0, H + 1] of the padded map), but
# crop_and_resize recomputes each sample position from the box ends in float32, and a
# sample that sits exactly on y = -1 or y = H could land a rounding error outside the padded
# map, where crop_and_resize returns 0 instead of the clamped edge value. A second pixel
# leaves a margin for that rounding (with one pixel, test_output_sizes in
# tests/ops/test_roi_align.py fails on such ties); it costs ~4(H + W) extra pixels per map.
_CROP_PAD = 2

# A sampler reads the feature map at a separable grid of points for each box:
#   sample(ys [N, Sy], y_keep [N, Sy] bool, xs [N, Sx], x_keep [N, Sx] bool) -> [N, Sy, Sx, C]
# float32, with 0 at every point whose y or x is outside [-1, H] / [-1, W] or not kept.
# The ys (xs) of one box are equally spaced, which crop_and_resize relies on.
Sampler = Callable[[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]


class RoiGeometry(NamedTuple):
    """Per-box geometry in feature-map pixels, each [N] float32."""

    start_y: tf.Tensor  # y1' (after scale and the aligned offset)
    start_x: tf.Tensor
    roi_h: tf.Tensor  # y2' - y1' (>= 1 when aligned=False)
    roi_w: tf.Tensor
    bin_h: tf.Tensor  # roi_h / out_h
    bin_w: tf.Tensor


def normalize_output_size(output_size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    """int or (out_h, out_w) -> (out_h, out_w) Python ints, both >= 1."""
    if isinstance(output_size, int):
        size = (output_size, output_size)
    else:
        size = tuple(int(s) for s in output_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(
            f"output_size must be a positive int or a pair (out_h, out_w) of positive ints, "
            f"got {output_size!r}")
    return size


def check_sampling_ratio(sampling_ratio) -> int:
    if int(sampling_ratio) != sampling_ratio or sampling_ratio < 0:
        raise ValueError(
            f"sampling_ratio must be an int >= 0 (0 = adaptive), got {sampling_ratio!r}")
    return int(sampling_ratio)


def roi_geometry(boxes: tf.Tensor, spatial_scale, aligned: bool,
                 out_h: int, out_w: int) -> RoiGeometry:
    """Boxes [N, 4] (y1, x1, y2, x2) in input pixels -> per-box start / extent / bin size.

    Implements the first three lines of the module docstring's definition. spatial_scale: a
    Python float, or an [N] float32 tensor (one scale per box, for pyramid levels).
    """
    if isinstance(spatial_scale, tf.Tensor):
        scale = spatial_scale[:, None]
    else:
        scale = tf.constant(spatial_scale, tf.float32)
    scaled = tf.stop_gradient(boxes) * scale
    if aligned:
        # Pixel centres sit at integer + 0.5 in continuous box coordinates; shifting by half a
        # pixel makes a box's samples symmetric around its centre (the ROIAlignV2 fix).
        scaled = scaled - 0.5
    y1, x1, y2, x2 = tf.unstack(scaled, 4, axis=1)
    roi_h = y2 - y1
    roi_w = x2 - x1
    if not aligned:
        # torchvision's legacy behaviour: malformed or tiny boxes are forced to be >= 1x1.
        roi_h = tf.maximum(roi_h, 1.0)
        roi_w = tf.maximum(roi_w, 1.0)
    return RoiGeometry(y1, x1, roi_h, roi_w, roi_h / out_h, roi_w / out_w)


def _adaptive_grid(roi_extent: tf.Tensor, num_bins: int) -> tf.Tensor:
    """torchvision's adaptive grid ceil(roi_extent / num_bins) per box, [N] int32 >= 0.

    A box with roi_extent <= 0 (possible with aligned=True) gets 0 samples; its output is then
    0, as in torchvision (empty loop, divisor max(count, 1)). NaN extents also give 0.
    """
    grid = tf.math.ceil(roi_extent / num_bins)
    grid = tf.where(grid > 0.0, grid, 0.0)  # also maps NaN to 0 before the int cast
    # Bound the cast for absurd boxes (inf or > 2^24 samples per bin would never finish).
    grid = tf.minimum(grid, float(2 ** 24))
    return tf.cast(grid, tf.int32)


def _bin_sample_coords(start: tf.Tensor, bin_size: tf.Tensor, num_bins: int,
                       grid: Union[int, tf.Tensor], sub_index: tf.Tensor) -> tf.Tensor:
    """Sample coordinates along one axis, bin-major.

    coord[n, p * K + k] = start[n] + p * bin_size[n] + (sub_index[k] + 0.5) * bin_size[n] / grid

    The operation order is torchvision's, so the float32 coordinates are the same numbers.

    Args:
      start, bin_size: [N] float32.
      num_bins: out_h (or out_w), Python int.
      grid: the number of sub-bins, a Python int (fixed sampling ratio) or [N] float32 (>= 1).
      sub_index: [K] float32 sub-bin indices to place (K static).
    Returns:
      [N, num_bins * K] float32; for each box the coordinates are equally spaced when K is the
      whole grid (fixed case) or K == 1 (one sub-bin per bin, adaptive case).
    """
    k = sub_index.shape[0]
    bins = tf.range(num_bins, dtype=tf.float32)
    start = start[:, None, None]
    bin_size = bin_size[:, None, None]
    if isinstance(grid, tf.Tensor):
        grid = grid[:, None, None]
    else:
        grid = float(grid)
    coords = (start + bins[None, :, None] * bin_size) + \
        (sub_index[None, None, :] + 0.5) * bin_size / grid
    return tf.reshape(coords, [-1, num_bins * k])


def axis_valid(coords: tf.Tensor, size: tf.Tensor, keep=None) -> tf.Tensor:
    """True where a sample contributes: coord in [-1, size] (and keep). NaN -> False.

    Args: coords [N, S] float32; size scalar int32 (H or W); keep None or [N, S] bool.
    """
    size_f = tf.cast(size, tf.float32)
    valid = tf.logical_and(coords >= -1.0, coords <= size_f)
    if keep is not None:
        valid = tf.logical_and(valid, keep)
    return valid


def _edge_pad(features: tf.Tensor, pad: int) -> tf.Tensor:
    """[B, H, W, C] -> [B, H + 2 pad, W + 2 pad, C] replicating the edge pixels.

    Concatenates copies of the first / last row, then column: plain copies, about twice as
    fast on CPU as MirrorPad or a gather of clamped indices (and fine for H == 1 or W == 1).
    """
    rows = tf.concat([features[:, :1]] * pad + [features] + [features[:, -1:]] * pad, axis=1)
    return tf.concat([rows[:, :, :1]] * pad + [rows] + [rows[:, :, -1:]] * pad, axis=2)


def _crop_and_resize_sampler(features: tf.Tensor, box_indices: tf.Tensor) -> Sampler:
    """Sampler built on tf.image.crop_and_resize over an edge-padded map.

    crop_and_resize with crop size S and box ends (a, b) (normalized) samples the image at
    a * (Hp - 1) + j * (b - a) * (Hp - 1) / (S - 1), j = 0..S-1 (the centre if S == 1):
    its first and last samples sit on the box ends. Our samples of one box are equally spaced,
    so the box handed to it spans the first to the last sample, and a map coordinate y is the
    padded-map coordinate y + pad, i.e. normalized (y + pad) / (Hp - 1). Inside [-1, H] the
    padded map's bilinear value is the clamped value the definition asks for; outside it
    the value is masked to 0 here.

    features: [B, H, W, C] float32; box_indices: [N] int32.
    """
    shape = tf.shape(features)
    height, width = shape[1], shape[2]
    padded = _edge_pad(features, _CROP_PAD)
    # Hp - 1 and Wp - 1: at least 2 * _CROP_PAD, so never 0 (H or W == 1 are fine).
    span_h = tf.cast(height + 2 * _CROP_PAD - 1, tf.float32)
    span_w = tf.cast(width + 2 * _CROP_PAD - 1, tf.float32)

    def sample(ys, y_keep, xs, x_keep):
        crop_size = [ys.shape[1], xs.shape[1]]
        crop_boxes = tf.stack([
            (ys[:, 0] + _CROP_PAD) / span_h, (xs[:, 0] + _CROP_PAD) / span_w,
            (ys[:, -1] + _CROP_PAD) / span_h, (xs[:, -1] + _CROP_PAD) / span_w], axis=1)
        # Non-finite box ends would reach an int cast inside the kernel; send them far outside
        # the map instead (all their samples are masked below anyway).
        crop_boxes = tf.where(tf.math.is_finite(crop_boxes), crop_boxes, -2.0)
        values = tf.image.crop_and_resize(padded, crop_boxes, box_indices, crop_size,
                                          method="bilinear", extrapolation_value=0.0)
        valid_y = axis_valid(ys, height, y_keep)  # [N, Sy]
        valid_x = axis_valid(xs, width, x_keep)  # [N, Sx]

        def masked():
            valid = tf.logical_and(valid_y[:, :, None, None], valid_x[:, None, :, None])
            # where, not multiply: a masked value may be NaN (from a NaN box), NaN * 0 = NaN.
            return tf.where(valid, values, tf.zeros_like(values))

        # Boxes inside the image (proposals and detections are clipped to it) have every
        # sample in range: skip the mask, two passes over the largest tensor of the layer.
        return tf.cond(tf.logical_and(tf.reduce_all(valid_y), tf.reduce_all(valid_x)),
                       lambda: values, masked)

    return sample


def _average_bins(samples: tf.Tensor, num_boxes, out_h: int, out_w: int,
                  grid_h: int, grid_w: int, channels, pool: bool = False) -> tf.Tensor:
    """[N, out_h*grid_h, out_w*grid_w, C] -> [N, out_h, out_w, C] mean over each bin's grid.

    pool=True: one average pooling (the fast path on CPU). Otherwise two rank-3 reductions
    rather than one 6-D mean: TFLite kernels are happiest at rank <= 4, and XLA compiles them.
    """
    if grid_h == 1 and grid_w == 1:
        return samples
    if pool:
        # One pass: average pooling with the bin grid as window and stride (equal means).
        return tf.nn.avg_pool2d(samples, (grid_h, grid_w), (grid_h, grid_w), "VALID")
    x = tf.reshape(samples, [num_boxes * out_h, grid_h, out_w * grid_w * channels])
    x = tf.reduce_mean(x, axis=1)
    x = tf.reshape(x, [num_boxes * out_h * out_w, grid_w, channels])
    x = tf.reduce_mean(x, axis=1)
    return tf.reshape(x, [num_boxes, out_h, out_w, channels])


def fixed_grid_pool(sample: Sampler, geom: RoiGeometry, num_boxes, out_h: int, out_w: int,
                    grid: int, channels, pool: bool = False) -> tf.Tensor:
    """Fixed sampling ratio: one call of the sampler over the whole (out*grid)^2 sample grid."""
    sub = tf.range(grid, dtype=tf.float32)
    ys = _bin_sample_coords(geom.start_y, geom.bin_h, out_h, grid, sub)  # [N, out_h*grid]
    xs = _bin_sample_coords(geom.start_x, geom.bin_w, out_w, grid, sub)  # [N, out_w*grid]
    samples = sample(ys, None, xs, None)
    # Every box has grid^2 samples per bin, so the per-bin mean is torchvision's sum / count.
    return _average_bins(samples, num_boxes, out_h, out_w, grid, grid, channels, pool)


def adaptive_grid_pool(sample: Sampler, geom: RoiGeometry, num_boxes, out_h: int,
                       out_w: int, channels) -> tf.Tensor:
    """sampling_ratio == 0: per-box grid, accumulated over sub-bin indices in a while loop.

    Step k handles sub-bin (iy, ix) = divmod(k, max grid_w) for every bin of every box: its
    samples form a regular out_h x out_w grid per box (spacing one bin), so the sampler is
    called with out_h x out_w points; a box whose grid is smaller than iy or ix is masked out.
    """
    grid_h = _adaptive_grid(geom.roi_h, out_h)  # [N] int32
    grid_w = _adaptive_grid(geom.roi_w, out_w)
    max_h = tf.reduce_max(tf.concat([grid_h, [0]], axis=0))  # 0 when N == 0
    max_w = tf.reduce_max(tf.concat([grid_w, [0]], axis=0))
    num_steps = max_h * max_w
    # Divisors for the coordinates; max(., 1) keeps them finite for boxes with no samples.
    grid_h_f = tf.cast(tf.maximum(grid_h, 1), tf.float32)
    grid_w_f = tf.cast(tf.maximum(grid_w, 1), tf.float32)

    def body(step, total):
        iy = step // max_w
        ix = step - iy * max_w
        ys = _bin_sample_coords(geom.start_y, geom.bin_h, out_h, grid_h_f,
                                tf.reshape(tf.cast(iy, tf.float32), [1]))  # [N, out_h]
        xs = _bin_sample_coords(geom.start_x, geom.bin_w, out_w, grid_w_f,
                                tf.reshape(tf.cast(ix, tf.float32), [1]))  # [N, out_w]
        y_keep = tf.broadcast_to((iy < grid_h)[:, None], tf.shape(ys))
        x_keep = tf.broadcast_to((ix < grid_w)[:, None], tf.shape(xs))
        return step + 1, total + sample(ys, y_keep, xs, x_keep)

    total0 = tf.zeros(tf.stack([num_boxes, out_h, out_w, channels]), tf.float32)
    _, total = tf.while_loop(lambda step, _: step < num_steps, body,
                             [tf.constant(0, tf.int32), total0])
    # torchvision divides by max(grid_h * grid_w, 1) (the guard only matters for empty grids).
    count = tf.cast(tf.maximum(grid_h * grid_w, 1), tf.float32)
    return total / count[:, None, None, None]


def roi_align_with_sampler(features, boxes, box_indices, output_size, spatial_scale,
                           sampling_ratio, aligned,
                           make_sampler: Callable[[tf.Tensor, tf.Tensor], Sampler],
                           pool_bins: bool = False):
    """Shared driver of `roi_align` and `roi_align_builtin`; see `roi_align` for the contract.

    make_sampler(features [B, H, W, C] float32, box_indices [N] int32) -> the `Sampler` that
    reads those maps.

    pool_bins: average a fixed grid's bins with one average pooling (see `_average_bins`).
    """
    out_h, out_w = normalize_output_size(output_size)
    sampling_ratio = check_sampling_ratio(sampling_ratio)
    features = tf.convert_to_tensor(features)
    if features.shape.rank is not None and features.shape.rank != 4:
        raise ValueError(f"features must be [B, H, W, C], got shape {features.shape}")
    if not features.dtype.is_floating:
        raise ValueError(f"features must be a floating tensor, got {features.dtype.name}")
    out_dtype = features.dtype
    values = tf.cast(features, tf.float32)
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    box_indices = tf.reshape(tf.cast(box_indices, tf.int32), [-1])
    num_boxes = tf.shape(boxes)[0]
    static_channels = values.shape[-1]
    channels = static_channels if static_channels is not None else tf.shape(values)[3]

    geom = roi_geometry(boxes, float(spatial_scale), bool(aligned), out_h, out_w)
    sample = make_sampler(values, box_indices)
    if sampling_ratio > 0:
        pooled = fixed_grid_pool(sample, geom, num_boxes, out_h, out_w, sampling_ratio,
                                 channels, pool_bins)
    else:
        pooled = adaptive_grid_pool(sample, geom, num_boxes, out_h, out_w, channels)
    pooled = tf.cast(pooled, out_dtype)
    # Static shape for callers (set_shape adds no op, so nothing for TFLite to convert).
    pooled.set_shape([None, out_h, out_w, static_channels])
    return pooled


def roi_align(features, boxes, box_indices, output_size, spatial_scale=1.0, sampling_ratio=2,
              aligned=True):
    """RoIAlign with torchvision.ops.roi_align / Detectron2 ROIAlignV2 semantics.

    Bilinear sampling by `tf.image.crop_and_resize` on an edge-padded copy of the map (fast on
    CPU and GPU, but CropAndResize has no TFLite builtin kernel: use `roi_align_builtin` for
    TFLite export).

    Args:
      features: [B, H, W, C] floating tensor (H, W, B, N may be dynamic).
      boxes: [N, 4] (y1, x1, y2, x2) float32 in input-image pixels. No gradient flows to them.
      box_indices: [N] int32, the image in `features` each box belongs to (0..B-1).
      output_size: int or (out_h, out_w).
      spatial_scale: feature-map pixels per input pixel (1 / stride), Python float.
      sampling_ratio: samples per bin side (Python int >= 1), or 0 for torchvision's adaptive
        ceil(roi_size / output_size) per box (slower; see the module docstring for the cost).
      aligned: True for the half-pixel-corrected ROIAlignV2; False for the original RoIAlign.
    Returns:
      [N, out_h, out_w, C] in features.dtype (math done in float32).
    """
    return roi_align_with_sampler(features, boxes, box_indices, output_size, spatial_scale,
                                  sampling_ratio, aligned, _crop_and_resize_sampler,
                                  pool_bins=True)
