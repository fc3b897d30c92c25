"""Synthetic "small shapes": small squares, circles and triangles and thin bars on a 256 px
canvas, the set the ablations (`mrcnn-tf ablate`) train on.

Objects are 8 to 32 px across and bars 2 to 4 px wide, so with a pooling stride of 8 a box
is 1 to 4 feature cells and a rounding to the grid (RoIPool, RoIWarp) moves it by up to half
a cell: a visible share of the object. That is the situation of the paper's Table 2c/2d, where
a stride-32 C5 feature made RoIAlign's gain largest.

The painting, occlusion rule, noise and example dict are those of `mrcnn_tf.data.shapes`
(class ids 1..4, see `CLASS_NAMES`); every example is a pure function of (index, seed).
"""

from __future__ import annotations

import math
from typing import Dict

import cv2
import numpy as np
import tensorflow as tf

from mrcnn_tf.data import schema
from mrcnn_tf.data.shapes import (_SHIFT, _fixed_point, circumradius, draw_shape_mask,
                                  generated_dataset, paint_shapes)

CLASS_NAMES = ("square", "circle", "triangle", "bar")
IMAGE_SIZE = 256
SIZE_RANGE = (8.0, 32.0)  # side / diameter of squares, triangles and circles, in pixels
BAR_LENGTH = (16.0, 40.0)
BAR_WIDTH = (2.0, 4.0)
SHAPE_COUNTS = (3, 10)
MIN_VISIBLE_PIXELS = 12


def _bar_mask(cy, cx, length, width, angle, image_size):
    """uint8 [S, S] mask of a length x width rectangle centred at (cy, cx), rotated."""
    along = np.array([math.cos(angle), math.sin(angle)]) * length / 2
    across = np.array([-math.sin(angle), math.cos(angle)]) * width / 2
    centre = np.array([cx, cy])
    points = np.stack([centre + along + across, centre + along - across,
                       centre - along - across, centre - along + across])
    mask = np.zeros((image_size, image_size), np.uint8)
    cv2.fillPoly(mask, [_fixed_point(points)], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return mask


def generate_small_shapes_example(index: int, seed: int = 0, image_size: int = IMAGE_SIZE
                                  ) -> Dict[str, np.ndarray]:
    """One example (the dict of `mrcnn_tf.data.shapes`), a pure function of (index, seed).

    Args:
      index, seed: >= 0.
      image_size: S, the square canvas side (object sizes do not scale with it).
    Returns:
      image uint8 [S, S, 3], boxes float32 [N, 4], class_ids int32 [N] in 1..4, masks uint8
      [N, S, S], is_crowd bool [N], image_id int64 [].
    """
    if index < 0 or seed < 0:
        raise ValueError(f"small shapes example: index={index}, seed={seed}: expected >= 0")
    if image_size < 2 * BAR_LENGTH[1]:
        raise ValueError(f"small shapes example: image_size={image_size}: expected >= "
                         f"{int(2 * BAR_LENGTH[1])}")
    rng = np.random.default_rng((seed, index, 1))  # 1: not the same draws as shapes' examples

    def propose(rng):
        kind = int(rng.integers(0, len(CLASS_NAMES)))
        angle = rng.uniform(0, 2 * np.pi)
        if kind == 3:
            length, width = rng.uniform(*BAR_LENGTH), rng.uniform(*BAR_WIDTH)
            cy, cx = rng.uniform(length / 2 + 1, image_size - length / 2 - 1, size=2)
            return kind, _bar_mask(cy, cx, length, width, angle, image_size)
        size = rng.uniform(*SIZE_RANGE)
        radius = circumradius(kind, size)
        cy, cx = rng.uniform(radius, image_size - radius, size=2)
        jitter = rng.uniform(-0.12, 0.12, size=3)
        return kind, draw_shape_mask(kind, cy, cx, size, angle, jitter, image_size)

    return paint_shapes(rng, image_size, SHAPE_COUNTS, propose, MIN_VISIBLE_PIXELS, index)


def small_shapes_dataset(num_images: int, seed: int = 0, image_size: int = IMAGE_SIZE
                         ) -> tf.data.Dataset:
    """Examples 0 .. num_images - 1 as a tf.data.Dataset, generated on the fly (as
    `shapes.shapes_dataset`)."""
    if num_images < 0:
        raise ValueError(f"small_shapes_dataset: num_images={num_images}: expected >= 0")
    return generated_dataset(num_images, schema.example_signature(image_size=image_size),
                             lambda index: generate_small_shapes_example(index, seed,
                                                                         image_size))
