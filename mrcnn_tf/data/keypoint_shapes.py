"""Synthetic "keypoint shapes" dataset: houses with six named keypoints among clutter.

The keypoint counterpart of `mrcnn_tf.data.shapes`: a task small enough that a tiny Keypoint
R-CNN learns it on a CPU in minutes, for smoke tests, tutorials and keypoint experiments. One
object class, a "house": a rectangular body (width / height in 0.8..1.25) under a triangular
roof, rotated by up to +-25 degrees about the body's centre, 24..56 px from roof apex to base
at 128 px (sizes scale with the image). Its keypoints, in `KEYPOINT_NAMES` order:

    0 roof        the roof apex
    1 left_eave   where roof meets body, image-left side of the unrotated house (smaller x)
    2 right_eave
    3 left_base   bottom corners of the body
    4 right_base
    5 centre      the centre of the body (the rotation centre)

Each image has 1..3 houses and 0..2 unlabelled distractors (plain squares and circles of other
colours) in a random stacking order; distractors are background clutter that may hide parts of
houses. Every example is a pure function of `(index, seed)` through
`numpy.random.default_rng((seed, index))`, as in `shapes`.

Examples have the common structure of `mrcnn_tf.data` (`mrcnn_tf.data.schema`), plus
keypoints:

    image      uint8   [H, W, 3]  RGB
    boxes      float32 [N, 4]     (y1, x1, y2, x2), y2/x2 exclusive: tight box of the mask
    class_ids  int32   [N]        always 1 ("house")
    masks      uint8   [N, H, W]  0/1, the *visible* part of each house
    is_crowd   bool    [N]        always False
    image_id   int64   []         the index
    keypoints  float32 [N, 6, 3]  (y, x, v), see `mrcnn_tf.keypoint_spec`

Keypoint conventions (those of `mrcnn_tf.keypoint_spec`): (y, x) are continuous pixel
coordinates, pixel i covering [i, i + 1); they are the exact geometric points the house
polygon is rasterized from (no rounding). v is COCO's visibility:
- 0: the point lies outside the image; then y = x = 0.
- 1: labelled but occluded: a later shape (house or distractor) covers the point's pixel, or no
  pixel of the house's visible mask lies within 1 px of it.
- 2: visible: not covered, and the house's visible mask has a pixel within 1 px (a corner
  point sits on the polygon's edge, so its own pixel may fall just outside the rasterized
  mask).

Occlusion follows `shapes`: later shapes hide earlier ones, and a placement that would leave a
house with less than `MIN_VISIBLE_FRACTION` of its full area visible (inside the image and not
covered) is re-drawn elsewhere, so every house in the image is labelled.
"""

from __future__ import annotations

import math
import os
from typing import Dict, List, Tuple

import cv2
import numpy as np
import tensorflow as tf

from mrcnn_tf.data.shapes import (
    _SHIFT,
    MIN_VISIBLE_FRACTION,
    MIN_VISIBLE_PIXELS_AT_128,
    _background,
    _finish_example,
    _fixed_point,
    _pick_colour,
    _write_example_images,
    circumradius,
    draw_shape_mask,
    generated_dataset,
)
from mrcnn_tf import keypoint_spec
from mrcnn_tf.data import schema

CLASS_NAMES = ("house",)
# The keypoint set lives in keypoint_spec (the config presets, which import no TensorFlow,
# need it too): roof, left_eave, right_eave, left_base, right_base, centre.
KEYPOINT_NAMES = keypoint_spec.HOUSE_KEYPOINT_NAMES
NUM_KEYPOINTS = len(KEYPOINT_NAMES)
# Flat 0-based pairs: the roof's two slopes, the eave line, the two walls, the base.
SKELETON = keypoint_spec.HOUSE_SKELETON
# One sigma for all: every keypoint is an exact geometric corner or centre (COCO's differ
# because a hip is harder to place than an eye), so the only label noise is the <= 0.5 px of
# integer COCO files. 0.05 lies between COCO's eyes (0.025) and shoulders (0.079): on a house of
# ~900 px area an error of 1.5 px keeps OKS ~0.88 and 3 px drops it to ~0.6, so the metric
# separates sub-pixel heatmap decoding from a merely nearby peak.
OKS_SIGMAS = keypoint_spec.HOUSE_OKS_SIGMAS

# Roof apex to base of the unrotated house at 128 px.
HOUSE_HEIGHT_RANGE_AT_128 = (24.0, 56.0)
# Body width / body height, drawn log-uniformly so wide and tall bodies are equally likely.
BODY_ASPECT_RANGE = (0.8, 1.25)
# Roof height / total height.
ROOF_FRACTION_RANGE = (0.3, 0.45)
# Largest rotation; small enough that "left" and "roof above base" keep their meaning.
MAX_ANGLE_DEGREES = 25.0
# Distractor size at 128 px (side of a square, diameter of a circle).
DISTRACTOR_SIZE_RANGE_AT_128 = (10.0, 32.0)
HOUSES_PER_IMAGE = (1, 3)
DISTRACTORS_PER_IMAGE = (0, 2)
# Body centres are drawn in [margin, S - margin] with margin = this fraction of S: most houses
# are whole, some are cut by the image border (their outside keypoints get v = 0).
_CENTRE_MARGIN_FRACTION = 0.12
_MAX_ATTEMPTS = 60
# Outline of the house polygon as keypoint indices: roof, right eave, right base, left base,
# left eave (convex, so fillPoly draws it exactly).
_OUTLINE = (0, 2, 4, 3, 1)


def _house_points(cy: float, cx: float, body_h: float, body_w: float, roof_h: float,
                  angle: float) -> np.ndarray:
    """The six keypoints of a house, float64 [6, 2] (y, x) continuous pixels.

    Args:
      cy, cx: centre of the body, which is also the rotation centre.
      body_h, body_w: body height and width; roof_h: apex height above the eaves.
      angle: rotation in radians (positive turns +x towards +y, i.e. clockwise on screen).
    """
    top, half_w = -body_h / 2.0, body_w / 2.0
    # Unrotated offsets (dy, dx) from the body centre, in KEYPOINT_NAMES order.
    local = np.array([
        (top - roof_h, 0.0), (top, -half_w), (top, half_w),
        (-top, -half_w), (-top, half_w), (0.0, 0.0),
    ])
    cos, sin = math.cos(angle), math.sin(angle)
    dy, dx = local[:, 0], local[:, 1]
    return np.stack([cy + dx * sin + dy * cos, cx + dx * cos - dy * sin], axis=-1)


def _draw_house_mask(points: np.ndarray, image_size: int) -> np.ndarray:
    """Rasterizes a house's full mask from its keypoints [6, 2] (y, x); bool [S, S]."""
    mask = np.zeros((image_size, image_size), np.uint8)
    # cv2 puts pixel centres at integers, this library at i + 0.5: shifting by half a pixel makes
    # the polygon's vertices the keypoints themselves. cv2 wants (x, y).
    outline = points[list(_OUTLINE), ::-1] - 0.5
    cv2.fillPoly(mask, [_fixed_point(outline)], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return mask.astype(bool)


def _random_house(rng: np.random.Generator, image_size: int) -> Tuple[np.ndarray, float]:
    """A random house: (keypoints float64 [6, 2] (y, x), exact polygon area in pixels)."""
    scale = image_size / 128.0
    height = rng.uniform(*HOUSE_HEIGHT_RANGE_AT_128) * scale
    roof_h = height * rng.uniform(*ROOF_FRACTION_RANGE)
    body_h = height - roof_h
    body_w = body_h * math.exp(rng.uniform(*np.log(BODY_ASPECT_RANGE)))
    angle = math.radians(rng.uniform(-MAX_ANGLE_DEGREES, MAX_ANGLE_DEGREES))
    margin = _CENTRE_MARGIN_FRACTION * image_size
    cy, cx = rng.uniform(margin, image_size - margin, size=2)
    area = body_w * (body_h + roof_h / 2.0)
    return _house_points(cy, cx, body_h, body_w, roof_h, angle), area


def _random_distractor(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """A random plain square or circle (kinds 0 and 1 of `shapes`), wholly inside the image;
    bool [S, S] mask."""
    kind = int(rng.integers(0, 2))
    size = rng.uniform(*DISTRACTOR_SIZE_RANGE_AT_128) * (image_size / 128.0)
    radius = circumradius(kind, size)
    cy, cx = rng.uniform(radius, image_size - radius, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    return draw_shape_mask(kind, cy, cx, size, angle, np.zeros(3), image_size).astype(bool)


def _visibility(points: np.ndarray, visible: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """(y, x, v) rows of one house's keypoints, float32 [6, 3] (rule in the module docstring).

    Args:
      points: float64 [6, 2] (y, x).
      visible: bool [S, S], the house's visible mask.
      covered: bool [S, S], the union of the full masks of every shape drawn after it.
    """
    size_y, size_x = visible.shape
    rows = np.zeros((len(points), 3), np.float32)
    for k, (y, x) in enumerate(points):
        if not (0.0 <= y < size_y and 0.0 <= x < size_x):
            continue  # outside the image: not labelled, (0, 0, 0)
        r, c = int(math.floor(y)), int(math.floor(x))
        near = visible[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].any()
        rows[k] = (y, x, 2.0 if near and not covered[r, c] else 1.0)
    return rows


def _check_arguments(where: str, index: int, seed: int, image_size: int) -> None:
    if index < 0 or seed < 0:
        raise ValueError(f"{where}: index={index}, seed={seed}: expected both >= 0")
    if image_size < 32:
        raise ValueError(f"{where}: image_size={image_size}: expected >= 32 (houses would be "
                         "too small for six distinct keypoints)")


def _generate_with_full_masks(index: int, seed: int = 0, image_size: int = 128
                              ) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """`generate_keypoint_example` plus each house's full (unoccluded) mask, bool [N, S, S]."""
    _check_arguments("keypoint shapes example", index, seed, image_size)
    rng = np.random.default_rng((seed, index))
    s = image_size
    min_pixels = max(4.0, MIN_VISIBLE_PIXELS_AT_128 * (s / 128.0) ** 2)

    image, base_colour = _background(rng, s)  # float32 [S, S, 3], painted in place below
    num_houses = int(rng.integers(HOUSES_PER_IMAGE[0], HOUSES_PER_IMAGE[1] + 1))
    num_distractors = int(rng.integers(DISTRACTORS_PER_IMAGE[0], DISTRACTORS_PER_IMAGE[1] + 1))
    # Stacking order, bottom first: True = house, False = distractor.
    order = rng.permutation([True] * num_houses + [False] * num_distractors)

    fulls: List[np.ndarray] = []  # full mask of every shape drawn, bottom first
    houses: List[Tuple[int, np.ndarray, np.ndarray, float]] = []  # (layer, points, visible, area)
    colours: List[np.ndarray] = []
    for is_house in order:
        for _attempt in range(_MAX_ATTEMPTS):
            if is_house:
                points, area = _random_house(rng, s)
                full = _draw_house_mask(points, s)
                # The border may cut a house: what is inside must pass the occlusion rule too.
                if full.sum() < max(MIN_VISIBLE_FRACTION * area, min_pixels):
                    continue
            else:
                full = _random_distractor(rng, s)
            # The new shape goes on top: every house below must stay visible enough.
            if all((vis & ~full).sum() >= max(MIN_VISIBLE_FRACTION * a, min_pixels)
                   for _, _, vis, a in houses):
                break
        else:
            continue  # no acceptable placement: leave this shape out
        houses = [(layer, p, vis & ~full, a) for layer, p, vis, a in houses]
        if is_house:
            houses.append((len(fulls), points, full, area))
        fulls.append(full)
        colour = _pick_colour(rng, base_colour, colours)
        image[full] = colour
        colours.append(colour)

    # covered_above[i]: union of the full masks of shapes i + 1, i + 2, ... (drawn over i).
    covered_above = [np.zeros((s, s), bool)] * len(fulls)
    for i in range(len(fulls) - 2, -1, -1):
        covered_above[i] = covered_above[i + 1] | fulls[i + 1]
    keypoints = np.zeros((len(houses), NUM_KEYPOINTS, 3), np.float32)
    for n, (layer, points, vis, _) in enumerate(houses):
        keypoints[n] = _visibility(points, vis, covered_above[layer])

    example = _finish_example(rng, image, [vis for _, _, vis, _ in houses],
                              np.ones((len(houses),), np.int32), index)
    example[schema.KEYPOINTS] = keypoints
    full_masks = (np.stack([fulls[layer] for layer, _, _, _ in houses]) if houses
                  else np.zeros((0, s, s), bool))
    return example, full_masks


def generate_keypoint_example(index: int, seed: int = 0,
                              image_size: int = 128) -> Dict[str, np.ndarray]:
    """Generates one example, a pure function of `(index, seed)`.

    Args:
      index: example index >= 0; also the `image_id`.
      seed: dataset seed >= 0.
      image_size: S >= 32, side of the square image in pixels (sizes scale with S / 128).

    Returns:
      dict of numpy arrays: image uint8 [S, S, 3], boxes float32 [N, 4], class_ids int32 [N],
      masks uint8 [N, S, S], is_crowd bool [N], image_id int64 [], keypoints float32
      [N, 6, 3] (y, x, v). N is 1..3 (a house that cannot be placed is left out, which
      practically never happens).

    Raises:
      ValueError: for a negative index or seed, or image_size < 32.
    """
    return _generate_with_full_masks(index, seed, image_size)[0]


def make_keypoint_arrays(num_images: int, seed: int = 0,
                         image_size: int = 128) -> List[Dict[str, np.ndarray]]:
    """Examples 0 .. num_images - 1 as a list of numpy dicts (see `generate_keypoint_example`)."""
    if num_images < 0:
        raise ValueError(f"make_keypoint_arrays: num_images={num_images}: expected >= 0")
    return [generate_keypoint_example(i, seed, image_size) for i in range(num_images)]


def keypoint_output_signature(image_size: int = 128) -> Dict[str, tf.TensorSpec]:
    """The `tf.TensorSpec` of one example: S x S images, 6 keypoints; N (houses) is dynamic."""
    return schema.example_signature(NUM_KEYPOINTS, image_size=image_size)


def keypoint_shapes_dataset(num_images: int, seed: int = 0,
                            image_size: int = 128) -> tf.data.Dataset:
    """A finite `tf.data.Dataset` of examples 0 .. num_images - 1, generated on the fly.

    Element structure (see `keypoint_output_signature`): image uint8 [S, S, 3], boxes float32
    [N, 4], class_ids int32 [N], masks uint8 [N, S, S], is_crowd bool [N], image_id int64 [],
    keypoints float32 [N, 6, 3]. Built like `shapes.shapes_dataset`: deterministic, iterating
    twice gives identical data, nothing is held in memory.
    """
    if num_images < 0:
        raise ValueError(f"keypoint_shapes_dataset: num_images={num_images}: expected >= 0")
    _check_arguments("keypoint_shapes_dataset", 0, seed, image_size)
    return generated_dataset(num_images, keypoint_output_signature(image_size),
                              lambda index: generate_keypoint_example(index, seed, image_size))


def _coco_keypoints(rows: np.ndarray) -> List[int]:
    """float [K, 3] (y, x, v) continuous -> COCO's flat [x, y, v] * K integer pixel indices.

    A COCO file stores the index of the pixel a point lies in (readers add 0.5), so this is
    floor; unlabelled points are written 0, 0, 0.
    """
    flat: List[int] = []
    for y, x, v in rows:
        flat.extend((0, 0, 0) if v == 0 else (math.floor(x), math.floor(y), int(v)))
    return flat


def write_keypoint_shapes_coco(out_dir: str, num_images: int, seed: int = 0,
                               image_size: int = 128) -> Tuple[str, str]:
    """Writes the dataset as a COCO person_keypoints-style folder: PNG images and an
    annotations JSON whose category carries "keypoints" (names) and "skeleton" (1-based pairs),
    and whose annotations carry "segmentation" (RLE), "bbox" [x, y, w, h], "area", "iscrowd",
    "keypoints" [x, y, v] * 6 (integer pixel indices) and "num_keypoints" (labelled count).
    Every file is written atomically.

    Returns:
      (annotations_path, images_dir): out_dir/annotations.json and out_dir/images.
    """
    # Imported here: the COCO glue pulls in pycocotools, which generating examples does not need.
    from mrcnn_tf.data.coco_writer import coco_ground_truth_dict
    from mrcnn_tf.labels import LabelMap
    from mrcnn_tf.io_utils import write_json_atomic

    if num_images < 0:
        raise ValueError(f"write_keypoint_shapes_coco: num_images={num_images}: expected >= 0")
    _check_arguments("write_keypoint_shapes_coco", 0, seed, image_size)
    images_dir, examples = _write_example_images(
        out_dir, "keypoint_shapes",
        (generate_keypoint_example(index, seed, image_size) for index in range(num_images)))
    dataset = coco_ground_truth_dict(examples, LabelMap.from_names(CLASS_NAMES),
                                     KEYPOINT_NAMES, SKELETON)
    dataset["categories"][0]["supercategory"] = "house"
    # coco_ground_truth_dict writes continuous coordinates minus 0.5; a COCO file holds the
    # integer index of the pixel each point lies in. It emits one annotation per instance,
    # examples and instances in order.
    rows = [row for example in examples for row in example[schema.KEYPOINTS]]
    for annotation, row in zip(dataset["annotations"], rows, strict=True):
        annotation["keypoints"] = _coco_keypoints(row)
    annotations_path = os.path.join(out_dir, "annotations.json")
    write_json_atomic(annotations_path, dataset)
    return annotations_path, images_dir
