"""Instances: tinted masks with contours, boxes, poses and class labels; plain boxes.

Boxes are (y1, x1, y2, x2) float pixels with exclusive right/bottom edges, so a box is drawn
on the pixels x1..x2-1, y1..y2-1, i.e. exactly around the mask it was computed from.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from mrcnn_tf.visualize.canvas import as_boxes, as_rgb_copy, box_corners, draw_label
from mrcnn_tf.visualize.colors import color_palette, color_tuple, instance_colors
from mrcnn_tf.visualize.keypoints import (KEYPOINT_SCORE_THRESHOLD, as_keypoints, as_skeleton,
                                          draw_poses)

_BACKGROUND_NAMES = ("background", "bg", "__background__")


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
    out = as_rgb_copy(image)
    height, width = out.shape[:2]
    boxes = as_boxes(boxes)
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
        keypoints = as_keypoints(keypoints)
        if keypoints.shape[0] != n:
            raise ValueError(f"draw_instances: {n} boxes but keypoints of "
                             f"{keypoints.shape[0]} instances (shape {keypoints.shape})")
        pairs = as_skeleton(skeleton, keypoints.shape[1])

    keep = np.arange(n)
    if scores is not None:
        keep = keep[scores >= score_threshold]
    if keep.size == 0:
        return out
    colors = color_palette(keep.size, seed=seed)

    # Masks first, all of them, so that no mask covers another instance's box or label.
    if masks is not None:
        # Blended in float32 on the masked pixels only: a full-image float copy of a
        # 10000 x 10000 photo would take 1.2 GB.
        covered = np.any(masks[keep], axis=0)
        blended = out[covered].astype(np.float32)
        for color, i in zip(colors, keep):
            m = masks[i][covered]
            blended[m] = (1.0 - alpha) * blended[m] + alpha * color.astype(np.float32)
        out[covered] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        for color, i in zip(colors, keep):
            contours, _ = cv2.findContours(
                masks[i].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
            )
            # A darker outline separates touching instances of similar colour.
            dark = color_tuple((color.astype(np.float32) * 0.6).astype(np.uint8))
            cv2.drawContours(out, contours, -1, dark, thickness=1)

    all_corners = [box_corners(boxes[i], height, width) for i in keep]
    if show_boxes:
        for color, corners in zip(colors, all_corners):
            if corners is not None:
                cv2.rectangle(out, corners[0], corners[1], color_tuple(color), thickness=1)
    if keypoints is not None:
        draw_poses(out, keypoints[keep], pairs, colors, keypoint_threshold,
                   keypoint_visibility, None, None)
    for color, i, corners in zip(colors, keep, all_corners):
        if corners is None:
            continue
        label = class_name(class_names, class_ids[i])
        if scores is not None:
            label = f"{label} {scores[i]:.2f}"
        draw_label(out, label, corners[0], color_tuple(color))
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
    out = as_rgb_copy(image)
    height, width = out.shape[:2]
    boxes = as_boxes(boxes)
    n = boxes.shape[0]
    if n == 0:
        return out
    color_array = instance_colors(colors, n, "draw_boxes")
    if labels is not None and len(labels) != n:
        raise ValueError(f"draw_boxes: {n} boxes but {len(labels)} labels")
    for i in range(n):
        corners = box_corners(boxes[i], height, width)
        if corners is None:
            continue
        color_t = color_tuple(color_array[i])
        cv2.rectangle(out, corners[0], corners[1], color_t, thickness=int(thickness))
        if labels is not None and labels[i]:
            draw_label(out, str(labels[i]), corners[0], color_t)
    return out
