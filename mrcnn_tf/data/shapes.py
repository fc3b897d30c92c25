"""Synthetic "shapes" dataset: squares, circles and triangles on a textured background.

A tiny instance-segmentation task that a small model learns on a CPU in minutes, used for
smoke tests, tutorials and the `shapes_tiny` experiment. Every example is a pure function of
`(index, seed)`: `numpy.random.default_rng((seed, index))` drives all choices, so example 17
is the same image in every process, worker and run, whatever was generated before it.

Examples have the common structure every dataset in `mrcnn_tf.data` yields
(`mrcnn_tf.data.schema`):

    image      uint8   [H, W, 3]  RGB
    boxes      float32 [N, 4]     (y1, x1, y2, x2) pixels, y2/x2 exclusive (tight box of mask)
    class_ids  int32   [N]        1..3, see `CLASS_NAMES` (0 is background, never used)
    masks      uint8   [N, H, W]  0/1, the *visible* part of each instance
    is_crowd   bool    [N]        always False here
    image_id   int64   []         the index

Shapes are drawn without antialiasing so that the masks are exactly the painted pixels. Later
shapes occlude earlier ones; a placement that would leave an earlier shape with less than
`MIN_VISIBLE_FRACTION` of its area (or fewer than ~20 px) is re-drawn elsewhere, so every
shape that appears in the image is labelled (an unlabelled, heavily occluded shape would teach
the model that shape pixels can be background).
"""

from __future__ import annotations

import math
import os
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import tensorflow as tf

from mrcnn_tf.data import schema

CLASS_NAMES = ("square", "circle", "triangle")

# Occlusion rule: an instance is kept only if this fraction of its full area stays visible...
MIN_VISIBLE_FRACTION = 0.3
# ...and at least this many pixels at 128 px (scaled with the image area).
MIN_VISIBLE_PIXELS_AT_128 = 20
# Shape size range at 128 px (side of a square or triangle, diameter of a circle).
SIZE_RANGE_AT_128 = (12.0, 48.0)
# Placement attempts per shape before giving up on it.
_MAX_ATTEMPTS = 60
# Minimum Euclidean RGB distance of a shape colour from the background base colour and from
# the colours of earlier shapes (max possible is ~441); the gradient varies the background by
# at most +-_GRADIENT_MAX per channel, so 110 keeps objects clearly visible everywhere.
_MIN_BG_CONTRAST = 110.0
_MIN_SHAPE_CONTRAST = 60.0
_GRADIENT_MAX = 25.0
# cv2 drawing with `shift` bits of sub-pixel precision, so sizes and positions are not
# quantized to whole pixels.
_SHIFT = 4


def _fixed_point(values: np.ndarray) -> np.ndarray:
    """Float pixel coordinates -> int32 fixed point for cv2's `shift` argument."""
    return np.round(np.asarray(values) * (1 << _SHIFT)).astype(np.int32)


def draw_shape_mask(kind: int, cy: float, cx: float, size: float, angle: float,
                     jitter: np.ndarray, image_size: int) -> np.ndarray:
    """Rasterizes one shape's full (unoccluded) mask.

    Args:
      kind: 0 square, 1 circle, 2 triangle (index into `CLASS_NAMES`).
      cy, cx: centre in pixels.
      size: side (square, triangle) or diameter (circle) in pixels.
      angle: rotation in radians (ignored for circles).
      jitter: [3] vertex angle offsets in radians for the triangle ("equilateral-ish").
      image_size: S, the canvas side.

    Returns:
      uint8 [S, S] 0/1 mask.
    """
    mask = np.zeros((image_size, image_size), np.uint8)
    if kind == 1:
        center = tuple(int(v) for v in _fixed_point([cx, cy]))
        radius = int(_fixed_point(size / 2.0))
        cv2.circle(mask, center, radius, 1, thickness=-1, lineType=cv2.LINE_8, shift=_SHIFT)
        return mask
    if kind == 0:
        radius = size / math.sqrt(2.0)  # circumradius of a square of side `size`
        angles = angle + np.pi / 4 + np.arange(4) * (np.pi / 2)
    else:
        radius = size / math.sqrt(3.0)  # circumradius of an equilateral triangle
        angles = angle + np.arange(3) * (2 * np.pi / 3) + jitter
    points = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=-1)
    cv2.fillPoly(mask, [_fixed_point(points)], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return mask


def circumradius(kind: int, size: float) -> float:
    return {0: size / math.sqrt(2.0), 1: size / 2.0, 2: size / math.sqrt(3.0)}[kind]


def _background(rng: np.random.Generator, image_size: int) -> tuple:
    """A random base colour plus a linear gradient in a random direction.

    Returns:
      (float32 [S, S, 3] background, float [3] base colour).
    """
    base = rng.uniform(0, 255, size=3)
    theta = rng.uniform(0, 2 * np.pi)
    amplitude = rng.uniform(-_GRADIENT_MAX, _GRADIENT_MAX, size=3)
    coords = (np.arange(image_size, dtype=np.float32) + 0.5) / image_size - 0.5  # -0.5..0.5
    ramp = np.cos(theta) * coords[None, :] + np.sin(theta) * coords[:, None]  # [S, S], |.|<0.71
    # Scale so the ramp spans at most +-amplitude whatever the direction.
    ramp = ramp / math.sqrt(0.5)
    background = base[None, None, :] + ramp[:, :, None] * amplitude[None, None, :]
    return background.astype(np.float32), base


def _pick_colour(rng: np.random.Generator, background: np.ndarray,
                 others: List[np.ndarray]) -> np.ndarray:
    """A colour far from the background and from earlier shapes' colours (float [3])."""
    candidates = rng.uniform(0, 255, size=(64, 3))
    score = np.linalg.norm(candidates - background, axis=1) / _MIN_BG_CONTRAST
    for other in others:
        score = np.minimum(score, np.linalg.norm(candidates - other, axis=1) / _MIN_SHAPE_CONTRAST)
    good = np.nonzero(score >= 1.0)[0]
    # With 64 candidates a good one almost always exists; otherwise take the best found.
    return candidates[good[0] if good.size else int(np.argmax(score))]


def tight_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight boxes of binary masks.

    Args:
      masks: [N, H, W] 0/1 (any dtype).

    Returns:
      float32 [N, 4] (y1, x1, y2, x2) with exclusive y2, x2; all zeros for an empty mask.
    """
    boxes = np.zeros((masks.shape[0], 4), np.float32)
    for i, mask in enumerate(masks):
        rows = np.nonzero(mask.any(axis=1))[0]
        cols = np.nonzero(mask.any(axis=0))[0]
        if rows.size:
            boxes[i] = (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)
    return boxes


def generate_shapes_example(index: int, seed: int = 0, image_size: int = 128,
                            min_shapes: int = 1, max_shapes: int = 4) -> Dict[str, np.ndarray]:
    """Generates one synthetic example, a pure function of `(index, seed)`.

    Args:
      index: example index >= 0; also the `image_id`.
      seed: dataset seed >= 0.
      image_size: S, side of the square image in pixels (sizes scale with S / 128).
      min_shapes, max_shapes: the number of shapes attempted is uniform in this range. A shape
        that cannot be placed without hiding too much of another is skipped after many
        attempts, which practically never happens with the defaults.

    Returns:
      dict of numpy arrays: image uint8 [S, S, 3], boxes float32 [N, 4], class_ids int32 [N],
      masks uint8 [N, S, S], is_crowd bool [N], image_id int64 [].
    """
    if index < 0 or seed < 0:
        raise ValueError(f"shapes example: index={index}, seed={seed}: expected both >= 0")
    if image_size < 16:
        raise ValueError(f"shapes example: image_size={image_size}: expected >= 16")
    if not 0 <= min_shapes <= max_shapes:
        raise ValueError(f"shapes example: min_shapes={min_shapes}, max_shapes={max_shapes}: "
                         "expected 0 <= min_shapes <= max_shapes")
    rng = np.random.default_rng((seed, index))
    scale = image_size / 128.0
    size_lo, size_hi = (v * scale for v in SIZE_RANGE_AT_128)
    min_pixels = max(4.0, MIN_VISIBLE_PIXELS_AT_128 * scale * scale)

    def propose(rng):
        kind = int(rng.integers(0, len(CLASS_NAMES)))
        size = rng.uniform(size_lo, size_hi)
        radius = circumradius(kind, size)
        # Keep the whole shape inside the image so "full area" is the true shape area.
        cy, cx = rng.uniform(radius, image_size - radius, size=2)
        angle = rng.uniform(0, 2 * np.pi)
        jitter = rng.uniform(-0.12, 0.12, size=3)
        return kind, draw_shape_mask(kind, cy, cx, size, angle, jitter, image_size)

    return paint_shapes(rng, image_size, (min_shapes, max_shapes), propose, min_pixels, index)


def paint_shapes(rng: np.random.Generator, image_size: int, shape_counts: Tuple[int, int],
                 propose: Callable[[np.random.Generator], Tuple[int, np.ndarray]],
                 min_pixels: float, index: int) -> Dict[str, np.ndarray]:
    """Paints shapes on a gradient background by the occlusion rule of the module docstring
    and returns the example (noise added).

    Args:
      rng: the example's generator (draws: background, shape count, then each placement).
      image_size: S.
      shape_counts: (min, max): the number of shapes attempted is uniform in this range.
      propose: rng -> (kind 0.., uint8 [S, S] full mask of a candidate placement).
      min_pixels: the fewest pixels a shape (and each earlier shape) must keep visible.
      index: the example's index, its image_id.
    Returns:
      the example dict of the module docstring, class_ids = kind + 1.
    """
    background, base_colour = _background(rng, image_size)
    image = background  # float32 [S, S, 3], painted in place below
    num_target = int(rng.integers(shape_counts[0], shape_counts[1] + 1))
    visible: List[np.ndarray] = []  # visible mask of each accepted shape (bool [S, S])
    full_areas: List[int] = []
    kinds: List[int] = []
    colours: List[np.ndarray] = []
    for _ in range(num_target):
        for _attempt in range(_MAX_ATTEMPTS):
            kind, full = propose(rng)
            full = full.astype(bool)
            area = int(full.sum())
            if area < min_pixels:
                continue
            # The new shape goes on top; every earlier shape must stay visible enough.
            remaining = [v & ~full for v in visible]
            if all(r.sum() >= max(MIN_VISIBLE_FRACTION * a, min_pixels)
                   for r, a in zip(remaining, full_areas)):
                break
        else:
            continue  # no acceptable placement: skip this shape
        colour = _pick_colour(rng, base_colour, colours)
        image[full] = colour
        visible = remaining + [full]
        full_areas.append(area)
        kinds.append(kind)
        colours.append(colour)

    return _finish_example(rng, image, visible, np.asarray(kinds, np.int32) + 1, index)


def _finish_example(rng: np.random.Generator, image: np.ndarray, visible: List[np.ndarray],
                    class_ids: np.ndarray, index: int) -> Dict[str, np.ndarray]:
    """Adds noise to a painted float image and packs the common example dict.

    Args:
      rng: the example's generator (the noise is its last draw).
      image: float32 [S, S, 3] painted image, modified in place.
      visible: N bool [S, S] visible masks, in instance order.
      class_ids: int32 [N].
      index: the example index, its `image_id`.

    Returns:
      the example dict described in the module docstring.
    """
    # Mild noise over everything (objects included) so edges are not perfectly flat colour.
    noise_sigma = rng.uniform(2.0, 6.0)
    image += noise_sigma * rng.standard_normal(size=image.shape, dtype=np.float32)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)

    n = len(visible)
    s = image.shape[0]
    masks = (np.stack(visible).astype(np.uint8) if n else np.zeros((0, s, s), np.uint8))
    return {
        schema.IMAGE: image,
        schema.BOXES: tight_boxes(masks),
        schema.CLASS_IDS: class_ids,
        schema.MASKS: masks,
        schema.IS_CROWD: np.zeros((n,), bool),
        schema.IMAGE_ID: np.int64(index),
    }


def make_shapes_arrays(num_images: int, seed: int = 0, image_size: int = 128,
                       min_shapes: int = 1, max_shapes: int = 4,
                       start: int = 0) -> List[Dict[str, np.ndarray]]:
    """Examples `start .. start + num_images - 1` as a list of numpy dicts (see module doc)."""
    return [generate_shapes_example(i, seed, image_size, min_shapes, max_shapes)
            for i in range(start, start + num_images)]


def shapes_output_signature(image_size: int = 128) -> Dict[str, tf.TensorSpec]:
    """The `tf.TensorSpec` of one example: S x S images; N (instances) is dynamic."""
    return schema.example_signature(image_size=image_size)


def shapes_dataset(num_images: int, seed: int = 0, image_size: int = 128,
                   min_shapes: int = 1, max_shapes: int = 4) -> tf.data.Dataset:
    """A finite `tf.data.Dataset` of examples 0 .. num_images - 1.

    Element structure (see `shapes_output_signature`): image uint8 [S, S, 3], boxes float32
    [N, 4], class_ids int32 [N], masks uint8 [N, S, S], is_crowd bool [N], image_id int64 [].
    Examples are generated on the fly in Python (about a millisecond each at 128 px) by
    `tf.numpy_function` inside a parallel, order-preserving map: numpy and OpenCV release the
    GIL for much of the work, so this is ~1.5x faster than `from_generator` on 2 cores.
    Iterating twice gives identical data and nothing is held in memory.
    """
    if num_images < 0:
        raise ValueError(f"shapes_dataset: num_images={num_images}: expected >= 0")
    return generated_dataset(
        num_images, shapes_output_signature(image_size),
        lambda index: generate_shapes_example(index, seed, image_size, min_shapes, max_shapes))


def generated_dataset(num_images: int, signature: Dict[str, tf.TensorSpec],
                       generate_example: Callable[[int], Dict[str, np.ndarray]]
                       ) -> tf.data.Dataset:
    """Examples 0 .. num_images - 1 of `generate_example(index)`, generated on the fly.

    Args:
      num_images: dataset length, >= 0.
      signature: the `tf.TensorSpec` of every field `generate_example` returns.
      generate_example: index -> numpy example dict, a pure function of the index.
    """
    keys = list(signature)

    def generate(index):
        example = generate_example(int(index))
        return [example[k] for k in keys]

    def load(index):
        values = tf.numpy_function(generate, [index], [signature[k].dtype for k in keys],
                                   stateful=False)
        # numpy_function forgets shapes; restore them (and check them) from the signature.
        return {k: tf.ensure_shape(v, signature[k].shape) for k, v in zip(keys, values)}

    return tf.data.Dataset.range(num_images).map(
        load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def crop_example(example: Dict[str, np.ndarray], height: int, width: int
                 ) -> Dict[str, np.ndarray]:
    """The top-left `height` x `width` of an example (a landscape or portrait image from a
    square one): masks cropped, instances left empty dropped, boxes recomputed from the
    masks."""
    masks = example[schema.MASKS][:, :height, :width]
    keep = masks.reshape(len(masks), -1).any(axis=1)
    masks = masks[keep]
    return dict(example, **{schema.IMAGE: example[schema.IMAGE][:height, :width],
                            schema.MASKS: masks, schema.BOXES: tight_boxes(masks),
                            schema.CLASS_IDS: example[schema.CLASS_IDS][keep],
                            schema.IS_CROWD: example[schema.IS_CROWD][keep]})


def write_shapes_coco(out_dir: str, num_images: int, seed: int = 0, image_size: int = 128,
                      min_shapes: int = 1, max_shapes: int = 4,
                      sizes: Optional[Sequence[Tuple[int, int]]] = None) -> Tuple[str, str]:
    """Writes synthetic shapes as a COCO-format dataset: PNG images and an annotations JSON
    (masks as RLE), the layout users bring from COCO, CVAT or Roboflow.

    Args:
      sizes: optional (height, width) per image, each at most image_size: the images are the
        top-left crops of that size (`crop_example`), for sets of mixed orientations.
    Returns:
      (annotations_path, images_dir): out_dir/annotations.json and out_dir/images.
    """
    # Imported here: the COCO glue pulls in pycocotools, which shapes alone does not need.
    from mrcnn_tf.data.coco_writer import write_coco_json
    from mrcnn_tf.labels import LabelMap

    if sizes is not None and len(sizes) != num_images:
        raise ValueError(f"sizes: {len(sizes)} sizes for {num_images} images; expected one "
                         "(height, width) per image")

    def example(index):
        generated = generate_shapes_example(index, seed, image_size, min_shapes, max_shapes)
        return generated if sizes is None else crop_example(generated, *sizes[index])

    images_dir, examples = _write_example_images(
        out_dir, "shapes", (example(index) for index in range(num_images)))
    annotations_path = os.path.join(out_dir, "annotations.json")
    write_coco_json(examples, LabelMap.from_names(CLASS_NAMES), annotations_path)
    return annotations_path, images_dir


def _write_example_images(out_dir: str, prefix: str, examples: Iterable[Dict[str, np.ndarray]]
                          ) -> Tuple[str, List[Dict[str, np.ndarray]]]:
    """Writes each example's image as out_dir/images/{prefix}_{image_id:06d}.png (atomically)
    and records that name in the example's "file_name".

    Returns:
      (images_dir, the examples as a list).
    """
    from mrcnn_tf.io_utils import write_png_atomic

    images_dir = os.path.join(out_dir, "images")
    os.makedirs(images_dir, exist_ok=True)
    written = []
    for example in examples:
        example["file_name"] = f"{prefix}_{int(example[schema.IMAGE_ID]):06d}.png"
        write_png_atomic(os.path.join(images_dir, example["file_name"]), example[schema.IMAGE])
        written.append(example)
    return images_dir, written
