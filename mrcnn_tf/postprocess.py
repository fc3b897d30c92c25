"""The one post-processing of detections: keep by score, paste masks, attach labels.

Every consumer of a model's detections finishes them here, in this order, so they agree to the
pixel: `MaskRCNN.predict_images` (and so `mrcnn-tf predict`), the TF Serving client and
`mrcnn-tf inspect`.

1. Keep the rows scoring at least `score_threshold` (before any pasting: a mask that will be
   dropped is never pasted).
2. Paste each kept box-relative m x m mask into the image with the model's paste rule
   (`Config.paste_rule`, see `mrcnn_tf.ops.masks.PASTE_RULES`) and threshold it at 0.5; masks
   that arrive already pasted (a full-image-mask export) are cropped to the image and
   thresholded the same way.
3. Attach the dataset's labels: category ids and names from the `LabelMap`.

Images reach the model the right way up everywhere: `predict` and the serving client decode
with `mrcnn_tf.data.images.decode_image`, and the SavedModel's `serve_encoded` with
`mrcnn_tf.ops.exif`; all three turn the pixels by the file's EXIF orientation.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from mrcnn_tf.labels import LabelMap

MASK_THRESHOLD = 0.5


def finish_detections(detections: Mapping[str, Any], height: int, width: int,
                      score_threshold: float = 0.0, paste_rule: str = "detectron2",
                      label_map: Optional[LabelMap] = None) -> dict[str, Any]:
    """One image's real detections -> the kept ones, masks in the image, labels attached.

    Args:
      detections: n rows, best score first (padding rows already cut):
        "boxes"        [n, 4] (y1, x1, y2, x2) pixels of the image the masks go into;
        "scores"       [n];
        "class_ids"    [n] contiguous class ids 1..K, or
        "category_ids" [n] dataset category ids (what an export serves);
        optional "masks"       [n, m, m] box-relative mask probabilities;
        optional "image_masks" [n, H', W'] probabilities already pasted (H' >= height,
                                W' >= width: a batch pads to its largest image);
        optional "keypoints"   [n, K, 3] (y, x, score) pixels.
      height, width: the image size in pixels.
      score_threshold: rows scoring below it are dropped first.
      paste_rule: how "masks" are pasted (`mrcnn_tf.ops.masks.PASTE_RULES`).
      label_map: the model's `LabelMap`; without one, names are left out (and "category_ids"
        only when given).

    Returns:
      dict of the n' kept rows: "boxes" float32 [n', 4], "scores" float32 [n'], "class_ids"
      int32 [n'] (when given), "category_ids" int64 [n'] (given, or from the label map),
      "class_names" list of n' str (with a label map; "id <category id>" for an id the map
      lacks), "masks" bool [n', height, width] (when the detections had masks of either kind)
      and "keypoints" float32 [n', K, 3] (when given).
    """
    scores = np.asarray(detections["scores"], np.float32).reshape(-1)
    keep = scores >= score_threshold
    boxes = np.asarray(detections["boxes"], np.float32).reshape(-1, 4)[keep]
    found: dict[str, Any] = {"boxes": boxes, "scores": scores[keep]}
    if "class_ids" in detections:
        found["class_ids"] = np.asarray(detections["class_ids"], np.int32).reshape(-1)[keep]
    if "category_ids" in detections:
        found["category_ids"] = np.asarray(detections["category_ids"],
                                           np.int64).reshape(-1)[keep]
    if detections.get("masks") is not None:
        found["masks"] = paste(np.asarray(detections["masks"], np.float32)[keep], boxes,
                               height, width, paste_rule)
    elif detections.get("image_masks") is not None:
        pasted = np.asarray(detections["image_masks"], np.float32)[keep]
        found["masks"] = pasted[:, :height, :width] >= MASK_THRESHOLD
    if detections.get("keypoints") is not None:
        found["keypoints"] = np.asarray(detections["keypoints"], np.float32)[keep]
    if label_map is not None:
        found.update(labels(found, label_map))
    return found


def paste(masks: np.ndarray, boxes: np.ndarray, height: int, width: int,
          paste_rule: str) -> np.ndarray:
    """Box-relative probabilities [n, m, m] -> bool [n, height, width] (>= 0.5), pasted by
    `paste_rule` into the boxes [n, 4] (pixels)."""
    if len(masks) == 0:
        return np.zeros((0, height, width), bool)
    # Imported here: this module's keeping and labelling need only NumPy.
    from mrcnn_tf.ops import masks as mask_ops  # noqa: PLC0415

    return mask_ops.paste_binary_masks(masks, boxes, height, width, paste_rule=paste_rule,
                                       threshold=MASK_THRESHOLD).numpy()


def labels(found: Mapping[str, Any], label_map: LabelMap) -> dict[str, Any]:
    """{"category_ids" int64 [n], "class_names" [n] str} of rows with "class_ids" (1..K) or
    "category_ids" (dataset ids; an id the map lacks is named "id <id>")."""
    if "class_ids" in found:
        class_ids = np.asarray(found["class_ids"], np.int64)
        category_ids = np.asarray(label_map.dataset_ids, np.int64)[class_ids - 1]
        return {"category_ids": category_ids,
                "class_names": [label_map.names[c - 1] for c in class_ids]}
    names = dict(zip(label_map.dataset_ids, label_map.names))
    category_ids = np.asarray(found["category_ids"], np.int64)
    return {"category_ids": category_ids,
            "class_names": [names.get(int(c), f"id {int(c)}") for c in category_ids]}
