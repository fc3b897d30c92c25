"""Tiling equal-size images into one grid image; a captioned tile of fixed size."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from mrcnn_tf.visualize.canvas import as_rgb_copy, put_text

_CAPTION_ROW = 16  # pixels per caption line


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


def captioned_tile(image: np.ndarray, size: tuple[int, int], captions: Sequence[str] = (),
                   background: int = 255) -> np.ndarray:
    """`image` centred on a `size` canvas with caption lines under it, so that tiles of
    different images have one size for `make_grid`.

    Args:
      image: uint8 [h, w, 3] (or [h, w]) with h <= size[0] and w <= size[1] (scale it first).
      size: (height, width) of the picture area.
      captions: lines of text written under the picture, in black, cut to fit the width.
      background: grey level of the margins and the caption area.
    Returns:
      uint8 [size[0] + 16 * len(captions), size[1], 3].
    """
    image = as_rgb_copy(image)
    h, w = image.shape[:2]
    if h > size[0] or w > size[1]:
        raise ValueError(f"captioned_tile: image {h}x{w} is larger than the tile "
                         f"{size[0]}x{size[1]} (height x width)")
    tile = np.full((size[0] + _CAPTION_ROW * len(captions), size[1], 3), background, np.uint8)
    top, left = (size[0] - h) // 2, (size[1] - w) // 2
    tile[top:top + h, left:left + w] = image
    # About 7 pixels per character at this scale.
    characters = max(1, size[1] // 7)
    for i, text in enumerate(captions):
        text = text if len(text) <= characters else text[:characters - 2] + ".."
        put_text(tile, text, 3, size[0] + _CAPTION_ROW * i + 12, 0.4)
    return tile


def stack_rows(rows: Sequence[Sequence[np.ndarray]], padding: int = 8,
               background: int = 255) -> np.ndarray:
    """Images of any sizes laid out row by row, each row left to right and top-aligned.

    Args:
      rows: lists of uint8 [h, w, 3] images.
      padding: pixels between images and between rows.
      background: grey level of what no image covers.
    Returns:
      uint8 [sum of row heights + padding between rows, widest row, 3].
    """
    rows = [[as_rgb_copy(im) for im in row] for row in rows if len(row)]
    if not rows:
        raise ValueError("stack_rows: no images")
    heights = [max(im.shape[0] for im in row) for row in rows]
    widths = [sum(im.shape[1] for im in row) + padding * (len(row) - 1) for row in rows]
    out = np.full((sum(heights) + padding * (len(rows) - 1), max(widths), 3), background,
                  np.uint8)
    y = 0
    for row, height in zip(rows, heights):
        x = 0
        for im in row:
            out[y:y + im.shape[0], x:x + im.shape[1]] = im
            x += im.shape[1] + padding
        y += height + padding
    return out
