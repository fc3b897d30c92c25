"""Box arithmetic on (y1, x1, y2, x2) float32 pixel boxes.

All functions broadcast over leading dimensions: a box tensor is [..., 4]. Widths and heights
are x2 - x1 and y2 - y1 (continuous coordinates, no +1), as in Detectron2 and torchvision.
"""

import math

import tensorflow as tf

DEFAULT_DELTA_CLIP = math.log(1000.0 / 16)


def area(boxes):
    """boxes [..., 4] -> [...] areas (0 for degenerate boxes)."""
    y1, x1, y2, x2 = tf.unstack(boxes, 4, axis=-1)
    return tf.maximum(y2 - y1, 0.0) * tf.maximum(x2 - x1, 0.0)


def intersection(boxes1, boxes2):
    """boxes1 [..., N, 4], boxes2 [..., M, 4] -> [..., N, M] intersection areas."""
    y1a, x1a, y2a, x2a = tf.split(boxes1, 4, axis=-1)  # each [..., N, 1]
    y1b, x1b, y2b, x2b = tf.split(boxes2, 4, axis=-1)  # each [..., M, 1]
    swap = lambda t: tf.linalg.matrix_transpose(t)  # [..., 1, M]
    h = tf.maximum(tf.minimum(y2a, swap(y2b)) - tf.maximum(y1a, swap(y1b)), 0.0)
    w = tf.maximum(tf.minimum(x2a, swap(x2b)) - tf.maximum(x1a, swap(x1b)), 0.0)
    return h * w


def iou(boxes1, boxes2):
    """Pairwise intersection over union.

    Args:
      boxes1: [..., N, 4]; boxes2: [..., M, 4].
    Returns:
      [..., N, M] IoU; 0 where the union is empty.
    """
    inter = intersection(boxes1, boxes2)
    union = area(boxes1)[..., :, None] + area(boxes2)[..., None, :] - inter
    return tf.math.divide_no_nan(inter, union)


def ioa(boxes1, boxes2):
    """Intersection over the area of boxes1 (COCO's rule for crowd regions).

    Args:
      boxes1: [..., N, 4] (e.g. proposals); boxes2: [..., M, 4] (e.g. crowd regions).
    Returns:
      [..., N, M] intersection / area(boxes1); 0 for empty boxes1.
    """
    return tf.math.divide_no_nan(intersection(boxes1, boxes2), area(boxes1)[..., :, None])


def _centers_and_sizes(boxes):
    y1, x1, y2, x2 = tf.unstack(boxes, 4, axis=-1)
    h = y2 - y1
    w = x2 - x1
    return y1 + 0.5 * h, x1 + 0.5 * w, h, w


def encode(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    """Regression targets that move `anchors` onto `boxes` (Faster R-CNN parameterization).

    dy = wy * (cy - cya) / ha, dx = wx * (cx - cxa) / wa, dh = wh * log(h / ha),
    dw = ww * log(w / wa).

    Args:
      boxes: [..., 4] target boxes; anchors: [..., 4] reference boxes (same shape).
      weights: (wy, wx, wh, ww).
    Returns:
      [..., 4] deltas (dy, dx, dh, dw). Degenerate boxes are guarded with a tiny epsilon.
    """
    cy, cx, h, w = _centers_and_sizes(boxes)
    cya, cxa, ha, wa = _centers_and_sizes(anchors)
    eps = 1e-6
    ha = tf.maximum(ha, eps)
    wa = tf.maximum(wa, eps)
    wy, wx, wh, ww = weights
    return tf.stack([
        wy * (cy - cya) / ha,
        wx * (cx - cxa) / wa,
        wh * tf.math.log(tf.maximum(h, eps) / ha),
        ww * tf.math.log(tf.maximum(w, eps) / wa),
    ], axis=-1)


def decode(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0), delta_clip=DEFAULT_DELTA_CLIP):
    """Inverse of `encode`: applies deltas to anchors.

    Args:
      deltas: [..., 4] (dy, dx, dh, dw); anchors: [..., 4] broadcastable to deltas.
      weights: (wy, wx, wh, ww) used in encoding.
      delta_clip: dh and dw are clamped at this before exp() so a wild prediction cannot
        overflow (Detectron2 / torchvision use log(1000 / 16)).
    Returns:
      [..., 4] boxes (y1, x1, y2, x2).
    """
    deltas = tf.cast(deltas, tf.float32)
    cya, cxa, ha, wa = _centers_and_sizes(tf.cast(anchors, tf.float32))
    wy, wx, wh, ww = weights
    dy, dx, dh, dw = tf.unstack(deltas, 4, axis=-1)
    dy = dy / wy
    dx = dx / wx
    dh = tf.minimum(dh / wh, delta_clip)
    dw = tf.minimum(dw / ww, delta_clip)
    cy = dy * ha + cya
    cx = dx * wa + cxa
    h = tf.exp(dh) * ha
    w = tf.exp(dw) * wa
    return tf.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], axis=-1)


def clip(boxes, image_shape):
    """Clips boxes to an image.

    Args:
      boxes: [B, N, 4] or [N, 4].
      image_shape: [B, 2] or [2] (height, width) of each image, int or float.
    Returns:
      boxes of the same shape with y in [0, height] and x in [0, width].
    """
    shape = tf.cast(image_shape, boxes.dtype)
    h = shape[..., 0:1]
    w = shape[..., 1:2]
    if boxes.shape.rank == 3:
        h = h[:, None]
        w = w[:, None]
    y1, x1, y2, x2 = tf.split(boxes, 4, axis=-1)
    return tf.concat([
        tf.clip_by_value(y1, 0.0, h), tf.clip_by_value(x1, 0.0, w),
        tf.clip_by_value(y2, 0.0, h), tf.clip_by_value(x2, 0.0, w),
    ], axis=-1)


def normalize(boxes, height, width):
    """Pixel boxes [..., 4] -> boxes divided by (height, width, height, width)."""
    scale = tf.stack([height, width, height, width], axis=-1)
    return boxes / tf.cast(scale, boxes.dtype)


def sizes(boxes):
    """boxes [..., 4] -> (heights [...], widths [...])."""
    y1, x1, y2, x2 = tf.unstack(boxes, 4, axis=-1)
    return y2 - y1, x2 - x1
