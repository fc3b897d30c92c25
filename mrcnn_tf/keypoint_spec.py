"""What a keypoint set is: names, the skeleton drawn between them, OKS sigmas, and the
left/right swap of a horizontal flip.

Python and NumPy (no TensorFlow), shared by the config, the data readers, the pipeline, evaluation
and drawing.

Conventions used everywhere in mrcnn_tf:
- a keypoint is (y, x, v) in continuous image pixels: pixel i covers [i, i + 1), so its centre
  is i + 0.5. COCO files store integer pixel indices (x, y, v); readers add 0.5 and COCO
  results subtract it again (Detectron2's rule).
- v is COCO's visibility: 0 not labelled, 1 labelled but occluded, 2 labelled and visible.
  Every labelled keypoint (v > 0) trains.
- predictions are (y, x, score), the score being the heatmap's peak probability.
- the skeleton is a flat tuple of 0-based index pairs (a0, b0, a1, b1, ...), so it is a plain
  value that a frozen config and JSON carry; COCO categories give 1-based [[a, b], ...] pairs.
"""

from __future__ import annotations

import re
from typing import Iterable, List, Sequence, Tuple

import numpy as np

# COCO person keypoints (person_keypoints_*.json), in the file's order.
COCO_PERSON_KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
# COCO's limb pairs (categories[0]["skeleton"], 1-based in the file), here 0-based and flat.
COCO_PERSON_SKELETON = (
    15, 13, 13, 11, 16, 14, 14, 12, 11, 12, 5, 11, 6, 12, 5, 6, 5, 7, 6, 8, 7, 9, 8, 10,
    1, 2, 0, 1, 0, 2, 1, 3, 2, 4, 3, 5, 4, 6,
)
# Per-keypoint OKS sigmas of the COCO keypoint benchmark (pycocotools' kpt_oks_sigmas).
COCO_PERSON_OKS_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107,
    0.107, 0.087, 0.087, 0.089, 0.089,
)

# The synthetic "house" of mrcnn_tf.data.keypoint_shapes (the shapes_keypoints_tiny preset):
# roof apex, the eaves, the bottom corners and the body's centre; limbs along the outline. One
# sigma for all: see keypoint_shapes for why 0.05.
HOUSE_KEYPOINT_NAMES = ("roof", "left_eave", "right_eave", "left_base", "right_base", "centre")
HOUSE_SKELETON = (0, 1, 0, 2, 1, 2, 1, 3, 2, 4, 3, 4)
HOUSE_OKS_SIGMAS = (0.05,) * len(HOUSE_KEYPOINT_NAMES)

# A side word in a keypoint name: "left_eye", "eye_left", "Left Eye", "l_eye", "eye.R".
_SIDE = re.compile(r"(^|[^a-z])(left|right|l|r)($|[^a-z])")
_OTHER_SIDE = {"left": "right", "right": "left", "l": "r", "r": "l"}


def mirrored_name(name: str) -> str:
    """The name of the keypoint that a horizontal flip turns `name` into ("left_eye" ->
    "right_eye"); a name without a side word ("nose", "centre") is its own mirror.

    Matching is case-insensitive and keeps the original case of the rest of the name.
    """
    lowered = name.lower()
    match = _SIDE.search(lowered)
    if match is None:
        return name
    start, end = match.span(2)
    side = name[start:end]
    other = _OTHER_SIDE[side.lower()]
    if side.isupper():
        other = other.upper()
    elif side[0].isupper():
        other = other.capitalize()
    return name[:start] + other + name[end:]


def flip_permutation(names: Sequence[str]) -> Tuple[int, ...]:
    """Keypoint order after a horizontal flip: flipped[k] = original[perm[k]].

    Each name with a side word is paired with the name of the other side; the pairing must be
    complete (a "left_x" without its "right_x" is an error, since a flipped image would then
    carry a left keypoint where the right one is).

    Args:
      names: the K keypoint names.
    Returns:
      K indices, a permutation of 0..K-1 (an involution).
    Raises:
      ValueError: naming the keypoint whose mirror is missing or a duplicated name.
    """
    names = list(names)
    index = {}
    for k, name in enumerate(names):
        if name in index:
            raise ValueError(f"keypoint_names: {name!r} appears twice; expected unique names")
        index[name] = k
    perm = []
    for name in names:
        mirror = mirrored_name(name)
        if mirror not in index:
            raise ValueError(f"keypoint_names: {name!r} has no mirror {mirror!r}; a horizontal "
                             "flip needs both sides of every left/right keypoint")
        perm.append(index[mirror])
    return tuple(perm)


def skeleton_from_coco(pairs: Iterable[Sequence[int]], num_keypoints: int,
                       source: str = "skeleton") -> Tuple[int, ...]:
    """COCO's 1-based [[a, b], ...] limb pairs -> the flat 0-based tuple used here.

    Raises:
      ValueError: naming `source` for a pair that is not two indices in 1..num_keypoints.
    """
    flat: List[int] = []
    for pair in pairs:
        if len(pair) != 2 or not all(isinstance(i, int) and 1 <= i <= num_keypoints
                                     for i in pair):
            raise ValueError(f"{source}: limb {list(pair)!r}: expected two keypoint numbers in "
                             f"1..{num_keypoints} (COCO counts keypoints from 1)")
        flat.extend((pair[0] - 1, pair[1] - 1))
    return tuple(flat)


def keypoints_from_coco(values: Sequence[float], num_keypoints: int) -> np.ndarray:
    """A COCO annotation's flat [x1, y1, v1, ...] (integer pixel indices) -> float32 [K, 3]
    (y, x, v) in continuous pixels: labelled keypoints move to their pixel's centre (+0.5),
    unlabelled ones (v = 0) are all zero."""
    xyv = np.asarray(values, np.float32).reshape(num_keypoints, 3)
    labelled = xyv[:, 2:3] > 0
    yx = np.where(labelled, xyv[:, 1::-1] + 0.5, 0.0)
    return np.concatenate([yx, xyv[:, 2:3]], axis=1).astype(np.float32)


def keypoints_to_coco(keypoints) -> np.ndarray:
    """float [..., K, 3] (y, x, third) continuous pixels -> float64 [..., 3 K] COCO rows
    (x - 0.5, y - 0.5, third): the inverse of `keypoints_from_coco` for labelled keypoints
    (Detectron2 writes its results this way, the third value being the score)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    coco = np.stack([kp[..., 1] - 0.5, kp[..., 0] - 0.5, kp[..., 2]], axis=-1)
    return coco.reshape(kp.shape[:-2] + (3 * kp.shape[-2],))


def skeleton_to_coco(skeleton: Sequence[int]) -> List[List[int]]:
    """The flat 0-based skeleton -> COCO's 1-based [[a, b], ...] limb pairs (the inverse of
    `skeleton_from_coco`)."""
    return [[a + 1, b + 1] for a, b in skeleton_pairs(skeleton)]


def skeleton_pairs(skeleton: Sequence[int]) -> List[Tuple[int, int]]:
    """The flat 0-based skeleton as a list of (a, b) pairs."""
    return [(int(skeleton[i]), int(skeleton[i + 1])) for i in range(0, len(skeleton) - 1, 2)]


def default_oks_sigmas(names: Sequence[str]) -> Tuple[float, ...]:
    """COCO's sigmas for COCO's person keypoints; otherwise an error, since OKS needs one
    sigma per keypoint type and there is no neutral value for someone else's keypoints.

    Raises:
      ValueError: naming config.keypoint_oks_sigmas, which must then be set.
    """
    if tuple(names) == COCO_PERSON_KEYPOINT_NAMES:
        return COCO_PERSON_OKS_SIGMAS
    raise ValueError(f"keypoint_oks_sigmas: expected {len(names)} sigmas for the keypoints "
                     f"{list(names)} (COCO's are known only for its 17 person keypoints); "
                     "set config.keypoint_oks_sigmas")
