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

import dataclasses
from typing import Callable

import tensorflow as tf

from mrcnn_tf.ops.replicas import global_mean


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
    return global_mean(tf.reduce_sum(ce * weight), tf.reduce_sum(weight))


def _heatmap_inputs(logits, rois):
    """Checks decoder inputs: logits [N, S, S, K] with static square S x S maps, rois [N, 4].
    Returns both as tensors."""
    logits = tf.convert_to_tensor(logits)
    rois = tf.convert_to_tensor(rois)
    if logits.shape.rank is not None and logits.shape.rank != 4:
        raise ValueError(f"logits has rank {logits.shape.rank}: expected 4, [N, S, S, K]")
    _check_last_dim(rois, 4, "rois", "(y1, x1, y2, x2)")
    if logits.shape[1] is None or logits.shape[2] != logits.shape[1]:
        raise ValueError(f"logits has shape {logits.shape}: expected static square S x S maps")
    return logits, rois


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
    logits, rois = _heatmap_inputs(logits, rois)
    size = logits.shape[1]
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


# -- torchvision's decode --------------------------------------------------------------------
# PyTorch's cubic convolution coefficient (F.interpolate(mode="bicubic"), as OpenCV);
# tf.image.resize's bicubic kernel uses Keys' a = -0.5, so it cannot reproduce PyTorch's maps.
TORCH_CUBIC_A = -0.75
# RoIs decoded at once by `heatmaps_to_keypoints_torchvision`: each one's maps are resized to
# its own pixel size (a whole-image box of 1333 x 800 pixels makes 17 such maps, ~70 MB of
# float32, a few times that in temporaries), so a few in flight bound the memory.
TORCHVISION_DECODE_PARALLEL_ROIS = 4


def _fused_multiply_add(a, b, c):
    """float32 a * b + c rounded once, as a fused multiply-add instruction computes it.

    The float64 product of two float32 values is exact, so only the float64 sum rounds before
    the cast to float32 (a double rounding that differs from a truly fused result in about one
    case in 2^29).
    """
    f64 = tf.float64
    return tf.cast(tf.cast(a, f64) * tf.cast(b, f64) + tf.cast(c, f64), tf.float32)


def torch_bicubic_taps(in_size, out_size):
    """Input samples and weights of PyTorch's bicubic resize along one axis.

    F.interpolate(x, size=..., mode="bicubic", align_corners=False) (antialias off) computes
    output i from the input position u = (in / out) * (i + 0.5) - 0.5 (not clamped at 0,
    unlike the linear modes), as sum_j w_j * x[clamp(floor(u) - 1 + j, 0, in - 1)] for
    j = 0..3: the border sample repeats. With t = u - floor(u) and a = TORCH_CUBIC_A (-0.75),
    the weights are Keys' cubic convolution [c2(t + 1), c1(t), c1(1 - t), c2(2 - t)],

        c1(x) = ((a + 2) x - (a + 3)) x^2 + 1        (|x| <= 1)
        c2(x) = ((a x - 5a) x + 8a) x - 4a           (1 < |x| < 2).

    The float32 operations are those of PyTorch's CPU kernel as x86 builds compile it, with
    fused multiply-adds (AVX2 / AVX-512; which products are fused was read off its outputs):
    there the weights are bit-identical; on other builds they differ in the last bit or two.

    Args:
      in_size: the input length (python int).
      out_size: the output length (python int or int32 scalar tensor, >= 1).
    Returns:
      indices: [out, 4] int32 input samples, in [0, in - 1].
      weights: [out, 4] float32.
    """
    f32 = tf.float32
    a = TORCH_CUBIC_A
    scale = tf.cast(in_size, f32) / tf.cast(out_size, f32)
    source = _fused_multiply_add(scale, tf.range(out_size, dtype=f32) + 0.5, -0.5)
    base = tf.minimum(tf.floor(source), float(in_size - 1))
    t = tf.clip_by_value(source - base, 0.0, 1.0)

    def near(x):  # c1
        return _fused_multiply_add(a + 2.0, x, -(a + 3.0)) * x * x + 1.0

    def far(x):  # c2
        return _fused_multiply_add(_fused_multiply_add(a, x, -5.0 * a), x, 8.0 * a) * x - 4.0 * a

    weights = tf.stack([far(t + 1.0), near(t), near(1.0 - t), far((1.0 - t) + 1.0)], axis=-1)
    indices = tf.cast(base, tf.int32)[:, None] + tf.range(-1, 3, dtype=tf.int32)
    return tf.clip_by_value(indices, 0, in_size - 1), weights


def _resize_axis(values, out_size, axis):
    """PyTorch's bicubic resize of `values` along `axis` (-1 or -2) to `out_size`.

    Accumulates the 4 taps in the kernel's order, fma(x0, w0, x1 * w1), then + x2 w2 and
    + x3 w3 fused, so that float32 results match PyTorch's bit for bit.
    """
    indices, weights = torch_bicubic_taps(values.shape[axis], out_size)
    if axis == -2:
        weights = weights[:, None, :]  # [out, 1, 4]: broadcasts over the last axis

    def tap(j):
        return tf.gather(values, indices[:, j], axis=values.shape.rank + axis)

    out = _fused_multiply_add(tap(0), weights[..., 0], tap(1) * weights[..., 1])
    for j in (2, 3):
        out = _fused_multiply_add(tap(j), weights[..., j], out)
    return out


def torch_bicubic_resize(maps, height, width):
    """F.interpolate(maps, size=(height, width), mode="bicubic", align_corners=False) on the
    last two axes, in the same float32 arithmetic (see `torch_bicubic_taps`): along the width
    first, then along the height, as PyTorch's kernel evaluates it.

    Args:
      maps: [..., H, W] float32 with static H and W.
      height, width: output size (python ints or int32 scalar tensors).
    Returns:
      [..., height, width] float32.
    """
    maps = tf.convert_to_tensor(maps, tf.float32)
    if maps.shape.rank is None or maps.shape.rank < 2 or None in maps.shape[-2:]:
        raise ValueError(f"maps has shape {maps.shape}: expected [..., H, W] with static H, W")
    return _resize_axis(_resize_axis(maps, width, axis=-1), height, axis=-2)


def heatmaps_to_keypoints_torchvision(logits, rois,
                                      parallel_rois=TORCHVISION_DECODE_PARALLEL_ROIS):
    """Decodes each RoI's heatmaps as torchvision's Keypoint R-CNN does
    (`roi_heads.heatmaps_to_keypoints`), for models imported from it.

    Per RoI, with w = max(x2 - x1, 1) and h = max(y2 - y1, 1): the K maps are resized
    bicubically (PyTorch's a = -0.75, `torch_bicubic_resize`) to ceil(h) x ceil(w) pixels;
    the first maximum of each resized map, at (row, col) in row-major order, gives

        x = (col + 0.5) * (w / ceil(w)) + x1,   y = (row + 0.5) * (h / ceil(h)) + y1,

    and the score is the resized logit there (torchvision's `keypoints_scores`: a logit, not
    a probability; it is not comparable with `heatmaps_to_keypoints`' softmax score).

    Each RoI has its own grid, so the RoIs are decoded one by one (tf.map_fn; dynamic shapes
    inside, static [N, K, 3] out). The cost grows with the RoI's pixel area: K * ceil(h) *
    ceil(w) values, 8 taps each.

    Args:
      logits: [N, S, S, K] heatmap logits, channels last (S static).
      rois: [N, 4] (y1, x1, y2, x2) in image pixels.
      parallel_rois: RoIs decoded concurrently (memory: see TORCHVISION_DECODE_PARALLEL_ROIS).
    Returns:
      [N, K, 3] float32 (y, x, logit).
    """
    logits, rois = _heatmap_inputs(logits, rois)
    if int(parallel_rois) < 1:
        raise ValueError(f"parallel_rois={parallel_rois}: expected a positive integer")
    maps = tf.transpose(tf.cast(logits, tf.float32), [0, 3, 1, 2])  # [N, K, S, S]
    rois = tf.cast(rois, tf.float32)
    sides = tf.maximum(rois[:, 2:] - rois[:, :2], 1.0)  # [N, 2] (h, w), clamped as torchvision

    def decode(args):
        roi_maps, roi, side = args  # [K, S, S], [4], [2]
        size = tf.cast(tf.math.ceil(side), tf.int32)  # (ceil(h), ceil(w))
        resized = torch_bicubic_resize(roi_maps, size[0], size[1])  # [K, ceil(h), ceil(w)]
        flat = tf.reshape(resized, tf.stack([tf.shape(resized)[0], -1]))
        best = tf.argmax(flat, axis=-1, output_type=tf.int32)  # first maximum on ties
        peak = tf.reduce_max(flat, axis=-1)
        # Pixel centre -> RoI frame, in torchvision's float32 order of operations.
        step = side / tf.cast(size, tf.float32)
        y = (tf.cast(best // size[1], tf.float32) + 0.5) * step[0] + roi[0]
        x = (tf.cast(best % size[1], tf.float32) + 0.5) * step[1] + roi[1]
        return tf.stack([y, x, peak], axis=-1)

    # (Eagerly map_fn runs one RoI at a time anyway, and warns when asked for more.)
    return tf.map_fn(decode, (maps, rois, sides),
                     fn_output_signature=tf.TensorSpec([logits.shape[3], 3], tf.float32),
                     parallel_iterations=None if tf.executing_eagerly() else int(parallel_rois))


@dataclasses.dataclass(frozen=True)
class DecodeRule:
    """How heatmaps become keypoints: `decode(logits [N, S, S, K], rois [N, 4]) -> [N, K, 3]`,
    and whether its shapes are fixed by S alone (what XLA and TFLite builtin ops need)."""

    decode: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
    static_shapes: bool


# Keyed by Config.keypoint_decode_rule's allowed values.
KEYPOINT_DECODE_RULES = {
    "detectron2": DecodeRule(heatmaps_to_keypoints, static_shapes=True),
    # Resizes each RoI's maps to its own pixel size: shapes inside depend on the boxes.
    "torchvision": DecodeRule(heatmaps_to_keypoints_torchvision, static_shapes=False),
}
