"""Poses: a dot per keypoint and a line per skeleton limb, for predictions and ground truth.

Keypoints are (y, x, score) or ground-truth (y, x, v) in continuous pixels (pixel i covers
[i, i + 1), see `mrcnn_tf.keypoint_spec`), so a keypoint at 12.5 is drawn centred on pixel 12.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from mrcnn_tf import keypoint_spec
from mrcnn_tf.visualize.canvas import as_rgb_copy
from mrcnn_tf.visualize.colors import color_tuple, instance_colors

# Predicted keypoint scores are softmax peak probabilities over a 56 x 56 heatmap: a uniform
# map gives 1 / 3136 ~ 0.0003 per cell, a well-localized peak ~0.1-0.5. 0.05 (150 times the
# uniform value) hides the keypoints the head has no idea about and keeps the plausible ones.
KEYPOINT_SCORE_THRESHOLD = 0.05
# Keypoints farther than this from the origin are not drawn: OpenCV's sub-pixel drawing works
# in int32 fixed point (coordinate * 2**_SHIFT), which such values would overflow.
_MAX_COORD = 2.0**20
_SHIFT = 4


def as_keypoints(keypoints, what: str = "keypoints") -> np.ndarray:
    """float64 [n, K, 3] (y, x, score or visibility), or a ValueError naming `what`."""
    kps = np.asarray(keypoints, dtype=np.float64)
    if kps.ndim != 3 or kps.shape[2] != 3:
        raise ValueError(f"{what} must have shape [n, K, 3] (y, x, score or visibility), got "
                         f"{kps.shape}")
    return kps


def as_skeleton(skeleton, num_keypoints: int) -> list[tuple[int, int]]:
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


def draw_poses(
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
    color_tuples = [color_tuple(c) for c in colors]

    # All limbs before any dot, so that no instance's limb hides another's keypoint.
    for i, color in enumerate(color_tuples):
        for a, b in pairs:
            if shown[i, a] and shown[i, b]:
                cv2.line(out, tuple(points[i, a].tolist()), tuple(points[i, b].tolist()),
                         color, thickness, cv2.LINE_AA, _SHIFT)
    for i, color in enumerate(color_tuples):
        # A darker rim keeps a dot visible on its own limbs and on a tinted mask.
        dark = color_tuple((colors[i].astype(np.float32) * 0.6).astype(np.uint8))
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
    out = as_rgb_copy(image)
    kps = as_keypoints(keypoints)
    pairs = as_skeleton(skeleton, kps.shape[1])
    colors = instance_colors(colors, kps.shape[0], "draw_keypoints", seed=seed)
    draw_poses(out, kps, pairs, colors, score_threshold, visibility, radius, thickness)
    return out
