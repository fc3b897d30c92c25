"""Checks one example (numpy) before it enters the tf.data graph.

Inside the graph a wrong shape surfaces as an opaque op error many steps later, or not at all
(a box with x2 < x1 just trains badly). Readers call `validate_example` on every example they
produce, so a bad file or annotation fails early with a message that names where it came from
(`source`: file, index, annotation id), the field, and what was expected.

The example structure is `mrcnn_tf.data.schema`'s. Beyond it the validator accepts, and
normalizes to it: a uint8 image of [H, W] grayscale, [H, W, 1] or [H, W, 4] RGBA; boxes of any
number dtype, class_ids of any integer dtype, masks of bool or any 0/1 number dtype; no
is_crowd (all False then). Keypoints are optional: a crowd region or an instance without
keypoints has all v = 0, and an example without the field has no keypoint labels at all (it is
not added).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import numpy as np

from mrcnn_tf.data import schema


def _fail(source: str, field: str, expected: str, got: Any) -> None:
    raise ValueError(f"{source}: field '{field}': expected {expected}, got {got}")


def to_rgb(image: np.ndarray, source: str = "image") -> np.ndarray:
    """Converts a decoded image to 3-channel RGB.

    Args:
      image: uint8 [H, W] (grayscale), [H, W, 1], [H, W, 3] (returned as is) or [H, W, 4]
        (RGBA: alpha is dropped, not composited, as the pixels under it are the content).
      source: named in the error message.

    Returns:
      uint8 [H, W, 3].

    Raises:
      ValueError: for any other rank or channel count.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3:
        channels = image.shape[2]
        if channels == 3:
            return image
        if channels == 1:
            return np.repeat(image, 3, axis=2)
        if channels == 4:
            return np.ascontiguousarray(image[:, :, :3])
    _fail(source, schema.IMAGE, "shape [H, W, 3] RGB (or [H, W] gray, [H, W, 1], [H, W, 4] RGBA)",
          f"shape {image.shape}")


def _validate_keypoints(value: Any, num: int, num_keypoints: Optional[int],
                        source: str) -> np.ndarray:
    """keypoints [N, K, 3] (y, x, v) -> float32 with y = x = 0 where v = 0 (see module doc)."""
    keypoints = np.asarray(value)
    if keypoints.size == 0 and keypoints.ndim != 3 and num_keypoints:
        keypoints = keypoints.reshape(0, num_keypoints, 3)  # [] from an image without objects
    k = "K" if num_keypoints is None else num_keypoints
    if (keypoints.ndim != 3 or keypoints.shape[0] != num or keypoints.shape[2] != 3
            or keypoints.shape[1] < 1
            or (num_keypoints is not None and keypoints.shape[1] != num_keypoints)):
        _fail(source, schema.KEYPOINTS, f"shape [N, K, 3] = ({num}, {k}, 3) (one row of K "
              "(y, x, v) per box, K >= 1)", f"shape {keypoints.shape}")
    if keypoints.dtype == bool or not np.issubdtype(keypoints.dtype, np.number):
        _fail(source, schema.KEYPOINTS, "numbers (y, x, v)", f"dtype {keypoints.dtype}")
    keypoints = keypoints.astype(np.float32)
    finite = np.isfinite(keypoints).all(axis=2)
    if not finite.all():
        i, j = (int(a[0]) for a in np.nonzero(~finite))
        _fail(source, schema.KEYPOINTS, "finite (y, x, v)",
              f"instance {i} keypoint {j} = {keypoints[i, j].tolist()}")
    visibility = keypoints[:, :, 2]
    bad_v = ~np.isin(visibility, (0.0, 1.0, 2.0))
    if bad_v.any():
        i, j = (int(a[0]) for a in np.nonzero(bad_v))
        _fail(source, schema.KEYPOINTS, "v in {0, 1, 2} (not labelled, occluded, visible)",
              f"v = {float(visibility[i, j])} at instance {i} keypoint {j}")
    # An unlabelled keypoint has no position; zeros keep equal examples bit-identical (and
    # their TFRecords too) whatever a tool wrote there.
    keypoints[:, :, :2] = np.where(visibility[:, :, None] == 0, 0.0, keypoints[:, :, :2])
    return keypoints


def validate_example(example: Mapping[str, Any], num_classes: int,
                     source: str = "example",
                     num_keypoints: Optional[int] = None) -> Dict[str, np.ndarray]:
    """Validates and normalizes one example.

    Args:
      example: mapping with image, boxes [N, 4], class_ids [N], masks [N, H, W], image_id and
        optionally is_crowd [N] (see module doc). Numpy arrays or anything `np.asarray` takes.
      num_classes: K; class ids must lie in 1..K (0 is background).
      source: where the example came from, e.g. "instances_val2017.json image 139"; every
        error message starts with it.
      num_keypoints: K that `keypoints` [N, K, 3] must have, if the example has keypoints;
        None accepts any K >= 1. An example without keypoints is valid either way.

    Returns:
      A new dict: image uint8 [H, W, 3], boxes float32 [N, 4], class_ids int32 [N], masks
      uint8 [N, H, W], is_crowd bool [N], image_id int64 [], and, only when the example has
      them, keypoints float32 [N, K, 3] (y, x, v) with y = x = 0 where v = 0.

    Raises:
      ValueError: naming `source`, the field and what was expected.
    """
    for field in schema.REQUIRED_KEYS:
        if field not in example:
            _fail(source, field, "a value (the field is required)", "nothing")

    image = np.asarray(example[schema.IMAGE])
    if image.dtype != np.uint8:
        _fail(source, schema.IMAGE, "dtype uint8 (0..255)", f"dtype {image.dtype}")
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        _fail(source, schema.IMAGE, "a non-empty [H, W, 3] image", f"shape {image.shape}")
    image = to_rgb(image, source)
    height, width = image.shape[:2]

    boxes = np.asarray(example[schema.BOXES])
    if boxes.size == 0 and boxes.ndim <= 2:
        boxes = boxes.reshape(0, 4)  # [] or [[]] from an image without annotations
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        _fail(source, schema.BOXES, "shape [N, 4] (y1, x1, y2, x2)", f"shape {boxes.shape}")
    if not np.issubdtype(boxes.dtype, np.number):
        _fail(source, schema.BOXES, "numbers", f"dtype {boxes.dtype}")
    boxes = boxes.astype(np.float32)
    if not np.all(np.isfinite(boxes)):
        bad = int(np.nonzero(~np.all(np.isfinite(boxes), axis=1))[0][0])
        _fail(source, schema.BOXES, "finite coordinates", f"box {bad} = {boxes[bad].tolist()}")
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if inverted.any():
        bad = int(np.nonzero(inverted)[0][0])
        _fail(source, schema.BOXES, "y2 >= y1 and x2 >= x1 in (y1, x1, y2, x2) order",
              f"box {bad} = {boxes[bad].tolist()}")
    num = boxes.shape[0]

    class_ids = np.asarray(example[schema.CLASS_IDS])
    if class_ids.size == 0:
        class_ids = class_ids.reshape(0)
    if class_ids.ndim != 1:
        _fail(source, schema.CLASS_IDS, "shape [N]", f"shape {class_ids.shape}")
    if class_ids.size and not np.issubdtype(class_ids.dtype, np.integer):
        _fail(source, schema.CLASS_IDS, "integers", f"dtype {class_ids.dtype}")
    if class_ids.shape[0] != num:
        _fail(source, schema.CLASS_IDS, f"{num} entries (one per box)", f"{class_ids.shape[0]}")
    out_of_range = (class_ids < 1) | (class_ids > num_classes)
    if out_of_range.any():
        bad = int(np.nonzero(out_of_range)[0][0])
        _fail(source, schema.CLASS_IDS, f"ids in 1..{num_classes} (0 is background)",
              f"{int(class_ids[bad])} at instance {bad}")

    masks = np.asarray(example[schema.MASKS])
    if masks.size == 0 and masks.ndim != 3:
        masks = masks.reshape(0, height, width)
    if masks.ndim != 3 or masks.shape[0] != num or masks.shape[1:] != (height, width):
        _fail(source, schema.MASKS, f"shape [N, H, W] = ({num}, {height}, {width}) "
              "(one mask per box, image size)", f"shape {masks.shape}")
    if masks.dtype != bool:
        if not (np.issubdtype(masks.dtype, np.integer) or np.issubdtype(masks.dtype,
                                                                          np.floating)):
            _fail(source, schema.MASKS, "0/1 values", f"dtype {masks.dtype}")
        if masks.size and not np.all((masks == 0) | (masks == 1)):
            _fail(source, schema.MASKS, "0/1 values", f"values in {masks.min()}..{masks.max()}")
    masks = masks.astype(np.uint8)

    if schema.IS_CROWD in example and example[schema.IS_CROWD] is not None:
        is_crowd = np.asarray(example[schema.IS_CROWD])
        if is_crowd.size == 0:
            is_crowd = is_crowd.reshape(0)
        if is_crowd.ndim != 1 or is_crowd.shape[0] != num:
            _fail(source, schema.IS_CROWD, f"shape [N] = ({num},)", f"shape {is_crowd.shape}")
        is_crowd = is_crowd.astype(bool)
    else:
        is_crowd = np.zeros((num,), bool)

    image_id = np.asarray(example[schema.IMAGE_ID])
    if image_id.shape != () or not np.issubdtype(image_id.dtype, np.integer):
        _fail(source, schema.IMAGE_ID, "an integer scalar", f"{image_id!r}")

    out = {
        schema.IMAGE: image,
        schema.BOXES: boxes,
        schema.CLASS_IDS: class_ids.astype(np.int32),
        schema.MASKS: masks,
        schema.IS_CROWD: is_crowd,
        schema.IMAGE_ID: np.int64(image_id),
    }
    if example.get(schema.KEYPOINTS) is not None:
        out[schema.KEYPOINTS] = _validate_keypoints(example[schema.KEYPOINTS], num,
                                                    num_keypoints, source)
    return out
