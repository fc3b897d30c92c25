"""What every drawing function shares: the RGB copy it draws on, box arrays, box corners in
OpenCV's integer pixels, and filled text labels."""

from __future__ import annotations

import math

import cv2
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX
# Coordinates are clipped to this margin outside the image before they reach OpenCV: it keeps
# huge or far-away values from overflowing OpenCV's int32 drawing code while still placing
# the edges of a partly-outside box off-canvas (so they are not drawn).
_MARGIN = 4


def as_rgb_copy(image: np.ndarray) -> np.ndarray:
    """A contiguous uint8 [H, W, 3] copy (grayscale [H, W] or [H, W, 1] is expanded)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return np.ascontiguousarray(np.stack([image] * 3, axis=-1))
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an image of shape [H, W, 3], got {image.shape}")
    return np.array(image, copy=True, order="C")


def as_boxes(boxes, what: str = "boxes") -> np.ndarray:
    """float64 [N, 4] from anything array-like (None or empty -> [0, 4])."""
    if boxes is None:
        return np.zeros([0, 4])
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        return np.zeros([0, 4])
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{what} must have shape [N, 4] (y1, x1, y2, x2), got {boxes.shape}")
    return boxes


def box_corners(box: np.ndarray, height: int, width: int):
    """Integer inclusive corners ((x1, y1), (x2, y2)) for cv2.rectangle, or None if invalid.

    Exclusive right/bottom edges become inclusive by subtracting 1; coordinates are clipped to
    a small margin outside the image so partly-outside boxes draw only their visible edges.
    """
    if not np.all(np.isfinite(box)):
        return None
    y1, x1, y2, x2 = box
    if y2 <= y1 or x2 <= x1:
        return None
    x1 = int(np.clip(math.floor(x1), -_MARGIN, width + _MARGIN))
    y1 = int(np.clip(math.floor(y1), -_MARGIN, height + _MARGIN))
    x2 = int(np.clip(math.ceil(x2) - 1, -_MARGIN, width + _MARGIN))
    y2 = int(np.clip(math.ceil(y2) - 1, -_MARGIN, height + _MARGIN))
    return (x1, y1), (x2, y2)


def put_text(image: np.ndarray, text: str, x: float, y: float, scale: float = 0.45,
             color=(0, 0, 0), centered: bool = False) -> None:
    """Draws plain anti-aliased `text` with its baseline at y, starting at x (or centred on x);
    the axes, ticks and legends of the charts. Draws in place."""
    (width, _), _ = cv2.getTextSize(text, _FONT, scale, 1)
    x = x - width / 2 if centered else x
    cv2.putText(image, text, (int(x), int(y)), _FONT, scale, color, 1, cv2.LINE_AA)


def _text_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light backgrounds, white on dark ones (ITU-R BT.601 luma)."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def draw_label(
    image: np.ndarray,
    text: str,
    anchor_xy: tuple[int, int],
    color: tuple[int, int, int],
    font_scale: float = 0.4,
) -> None:
    """Draws `text` on a filled `color` box whose bottom-left corner is at `anchor_xy`.

    If the label would leave the image it is moved inside: below the box's top edge when there
    is no room above, and left/right so that it stays visible. Draws in place.
    """
    height, width = image.shape[:2]
    (tw, th), baseline = cv2.getTextSize(text, _FONT, font_scale, 1)
    box_h = th + baseline + 2
    x, y = anchor_xy
    x = int(np.clip(x, 0, max(0, width - tw - 2)))
    top = y - box_h
    if top < 0:
        # No room above the box: put the label just inside it.
        top = max(0, y + 1)
    top = int(min(top, max(0, height - box_h)))
    cv2.rectangle(image, (x, top), (x + tw + 1, top + box_h - 1), color, thickness=-1)
    cv2.putText(
        image, text, (x + 1, top + th + 1), _FONT, font_scale, _text_color(color), 1, cv2.LINE_AA
    )
