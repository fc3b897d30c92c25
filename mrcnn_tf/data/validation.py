"""Checks one example (numpy) before it enters the tf.data graph.

Inside the graph a wrong shape surfaces as an opaque op error many steps later, or not at all
(a box with x2 < x1 just trains badly). Readers call `validate_example` on every example they
produce, so a bad file or annotation fails early with a message that names where it came from
(`source`: file, index, annotation id), the field, and what was expected.

The example structure (see `mrcnn_tf.data.shapes`):

    image      uint8   [H, W, 3]  RGB ([H, W] grayscale, [H, W, 1] and [H, W, 4] RGBA accepted)
    boxes      float32 [N, 4]     (y1, x1, y2, x2) pixels, y2/x2 exclusive
    class_ids  int32   [N]        1..num_classes
    masks      uint8   [N, H, W]  0/1
    is_crowd   bool    [N]        optional, defaults to all False
    image_id   int64   []
    keypoints  float32 [N, K, 3]  optional: (y, x, v) per instance and keypoint type, in
                                  continuous pixels (pixel i covers [i, i + 1)), v 0 = not
                                  labelled (then y = x = 0), 1 = labelled but occluded,
                                  2 = visible (`mrcnn_tf.keypoint_spec`). A crowd region or an
                                  instance without keypoints has all v = 0. An example without
                                  the field has no keypoint labels at all (it is not added).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import numpy as np

REQUIRED_FIELDS = ("image", "boxes", "class_ids", "masks", "image_id")


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
    _fail(source, "image", "shape [H, W, 3] RGB (or [H, W] gray, [H, W, 1], [H, W, 4] RGBA)",
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
        _fail(source, "keypoints", f"shape [N, K, 3] = ({num}, {k}, 3) (one row of K (y, x, v) "
              "per box, K >= 1)", f"shape {keypoints.shape}")
    if keypoints.dtype == bool or not np.issubdtype(keypoints.dtype, np.number):
        _fail(source, "keypoints", "numbers (y, x, v)", f"dtype {keypoints.dtype}")
    keypoints = keypoints.astype(np.float32)
    finite = np.isfinite(keypoints).all(axis=2)
    if not finite.all():
        i, j = (int(a[0]) for a in np.nonzero(~finite))
        _fail(source, "keypoints", "finite (y, x, v)",
              f"instance {i} keypoint {j} = {keypoints[i, j].tolist()}")
    visibility = keypoints[:, :, 2]
    bad_v = ~np.isin(visibility, (0.0, 1.0, 2.0))
    if bad_v.any():
        i, j = (int(a[0]) for a in np.nonzero(bad_v))
        _fail(source, "keypoints", "v in {0, 1, 2} (not labelled, occluded, visible)",
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
    for field in REQUIRED_FIELDS:
        if field not in example:
            _fail(source, field, "a value (the field is required)", "nothing")

    image = np.asarray(example["image"])
    if image.dtype != np.uint8:
        _fail(source, "image", "dtype uint8 (0..255)", f"dtype {image.dtype}")
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        _fail(source, "image", "a non-empty [H, W, 3] image", f"shape {image.shape}")
    image = to_rgb(image, source)
    height, width = image.shape[:2]

    boxes = np.asarray(example["boxes"])
    if boxes.size == 0 and boxes.ndim <= 2:
        boxes = boxes.reshape(0, 4)  # [] or [[]] from an image without annotations
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        _fail(source, "boxes", "shape [N, 4] (y1, x1, y2, x2)", f"shape {boxes.shape}")
    if not np.issubdtype(boxes.dtype, np.number):
        _fail(source, "boxes", "numbers", f"dtype {boxes.dtype}")
    boxes = boxes.astype(np.float32)
    if not np.all(np.isfinite(boxes)):
        bad = int(np.nonzero(~np.all(np.isfinite(boxes), axis=1))[0][0])
        _fail(source, "boxes", "finite coordinates", f"box {bad} = {boxes[bad].tolist()}")
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if inverted.any():
        bad = int(np.nonzero(inverted)[0][0])
        _fail(source, "boxes", "y2 >= y1 and x2 >= x1 in (y1, x1, y2, x2) order",
              f"box {bad} = {boxes[bad].tolist()}")
    num = boxes.shape[0]

    class_ids = np.asarray(example["class_ids"])
    if class_ids.size == 0:
        class_ids = class_ids.reshape(0)
    if class_ids.ndim != 1:
        _fail(source, "class_ids", "shape [N]", f"shape {class_ids.shape}")
    if class_ids.size and not np.issubdtype(class_ids.dtype, np.integer):
        _fail(source, "class_ids", "integers", f"dtype {class_ids.dtype}")
    if class_ids.shape[0] != num:
        _fail(source, "class_ids", f"{num} entries (one per box)", f"{class_ids.shape[0]}")
    out_of_range = (class_ids < 1) | (class_ids > num_classes)
    if out_of_range.any():
        bad = int(np.nonzero(out_of_range)[0][0])
        _fail(source, "class_ids", f"ids in 1..{num_classes} (0 is background)",
              f"{int(class_ids[bad])} at instance {bad}")

    masks = np.asarray(example["masks"])
    if masks.size == 0 and masks.ndim != 3:
        masks = masks.reshape(0, height, width)
    if masks.ndim != 3 or masks.shape[0] != num or masks.shape[1:] != (height, width):
        _fail(source, "masks", f"shape [N, H, W] = ({num}, {height}, {width}) "
              "(one mask per box, image size)", f"shape {masks.shape}")
    if masks.dtype != bool:
        if not (np.issubdtype(masks.dtype, np.integer) or np.issubdtype(masks.dtype,
                                                                          np.floating)):
            _fail(source, "masks", "0/1 values", f"dtype {masks.dtype}")
        if masks.size and not np.all((masks == 0) | (masks == 1)):
            _fail(source, "masks", "0/1 values", f"values in {masks.min()}..{masks.max()}")
    masks = masks.astype(np.uint8)

    if "is_crowd" in example and example["is_crowd"] is not None:
        is_crowd = np.asarray(example["is_crowd"])
        if is_crowd.size == 0:
            is_crowd = is_crowd.reshape(0)
        if is_crowd.ndim != 1 or is_crowd.shape[0] != num:
            _fail(source, "is_crowd", f"shape [N] = ({num},)", f"shape {is_crowd.shape}")
        is_crowd = is_crowd.astype(bool)
    else:
        is_crowd = np.zeros((num,), bool)

    image_id = np.asarray(example["image_id"])
    if image_id.shape != () or not np.issubdtype(image_id.dtype, np.integer):
        _fail(source, "image_id", "an integer scalar", f"{image_id!r}")

    out = {
        "image": image,
        "boxes": boxes,
        "class_ids": class_ids.astype(np.int32),
        "masks": masks,
        "is_crowd": is_crowd,
        "image_id": np.int64(image_id),
    }
    if example.get("keypoints") is not None:
        out["keypoints"] = _validate_keypoints(example["keypoints"], num, num_keypoints, source)
    return out
