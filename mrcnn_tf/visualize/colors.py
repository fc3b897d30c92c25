"""Colours: the instance palette, OpenCV colour tuples and the heat map of a soft mask."""

from __future__ import annotations

import colorsys
import math

import cv2
import numpy as np

# Chart series colours (RGB), in order: blue, orange, green, red, purple, brown, pink, grey,
# olive, cyan, indigo, brick. Distinct on white and in print.
CHART_COLORS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
                (57, 59, 121), (173, 73, 74))


def color_palette(n: int, seed: int = 0) -> np.ndarray:
    """`n` distinct, bright RGB colours.

    Hues are spread by the golden ratio, so any prefix of the palette is well spread and
    neighbouring instances get very different colours; `seed` picks the starting hue.

    Returns:
        uint8 [n, 3] RGB.
    """
    if n <= 0:
        return np.zeros([0, 3], np.uint8)
    start = np.random.default_rng(seed).random()
    golden = (math.sqrt(5) - 1) / 2
    colors = []
    for i in range(n):
        hue = (start + i * golden) % 1.0
        # Alternate saturation a little so that colours with close hues (large n) still differ.
        saturation = 0.85 if i % 2 == 0 else 0.65
        r, g, b = colorsys.hsv_to_rgb(hue, saturation, 1.0)
        colors.append((round(255 * r), round(255 * g), round(255 * b)))
    return np.asarray(colors, np.uint8)


def color_tuple(color) -> tuple[int, int, int]:
    """OpenCV wants a tuple of Python ints."""
    return tuple(int(c) for c in np.asarray(color).reshape(3))  # type: ignore[return-value]


def instance_colors(colors, n: int, what: str, seed: int = 0) -> np.ndarray:
    """uint8 [n, 3] from None (palette colours 0..n-1), one RGB colour or [n, 3] colours."""
    if colors is None:
        return color_palette(n, seed=seed)
    color_array = np.asarray(colors)
    if color_array.shape == (3,):
        color_array = np.tile(color_array[None], [n, 1])
    if color_array.shape != (n, 3):
        raise ValueError(f"{what}: colors must be one RGB colour or [{n}, 3], got "
                         f"{color_array.shape}")
    return color_array


def mask_to_color(
    mask_probs: np.ndarray, size: tuple[int, int] | None = None, colormap: int = cv2.COLORMAP_JET
) -> np.ndarray:
    """Heat map of a soft mask (e.g. a 28x28 mask target or sigmoid output).

    Args:
        mask_probs: float [h, w], values in [0, 1] (clipped).
        size: optional (height, width) to enlarge to; nearest-neighbour, so each mask cell
            stays a visible square.
        colormap: an OpenCV colormap id.

    Returns:
        uint8 [h, w, 3] (or [*size, 3]) RGB.
    """
    probs = np.asarray(mask_probs, dtype=np.float32)
    if probs.ndim != 2:
        raise ValueError(f"mask_to_color: expected [h, w], got shape {probs.shape}")
    gray = np.rint(np.clip(np.nan_to_num(probs), 0.0, 1.0) * 255).astype(np.uint8)
    if size is not None:
        gray = cv2.resize(gray, (int(size[1]), int(size[0])), interpolation=cv2.INTER_NEAREST)
    return cv2.cvtColor(cv2.applyColorMap(gray, colormap), cv2.COLOR_BGR2RGB)
