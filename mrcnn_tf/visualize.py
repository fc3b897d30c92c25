"""Drawing detections, anchors, proposals and mask targets with OpenCV (no display needed).

Every function takes and returns uint8 RGB images [H, W, 3] and never modifies its input.
Boxes are (y1, x1, y2, x2) float pixels with exclusive right/bottom edges, so a box is drawn
on the pixels x1..x2-1, y1..y2-1, i.e. exactly around the mask it was computed from.
Keypoints are (y, x, score) or ground-truth (y, x, v) in continuous pixels (pixel i covers
[i, i + 1), see `mrcnn_tf.keypoint_spec`), so a keypoint at 12.5 is drawn centred on pixel 12.
Save results with `mrcnn_tf.io_utils.write_png_atomic`.
"""

from __future__ import annotations

import colorsys
import math
from typing import Sequence

import cv2
import numpy as np

from mrcnn_tf import keypoint_spec

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BACKGROUND_NAMES = ("background", "bg", "__background__")
# Coordinates are clipped to this margin outside the image before they reach OpenCV: it keeps
# huge or far-away values from overflowing OpenCV's int32 drawing code while still placing
# the edges of a partly-outside box off-canvas (so they are not drawn).
_MARGIN = 4
# Predicted keypoint scores are softmax peak probabilities over a 56 x 56 heatmap: a uniform
# map gives 1 / 3136 ~ 0.0003 per cell, a well-localized peak ~0.1-0.5. 0.05 (150 times the
# uniform value) hides the keypoints the head has no idea about and keeps the plausible ones.
KEYPOINT_SCORE_THRESHOLD = 0.05
# Keypoints farther than this from the origin are not drawn: OpenCV's sub-pixel drawing works
# in int32 fixed point (coordinate * 2**_SHIFT), which such values would overflow.
_MAX_COORD = 2.0**20
_SHIFT = 4


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


def _instance_colors(colors, n: int, what: str, seed: int = 0) -> np.ndarray:
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


def _as_keypoints(keypoints, what: str = "keypoints") -> np.ndarray:
    """float64 [n, K, 3] (y, x, score or visibility), or a ValueError naming `what`."""
    kps = np.asarray(keypoints, dtype=np.float64)
    if kps.ndim != 3 or kps.shape[2] != 3:
        raise ValueError(f"{what} must have shape [n, K, 3] (y, x, score or visibility), got "
                         f"{kps.shape}")
    return kps


def _as_skeleton(skeleton, num_keypoints: int) -> list[tuple[int, int]]:
    """Validated (a, b) limb pairs from a flat 0-based skeleton (a0, b0, a1, b1, ...); an
    [L, 2] array of pairs is accepted too. Raises ValueError naming `skeleton`."""
    values = [] if skeleton is None else np.asarray(skeleton).reshape(-1).tolist()
    if len(values) % 2:
        raise ValueError(f"skeleton: expected flat 0-based index pairs (a0, b0, a1, b1, ...), "
                         f"got an odd number ({len(values)}) of indices")
    for v in values:
        integral = isinstance(v, int) or (isinstance(v, float) and v.is_integer())
        if isinstance(v, bool) or not integral or not 0 <= v < num_keypoints:
            raise ValueError(f"skeleton: {v!r} is not a keypoint index in "
                             f"0..{num_keypoints - 1} (the keypoints have K = {num_keypoints}; "
                             "the skeleton is 0-based)")
    return keypoint_spec.skeleton_pairs([int(v) for v in values])


def _keypoint_sizes(height: int, width: int, radius, thickness) -> tuple[int, int]:
    """Dot radius and limb width: the given ones, or sizes that grow with the image (a 64 x 64
    image gets radius 2 and 1-pixel limbs, 640 x 480 radius 4 and 2-pixel limbs)."""
    scale = math.sqrt(height * width)
    radius = max(2, round(scale / 150)) if radius is None else radius
    thickness = max(1, round(scale / 300)) if thickness is None else thickness
    for name, value in (("radius", radius), ("thickness", thickness)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"draw_keypoints: {name} must be an integer >= 1, got {value!r}")
    return int(radius), int(thickness)


def _draw_poses(
    out: np.ndarray,
    keypoints: np.ndarray,
    pairs: Sequence[tuple[int, int]],
    colors: np.ndarray,
    score_threshold: float,
    visibility: bool,
    radius: int | None,
    thickness: int | None,
) -> None:
    """Draws limbs, then dots, of every instance into `out` (in place); see draw_keypoints."""
    height, width = out.shape[:2]
    radius, thickness = _keypoint_sizes(height, width, radius, thickness)
    yx = keypoints[..., :2]
    value = keypoints[..., 2]
    placeable = np.all(np.isfinite(yx) & (np.abs(yx) <= _MAX_COORD), axis=-1)
    # NaN scores compare False, so they are never drawn.
    shown = placeable & (value > 0 if visibility else value >= score_threshold)
    hollow = shown & (np.rint(value) == 1) if visibility else np.zeros_like(shown)
    # Fixed-point (x, y) for OpenCV: the centre of pixel i is at i + 0.5 in continuous
    # coordinates and at i in OpenCV's, hence the - 0.5.
    points = np.where(shown[..., None], yx[..., ::-1] - 0.5, 0.0) * (1 << _SHIFT)
    points = np.rint(points).astype(np.int64)
    color_tuples = [_color_tuple(c) for c in colors]

    # All limbs before any dot, so that no instance's limb hides another's keypoint.
    for i, color in enumerate(color_tuples):
        for a, b in pairs:
            if shown[i, a] and shown[i, b]:
                cv2.line(out, tuple(points[i, a].tolist()), tuple(points[i, b].tolist()),
                         color, thickness, cv2.LINE_AA, _SHIFT)
    for i, color in enumerate(color_tuples):
        # A darker rim keeps a dot visible on its own limbs and on a tinted mask.
        dark = _color_tuple((colors[i].astype(np.float32) * 0.6).astype(np.uint8))
        for k in np.flatnonzero(shown[i]):
            center = tuple(points[i, k].tolist())
            # The rim lies outside the dot, so a small dot keeps its colour.
            cv2.circle(out, center, (radius + 1) << _SHIFT, dark, -1, cv2.LINE_AA, _SHIFT)
            cv2.circle(out, center, radius << _SHIFT, color, -1, cv2.LINE_AA, _SHIFT)
            if hollow[i, k]:
                # An occluded keypoint: the dot with a dark hole (a thin hollow circle would
                # vanish into the limb running through it).
                hole = max(1 << _SHIFT, (radius << _SHIFT) // 2)
                cv2.circle(out, center, hole, dark, -1, cv2.LINE_AA, _SHIFT)


def draw_keypoints(
    image: np.ndarray,
    keypoints: np.ndarray,
    skeleton: Sequence[int] = (),
    score_threshold: float = KEYPOINT_SCORE_THRESHOLD,
    visibility: bool = False,
    colors=None,
    radius: int | None = None,
    thickness: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Draws poses: a dot per keypoint and a line per skeleton limb.

    A keypoint is drawn when its coordinates are finite and
      * predictions (`visibility=False`): its score is >= `score_threshold`;
      * ground truth (`visibility=True`, third column COCO's v): v > 0. Visible keypoints
        (v == 2) get filled dots, occluded ones (v == 1) dots with a dark hole;
        `score_threshold` is not used.
    A limb is drawn when both of its keypoints are drawn. Limbs go under the dots.

    Args:
        image: uint8 [H, W, 3] RGB (not modified).
        keypoints: float [n, K, 3]: (y, x, score) predictions or (y, x, v) ground truth, in
            continuous pixels (pixel i covers [i, i + 1); see `mrcnn_tf.keypoint_spec`).
            Points outside the image are clipped by the drawing, not moved.
        skeleton: flat 0-based limb pairs (a0, b0, a1, b1, ...) as `Config.keypoint_skeleton`
            holds them (e.g. `keypoint_spec.COCO_PERSON_SKELETON`); () draws dots only.
        score_threshold: minimum score drawn; default `KEYPOINT_SCORE_THRESHOLD` (0.05).
        visibility: the third column is COCO visibility, not a score (see above).
        colors: None (palette colour i for instance i, as `draw_instances` uses), one RGB
            colour, or uint8 [n, 3].
        radius: dot radius in pixels (filled dots get a 1-pixel darker rim around it);
            default grows with the image (2 up to about 400 x 400).
        thickness: limb width in pixels; default grows with the image (1 at 64 x 64).
        seed: palette seed when `colors` is None.

    Returns:
        uint8 [H, W, 3] RGB: a new image, equal to `image` where nothing is drawn.

    Raises:
        ValueError: naming `keypoints` (not [n, K, 3]), `skeleton` (odd length, or an index
            outside 0..K-1), `colors`, `radius` or `thickness`.
    """
    out = _as_rgb_copy(image)
    kps = _as_keypoints(keypoints)
    pairs = _as_skeleton(skeleton, kps.shape[1])
    colors = _instance_colors(colors, kps.shape[0], "draw_keypoints", seed=seed)
    _draw_poses(out, kps, pairs, colors, score_threshold, visibility, radius, thickness)
    return out


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
    keypoints: np.ndarray | None = None,
    skeleton: Sequence[int] = (),
    keypoint_threshold: float = KEYPOINT_SCORE_THRESHOLD,
    keypoint_visibility: bool = False,
) -> np.ndarray:
    """Draws detections or ground truth: tinted masks with contours, boxes, poses and labels.

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
        keypoints: float [N, K, 3] (y, x, score) or, with `keypoint_visibility`, ground truth
            (y, x, v); None draws no poses. Each pose takes its instance's colour.
        skeleton: flat 0-based limb pairs (`Config.keypoint_skeleton`).
        keypoint_threshold: minimum keypoint score drawn (see `draw_keypoints`).
        keypoint_visibility: the keypoints' third column is COCO visibility v (0, 1, 2).

    Drawing order: masks, boxes, poses, labels (so that labels stay readable).

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
    pairs: list[tuple[int, int]] = []
    if keypoints is not None:
        keypoints = _as_keypoints(keypoints)
        if keypoints.shape[0] != n:
            raise ValueError(f"draw_instances: {n} boxes but keypoints of "
                             f"{keypoints.shape[0]} instances (shape {keypoints.shape})")
        pairs = _as_skeleton(skeleton, keypoints.shape[1])

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

    all_corners = [_box_corners(boxes[i], height, width) for i in keep]
    if show_boxes:
        for color, corners in zip(colors, all_corners):
            if corners is not None:
                cv2.rectangle(out, corners[0], corners[1], _color_tuple(color), thickness=1)
    if keypoints is not None:
        _draw_poses(out, keypoints[keep], pairs, colors, keypoint_threshold,
                    keypoint_visibility, None, None)
    for color, i, corners in zip(colors, keep, all_corners):
        if corners is None:
            continue
        label = class_name(class_names, class_ids[i])
        if scores is not None:
            label = f"{label} {scores[i]:.2f}"
        _draw_label(out, label, corners[0], _color_tuple(color))
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
    color_array = _instance_colors(colors, n, "draw_boxes")
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
