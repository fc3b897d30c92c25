"""Drawing detections, anchors, proposals and mask targets with OpenCV (no display needed).

Every function takes and returns uint8 RGB images [H, W, 3] and never modifies its input.
Boxes are (y1, x1, y2, x2) float pixels with exclusive right/bottom edges, so a box is drawn
on the pixels x1..x2-1, y1..y2-1, i.e. exactly around the mask it was computed from.
Save results with `mrcnn_tf.io_utils.write_png_atomic`.
"""

from __future__ import annotations

import colorsys
import math
from typing import Sequence

import cv2
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BACKGROUND_NAMES = ("background", "bg", "__background__")
# Coordinates are clipped to this margin outside the image before they reach OpenCV: it keeps
# huge or far-away values from overflowing OpenCV's int32 drawing code while still placing
# the edges of a partly-outside box off-canvas (so they are not drawn).
_MARGIN = 4


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


def _as_rgb_copy(image: np.ndarray) -> np.ndarray:
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


def _as_boxes(boxes, what: str = "boxes") -> np.ndarray:
    """float64 [N, 4] from anything array-like (None or empty -> [0, 4])."""
    if boxes is None:
        return np.zeros([0, 4])
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        return np.zeros([0, 4])
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{what} must have shape [N, 4] (y1, x1, y2, x2), got {boxes.shape}")
    return boxes


def _color_tuple(color) -> tuple[int, int, int]:
    """OpenCV wants a tuple of Python ints."""
    return tuple(int(c) for c in np.asarray(color).reshape(3))  # type: ignore[return-value]


def _box_corners(box: np.ndarray, height: int, width: int):
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


def _text_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light backgrounds, white on dark ones (ITU-R BT.601 luma)."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def _draw_label(
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


def class_name(class_names: Sequence[str] | None, class_id: int) -> str:
    """Name of contiguous class id `class_id` (1..K).

    `class_names` may be either ["background", name_1, ..., name_K] (K + 1 entries, indexed by
    class id, as `LabelMap.class_names` gives) or [name_1, ..., name_K] (K entries). The two
    are told apart by the first entry: "background", "bg" or "__background__" (any case)
    means the list includes background. Unknown ids come back as "class <id>".
    """
    class_id = int(class_id)
    if class_names is None or len(class_names) == 0:
        return f"class {class_id}"
    index = class_id if str(class_names[0]).lower() in _BACKGROUND_NAMES else class_id - 1
    if 0 <= index < len(class_names) and class_id >= 1:
        return str(class_names[index])
    return f"class {class_id}"


def draw_instances(
    image: np.ndarray,
    boxes: np.ndarray,
    class_ids: np.ndarray,
    scores: np.ndarray | None = None,
    masks: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    score_threshold: float = 0.0,
    alpha: float = 0.5,
    show_boxes: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """Draws detections or ground truth: tinted masks with contours, boxes and labels.

    Args:
        image: uint8 [H, W, 3] RGB (not modified).
        boxes: float [N, 4] (y1, x1, y2, x2) pixels; may extend outside the image.
        class_ids: int [N], contiguous ids 1..K.
        scores: float [N] or None (ground truth). With scores, instances scoring below
            `score_threshold` are skipped and labels read "name 0.93".
        masks: [N, H, W] bool/uint8 (non-zero = inside; float is thresholded at 0.5) or None.
        class_names: see `class_name`: K + 1 names starting with "background", or K names.
        score_threshold: minimum score drawn.
        alpha: mask opacity in [0, 1].
        show_boxes: draw box rectangles (labels are drawn either way).
        seed: colour palette seed; instance i gets colour i of the palette.

    Returns:
        uint8 [H, W, 3] RGB. With no instances (after thresholding) an unchanged copy.
    """
    out = _as_rgb_copy(image)
    height, width = out.shape[:2]
    boxes = _as_boxes(boxes)
    n = boxes.shape[0]
    class_ids = np.asarray(class_ids).reshape(-1)
    if class_ids.shape[0] != n:
        raise ValueError(f"draw_instances: {n} boxes but {class_ids.shape[0]} class ids")
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if scores.shape[0] != n:
            raise ValueError(f"draw_instances: {n} boxes but {scores.shape[0]} scores")
    if masks is not None:
        masks = np.asarray(masks)
        if masks.shape != (n, height, width):
            raise ValueError(
                f"draw_instances: masks have shape {masks.shape}, expected {(n, height, width)}"
            )
        masks = masks >= 0.5 if np.issubdtype(masks.dtype, np.floating) else masks != 0

    keep = np.arange(n)
    if scores is not None:
        keep = keep[scores >= score_threshold]
    if keep.size == 0:
        return out
    colors = color_palette(keep.size, seed=seed)

    # Masks first, all of them, so that no mask covers another instance's box or label.
    if masks is not None:
        blended = out.astype(np.float32)
        for color, i in zip(colors, keep):
            m = masks[i]
            blended[m] = (1.0 - alpha) * blended[m] + alpha * color.astype(np.float32)
        out = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        for color, i in zip(colors, keep):
            contours, _ = cv2.findContours(
                masks[i].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
            )
            # A darker outline separates touching instances of similar colour.
            dark = _color_tuple((color.astype(np.float32) * 0.6).astype(np.uint8))
            cv2.drawContours(out, contours, -1, dark, thickness=1)

    for color, i in zip(colors, keep):
        corners = _box_corners(boxes[i], height, width)
        if corners is None:
            continue
        color_t = _color_tuple(color)
        if show_boxes:
            cv2.rectangle(out, corners[0], corners[1], color_t, thickness=1)
        label = class_name(class_names, class_ids[i])
        if scores is not None:
            label = f"{label} {scores[i]:.2f}"
        _draw_label(out, label, corners[0], color_t)
    return out


def draw_boxes(
    image: np.ndarray,
    boxes: np.ndarray,
    colors=None,
    thickness: int = 1,
    labels: Sequence[str] | None = None,
) -> np.ndarray:
    """Draws plain rectangles, e.g. anchors, proposals or sampled RoIs.

    Args:
        image: uint8 [H, W, 3] RGB (not modified).
        boxes: float [N, 4] (y1, x1, y2, x2) pixels; invalid (empty, non-finite) boxes are
            skipped, boxes partly outside the image are drawn where visible.
        colors: None (a palette colour per box), one RGB colour for all boxes, or uint8 [N, 3].
        thickness: line width in pixels.
        labels: optional N strings drawn above the boxes.

    Returns:
        uint8 [H, W, 3] RGB.
    """
    out = _as_rgb_copy(image)
    height, width = out.shape[:2]
    boxes = _as_boxes(boxes)
    n = boxes.shape[0]
    if n == 0:
        return out
    if colors is None:
        color_array = color_palette(n)
    else:
        color_array = np.asarray(colors)
        if color_array.shape == (3,):
            color_array = np.tile(color_array[None], [n, 1])
        if color_array.shape != (n, 3):
            raise ValueError(
                f"draw_boxes: colors must be one RGB colour or [{n}, 3], got {color_array.shape}"
            )
    if labels is not None and len(labels) != n:
        raise ValueError(f"draw_boxes: {n} boxes but {len(labels)} labels")
    for i in range(n):
        corners = _box_corners(boxes[i], height, width)
        if corners is None:
            continue
        color_t = _color_tuple(color_array[i])
        cv2.rectangle(out, corners[0], corners[1], color_t, thickness=int(thickness))
        if labels is not None and labels[i]:
            _draw_label(out, str(labels[i]), corners[0], color_t)
    return out


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
