"""The input resize: shortest-edge rules, the bilinear image resize, inference preprocessing.

An image of H x W is resized keeping its aspect ratio so that the shorter side becomes
`min_size` unless the longer side would then exceed `max_size`, in which case the longer side
becomes `max_size` (Detectron2's `ResizeShortestEdge`). Two rules round the result
(`RESIZE_RULES`, keyed by `Config.resize_rule`'s allowed values):

    "detectron2":  scale = min_size / short; if long * scale > max_size: scale = max_size / long
                   new = floor(size * scale + 0.5)            (round half up, at least 1)
    "torchvision": scale = min(min_size / short, max_size / long)
                   new = floor(size * scale)                  (at least 1)

e.g. 480x640 at 800/1333 becomes 800x1067 under "detectron2" and 800x1066 under
"torchvision". Both are computed in float64, in Python (`resize_shape_static`, for sizes known
before tracing) and in the graph (`resize_params`), and the two agree bit for bit.

The functions take `config`: anything with `image_min_size`, `image_max_size`,
`size_divisibility` and `resize_rule` (a `mrcnn_tf.config.Config`), so ops/ imports nothing
above it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Tuple

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class ResizeRule:
    """One rounding of the shortest-edge resize.

    static: (height, width, min_size, max_size) Python numbers -> (new_h, new_w) Python ints.
    graph: (h, w, min_size, max_size) float64 scalar tensors -> (new_h int32, new_w int32,
      scale float64).
    """

    static: Callable[[float, float, float, float], Tuple[int, int]]
    graph: Callable[[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor],
                    Tuple[tf.Tensor, tf.Tensor, tf.Tensor]]


def _detectron2_static(height, width, min_size, max_size):
    short, long = min(height, width), max(height, width)
    scale = min_size / short
    if long * scale > max_size:
        scale = max_size / long
    return (max(1, int(math.floor(height * scale + 0.5))),
            max(1, int(math.floor(width * scale + 0.5))))


def _detectron2_graph(h, w, min_size, max_size):
    short, long = tf.minimum(h, w), tf.maximum(h, w)
    scale = min_size / short
    scale = tf.where(long * scale > max_size, max_size / long, scale)
    new_h = tf.maximum(tf.cast(tf.floor(h * scale + 0.5), tf.int32), 1)
    new_w = tf.maximum(tf.cast(tf.floor(w * scale + 0.5), tf.int32), 1)
    return new_h, new_w, scale


def _torchvision_static(height, width, min_size, max_size):
    # torchvision: floor(size * scale) in float64, never rounded up.
    scale = min(min_size / min(height, width), max_size / max(height, width))
    return max(1, int(math.floor(height * scale))), max(1, int(math.floor(width * scale)))


def _torchvision_graph(h, w, min_size, max_size):
    scale = tf.minimum(min_size / tf.minimum(h, w), max_size / tf.maximum(h, w))
    new_h = tf.maximum(tf.cast(tf.floor(h * scale), tf.int32), 1)
    new_w = tf.maximum(tf.cast(tf.floor(w * scale), tf.int32), 1)
    return new_h, new_w, scale


RESIZE_RULES = {
    "detectron2": ResizeRule(_detectron2_static, _detectron2_graph),
    "torchvision": ResizeRule(_torchvision_static, _torchvision_graph),
}


def _rule(config: Any) -> ResizeRule:
    if config.resize_rule not in RESIZE_RULES:
        raise ValueError(f"resize_rule={config.resize_rule!r}: expected one of "
                         f"{tuple(RESIZE_RULES)}")
    return RESIZE_RULES[config.resize_rule]


def resize_shape_static(height: int, width: int, config: Any) -> Tuple[int, int]:
    """`resize_params` in plain Python, for sizes known before tracing.

    Uses float64 arithmetic like the graph version, so both give the same sizes.

    Returns:
      (new_height, new_width) Python ints.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size {height}x{width}: expected positive height and width")
    return _rule(config).static(height, width, config.image_min_size, config.image_max_size)


def resize_params(height, width, config: Any, min_size=None
                  ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Output size of the shortest-edge resize under `config.resize_rule` (module docstring).

    Args:
      height, width: int scalars (Python ints or int tensors; dynamic shapes are fine).
      config: supplies image_min_size, image_max_size and resize_rule.
      min_size: optional int scalar (tensor) replacing image_min_size (scale jitter).

    Returns:
      (new_height int32 [], new_width int32 [], scale float32 []). The nominal `scale` differs
      slightly from the exact per-axis ratios new_h / h and new_w / w because of rounding; use
      those ratios to map coordinates.
    """
    # float64: sizes are exact and the result matches `resize_shape_static` bit for bit.
    if min_size is None:
        min_size = config.image_min_size
    new_h, new_w, scale = _rule(config).graph(
        tf.cast(height, tf.float64), tf.cast(width, tf.float64),
        tf.cast(min_size, tf.float64), tf.constant(float(config.image_max_size), tf.float64))
    return new_h, new_w, tf.cast(scale, tf.float32)


def resize_image(images: tf.Tensor, new_h, new_w, read_uint8: bool = False) -> tf.Tensor:
    """Bilinear resize to float32 0..255.

    Args:
      images: [H, W, C] or [B, H, W, C], any real dtype, 0..255.
      read_uint8: let ResizeBilinear read uint8 images itself (float32 out, the same numbers)
        instead of casting them to float32 first: a 10000 x 10000 photo then never exists as
        a 1.2 GB float32 copy. Not for TFLite, whose RESIZE_BILINEAR has no uint8-in,
        float-out kernel.

    Returns:
      float32 [new_h, new_w, C] or [B, new_h, new_w, C].
    """
    # antialias=False on purpose: the same op (ResizeBilinear, half-pixel centres) must run in
    # training, in the SavedModel and in TFLite, where the antialiased kernel is not a builtin.
    images = tf.convert_to_tensor(images)
    if not (read_uint8 and images.dtype == tf.uint8):
        images = tf.cast(images, tf.float32)
    resized = tf.image.resize(images, tf.stack([new_h, new_w]),
                              method=tf.image.ResizeMethod.BILINEAR, antialias=False)
    return tf.clip_by_value(resized, 0.0, 255.0)


def preprocess_for_inference(images: tf.Tensor, config: Any
                             ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Resizes a batch of same-sized images and pads it to a multiple of size_divisibility.

    Pure TF, for the model's inference path and exported signatures. When H and W are static
    the output shape is static too (sizes computed in Python by `resize_shape_static`).

    Args:
      images: [B, H, W, 3] uint8 (or any real dtype) RGB 0..255, all of one size.
      config: image_min_size, image_max_size, size_divisibility, resize_rule.

    Returns:
      images: float32 [B, Hp, Wp, 3], 0..255 (not normalized), the resized image at the
        top-left and zeros elsewhere; Hp, Wp are the resized size rounded up to a multiple of
        `config.size_divisibility`.
      image_shape: int32 [B, 2], resized (height, width) of each image (all equal).
      scale: float32 [B, 2], (new_h / H, new_w / W): divide output coordinates by it to get
        original-image pixels.
    """
    images = tf.convert_to_tensor(images)
    d = config.size_divisibility
    static_h, static_w = images.shape[1], images.shape[2]
    dynamic = tf.shape(images)
    if static_h is not None and static_w is not None:
        new_h, new_w = resize_shape_static(static_h, static_w, config)
        pad_h, pad_w = -(-new_h // d) * d, -(-new_w // d) * d
        height, width = static_h, static_w
    else:
        height, width = dynamic[1], dynamic[2]
        new_h, new_w, _ = resize_params(height, width, config)
        pad_h = (new_h + d - 1) // d * d
        pad_w = (new_w + d - 1) // d * d
    # Static shapes are the TFLite (and XLA) graphs' policy: there the image is cast first.
    resized = resize_image(images, new_h, new_w, read_uint8=not config.static_shapes)
    padded = tf.pad(resized, [[0, 0], [0, pad_h - new_h], [0, pad_w - new_w], [0, 0]])
    batch = dynamic[0]
    image_shape = tf.tile(tf.reshape(tf.stack([new_h, new_w]), [1, 2]), [batch, 1])
    scale = tf.stack([tf.cast(new_h, tf.float32) / tf.cast(height, tf.float32),
                      tf.cast(new_w, tf.float32) / tf.cast(width, tf.float32)])
    scale = tf.tile(tf.reshape(scale, [1, 2]), [batch, 1])
    return padded, tf.cast(image_shape, tf.int32), scale
