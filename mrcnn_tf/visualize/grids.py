"""Tiling equal-size images into one grid image."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def make_grid(
    images: Sequence[np.ndarray], columns: int, padding: int = 0, pad_value: int = 0
) -> np.ndarray:
    """Tiles equal-size images row by row into one image.

    Args:
        images: M uint8 images, all [H, W, 3] (or all [H, W]).
        columns: images per row; the last row is filled with `pad_value`.
        padding: pixels between tiles (and none around the border).
        pad_value: fill value of empty cells and padding.

    Returns:
        uint8 [rows * H + (rows - 1) * padding, cols * W + (cols - 1) * padding, (3)] where
        rows = ceil(M / columns) and cols = min(columns, M).
    """
    if columns < 1:
        raise ValueError(f"make_grid: columns must be >= 1, got {columns}")
    images = [np.asarray(im) for im in images]
    if not images:
        raise ValueError("make_grid: no images")
    shape = images[0].shape
    for i, im in enumerate(images):
        if im.shape != shape:
            raise ValueError(f"make_grid: image {i} has shape {im.shape}, image 0 has {shape}")
    h, w = shape[:2]
    cols = min(columns, len(images))
    rows = math.ceil(len(images) / cols)
    grid = np.full(
        (rows * h + (rows - 1) * padding, cols * w + (cols - 1) * padding) + shape[2:],
        pad_value,
        dtype=images[0].dtype,
    )
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        y, x = r * (h + padding), c * (w + padding)
        grid[y : y + h, x : x + w] = im
    return grid
