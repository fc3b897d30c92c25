"""FPN anchors: one size per level, several aspect ratios, one set per feature-map location."""

import tensorflow as tf


def base_anchors(size, ratios, round_to_int=False):
    """Anchors centred on (0, 0) for one level.

    Args:
      size: anchor side for ratio 1 (its area is size^2 for every ratio).
      ratios: sequence of height / width ratios.
      round_to_int: round the corners to integers (torchvision does; Detectron2 does not).
    Returns:
      [A, 4] float32 (y1, x1, y2, x2), A = len(ratios).
    """
    ratios = tf.constant(ratios, tf.float32)
    h = size * tf.sqrt(ratios)
    w = size / tf.sqrt(ratios)
    anchors = tf.stack([-h / 2, -w / 2, h / 2, w / 2], axis=-1)
    return tf.round(anchors) if round_to_int else anchors


def level_anchors(height, width, stride, size, ratios, offset=0.0, round_to_int=False):
    """Anchors for one feature map of height x width locations.

    Location (i, j) is centred at ((i + offset) * stride_y, (j + offset) * stride_x) in image
    pixels; `stride` is one number for both axes or a (stride_y, stride_x) pair.

    Returns:
      [height * width * A, 4] float32, ordered (row, column, ratio), the order in which
      the RPN head's [B, H, W, A * k] output is flattened.
    """
    base = base_anchors(size, ratios, round_to_int)  # [A, 4]
    stride_y, stride_x = stride if isinstance(stride, (tuple, list)) else (stride, stride)
    ys = (tf.cast(tf.range(height), tf.float32) + offset) * tf.cast(stride_y, tf.float32)
    xs = (tf.cast(tf.range(width), tf.float32) + offset) * tf.cast(stride_x, tf.float32)
    cy, cx = tf.meshgrid(ys, xs, indexing="ij")  # [H, W]
    shifts = tf.stack([cy, cx, cy, cx], axis=-1)[:, :, None, :]  # [H, W, 1, 4]
    return tf.reshape(shifts + base[None, None], [-1, 4])


def pyramid_anchors(feature_shapes, strides, sizes, ratios, offset=0.0, round_to_int=False):
    """Anchors of every pyramid level.

    Args:
      feature_shapes: list of (height, width) per level (ints or scalar tensors).
      strides, sizes: one per level.
      ratios: height / width ratios shared by all levels.
    Returns:
      list of [H_l * W_l * A, 4] float32 tensors, one per level.
    """
    return [
        level_anchors(h, w, stride, size, ratios, offset, round_to_int)
        for (h, w), stride, size in zip(feature_shapes, strides, sizes)
    ]
