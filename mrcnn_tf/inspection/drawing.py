"""The small drawing helpers of the inspection views: zoom, caption bars, outlined boxes and
poses, blending, rank colours, crops.

Every view is drawn on the resized image the network sees, enlarged with nearest-neighbour to
at least `MIN_DISPLAY_SIDE` pixels on the shorter side (`display_zoom`, `enlarge`) so labels
stay readable on small images, under a caption bar (`with_caption`). Images are uint8
[H, W, 3] RGB; boxes (y1, x1, y2, x2) pixels; keypoints [..., K, 3] (y, x, v or score).
"""

from __future__ import annotations

import colorsys
import math
from typing import Sequence

import cv2
import numpy as np

from mrcnn_tf import visualize

# Images whose shorter side is below this are enlarged (nearest-neighbour, integer factor).
MIN_DISPLAY_SIDE = 256
MAX_ZOOM = 8

# Between the tiles of a grid view.
GRID_PADDING = 4
GRID_PAD_VALUE = 96  # grey between tiles: visibly not part of any image

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.4
_LINE_HEIGHT = 15
_CAPTION_PAD = 3
_CAPTION_BG = (24, 24, 24)
# RGB colours of the views' boxes, poses and caption legends.
WHITE = (255, 255, 255)
GREEN = (40, 220, 40)
MAGENTA = (255, 0, 255)
GREY = (170, 170, 170)
RED = (255, 40, 40)


def display_zoom(height: int, width: int) -> int:
    """Integer enlargement so the shorter side reaches MIN_DISPLAY_SIDE (1 if it already
    does; at most MAX_ZOOM)."""
    short = max(1, min(int(height), int(width)))
    if short >= MIN_DISPLAY_SIDE:
        return 1
    return int(min(MAX_ZOOM, math.ceil(MIN_DISPLAY_SIDE / short)))


def enlarge(array: np.ndarray, zoom: int, first_axis: int = 0) -> np.ndarray:
    """Nearest-neighbour enlargement of axes first_axis, first_axis + 1 by `zoom`."""
    if zoom == 1:
        return array
    return np.repeat(np.repeat(array, zoom, axis=first_axis), zoom, axis=first_axis + 1)


def caption_height(num_lines: int) -> int:
    """Height in pixels of a caption bar with `num_lines` lines."""
    return 2 * _CAPTION_PAD + _LINE_HEIGHT * num_lines


def _text_width(text: str) -> int:
    return cv2.getTextSize(text, _FONT, _FONT_SCALE, 1)[0][0]


def _wrap(line: str, width: int) -> list[str]:
    """Splits a str line at spaces into lines that fit `width` pixels (a single word that
    does not fit stays whole and is cut at the edge)."""
    words = line.split(" ")
    lines = [words[0]]
    for word in words[1:]:
        candidate = f"{lines[-1]} {word}"
        if _text_width(candidate) + 2 * _CAPTION_PAD <= width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines


def _caption_bar(width: int, lines: Sequence, wrap: bool = False) -> np.ndarray:
    """A dark bar of text lines. A line is a str (white) or a list of (text, rgb) segments.

    With wrap, str lines too long for `width` are broken at spaces (single views); tiles of a
    grid keep one bar line per line so that every tile has the same height.
    """
    if wrap:
        lines = [part for line in lines
                 for part in (_wrap(line, width) if isinstance(line, str) else [line])]
    bar = np.empty([caption_height(len(lines)), width, 3], np.uint8)
    bar[:] = _CAPTION_BG
    for i, line in enumerate(lines):
        segments = [(line, WHITE)] if isinstance(line, str) else line
        x = _CAPTION_PAD
        y = _CAPTION_PAD + (i + 1) * _LINE_HEIGHT - 4
        for text, color in segments:
            cv2.putText(bar, text, (x, y), _FONT, _FONT_SCALE,
                        tuple(int(c) for c in color), 1, cv2.LINE_AA)
            x += _text_width(text) + 6
    return bar


def with_caption(image: np.ndarray, lines: Sequence, wrap: bool = False) -> np.ndarray:
    """The caption bar stacked above `image` (uint8 [H, W, 3] -> [H + bar, W, 3])."""
    return np.concatenate([_caption_bar(image.shape[1], lines, wrap), image], axis=0)


def draw_outlined(image: np.ndarray, boxes: np.ndarray, colors, thickness: int = 1
                  ) -> np.ndarray:
    """Boxes with a dark outline under the colour, visible on any background."""
    dark = visualize.draw_boxes(image, boxes, colors=(0, 0, 0), thickness=thickness + 2)
    return visualize.draw_boxes(dark, boxes, colors=colors, thickness=thickness)


def draw_outlined_poses(image: np.ndarray, keypoints: np.ndarray, skeleton: Sequence[int],
                        color, radius: int) -> np.ndarray:
    """Ground-truth style poses (third column v: 1 occluded, 2 visible, 0 not drawn) in one
    colour over a black outline, so that they read on any image colour (as `draw_outlined`
    boxes do)."""
    dark = visualize.draw_keypoints(image, keypoints, skeleton, visibility=True,
                                    colors=(0, 0, 0), radius=radius + 1, thickness=3)
    return visualize.draw_keypoints(dark, keypoints, skeleton, visibility=True, colors=color,
                                    radius=radius, thickness=1)


def clip_to(boxes: np.ndarray, height: float, width: float) -> np.ndarray:
    """Boxes clipped to the image, so anchors larger than it still show as its border."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, height)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, width)
    return boxes


def blend(base: np.ndarray, drawn: np.ndarray, alpha: float) -> np.ndarray:
    """Shows `drawn` over `base` with opacity alpha (faint boxes)."""
    mixed = (1.0 - alpha) * base.astype(np.float32) + alpha * drawn.astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def rank_colors(n: int) -> np.ndarray:
    """uint8 [n, 3] bright RGB from red (rank 0) through yellow, green and cyan to blue
    (rank n - 1): full-saturation hues, readable on the dark caption bar too."""
    hues = np.linspace(0.0, 0.6, n) if n > 1 else np.zeros([n])
    return np.asarray([[round(255 * c) for c in colorsys.hsv_to_rgb(hue, 1.0, 1.0)]
                       for hue in hues], np.uint8).reshape(-1, 3)


def format_number(value: float) -> str:
    return f"{value:g}"


def no_positives_tile(height: int, width: int, caption: Sequence) -> np.ndarray:
    """The one tile of a per-positive-RoI grid when there is no positive RoI: black, saying
    so, under `caption` (as many lines as the real tiles have, so shapes agree)."""
    panel = np.zeros([height, width, 3], np.uint8)
    cv2.putText(panel, "no positive RoIs", (_CAPTION_PAD, height // 2), _FONT, _FONT_SCALE,
                WHITE, 1, cv2.LINE_AA)
    return with_caption(panel, caption)


def map_keypoints(keypoints, origin, scale: float) -> np.ndarray:
    """Keypoints [..., K, 3] moved into another frame: (y, x) -> ((y, x) - origin) * scale,
    the third column (v or score) kept. Continuous pixels scale as they are (pixel i of an
    image enlarged z times covers [i z, (i + 1) z)), so this serves zoom and crops alike."""
    mapped = np.array(keypoints, np.float32, copy=True)
    mapped[..., :2] = (mapped[..., :2] - np.asarray(origin, np.float32)) * scale
    return mapped


def crop_box(image: np.ndarray, box: np.ndarray, side: int) -> np.ndarray:
    """Bilinear side x side resampling of the image inside box (y1, x1, y2, x2) pixels.

    Output pixel u's centre u + 0.5 maps to x1 + (u + 0.5) * bw / side, like RoIAlign and the
    mask targets, so the crop lines up with the target cell for cell. Outside is black.
    """
    y1, x1, y2, x2 = (float(v) for v in box)
    sy = max(y2 - y1, 1e-6) / side
    sx = max(x2 - x1, 1e-6) / side
    matrix = np.asarray([[sx, 0.0, x1 + 0.5 * sx - 0.5], [0.0, sy, y1 + 0.5 * sy - 0.5]])
    return cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_LINEAR
                          | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)
