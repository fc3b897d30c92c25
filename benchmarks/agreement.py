"""How closely a reduced-precision model's detections agree with float32's, on the same images
and the same weights. Pure NumPy (no TensorFlow), so it is unit-tested on hand-made arrays.

Two comparisons per image, each over float32's detections (the reference):

- matched detections: for each float32 detection, the other model's detection of the same class
  with the highest box IoU; it is matched when that IoU is at least `MATCH_BOX_IOU`. Over the
  matched pairs, the IoU of the two full-image (pasted, thresholded) masks. With random weights
  every class scores about 1 / (K + 1), so near-ties decide which boxes survive NMS and this
  comparison is pessimistic: a tiny score change swaps one box for another.
- same boxes: the other model's mask head run on float32's own boxes and classes; the IoU of
  its pasted mask with float32's, detection by detection. This isolates the mask head's
  numbers from the box selection, and is what "mask IoU >= 0.95 on the same boxes" asks for.
"""

import numpy as np

MATCH_BOX_IOU = 0.9  # a bf16 box this close to a float32 box counts as the same detection
SAME_BOX_MASK_IOU = 0.95  # the mask agreement the same-box comparison is judged against


def box_iou(a, b):
    """Pairwise IoU of boxes.

    Args: a [N, 4], b [M, 4] float (y1, x1, y2, x2).
    Returns: [N, M] float64; 0 where a box has no area.
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])  # [N, M, 2]
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=-1)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=-1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def mask_iou(a, b):
    """IoU of two boolean masks of one shape [H, W]; 1.0 when both are empty (they agree)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def match_detections(ref_boxes, ref_classes, boxes, classes):
    """For each reference detection, the detection of the same class with the highest box IoU.

    Args: ref_boxes [N, 4], ref_classes [N] int; boxes [M, 4], classes [M] int.
    Returns: (index [N] int64, -1 where no detection has that class; iou [N] float64, 0 there).
      Several reference detections may pick the same detection (no one-to-one assignment: the
      question is whether each float32 detection has a close counterpart).
    """
    ious = box_iou(ref_boxes, boxes)
    same_class = np.asarray(ref_classes)[:, None] == np.asarray(classes)[None, :]
    ious = np.where(same_class, ious, -1.0)  # other classes never win
    if ious.shape[1] == 0:
        return np.full(ious.shape[0], -1, np.int64), np.zeros(ious.shape[0])
    index = np.argmax(ious, axis=1)
    best = ious[np.arange(len(index)), index]
    return np.where(best >= 0, index, -1), np.maximum(best, 0.0)


def image_agreement(reference, other, same_box_masks, match_iou=MATCH_BOX_IOU):
    """The raw agreement numbers of one image.

    Args:
      reference, other: dicts of one image's real detections: boxes [N, 4] / [M, 4], class_ids
        [N] / [M], masks [N, H, W] / [M, H, W] bool (pasted into the image).
      same_box_masks: [N, H, W] bool, the other model's masks for reference's boxes and classes.
      match_iou: box IoU from which a pair counts as matched.
    Returns: dict matched [N] bool, mask_iou [number matched] (over matched pairs),
      same_box_mask_iou [N].
    """
    index, ious = match_detections(reference["boxes"], reference["class_ids"],
                                   other["boxes"], other["class_ids"])
    matched = (index >= 0) & (ious >= match_iou)
    pairs = [mask_iou(reference["masks"][i], other["masks"][index[i]])
             for i in np.flatnonzero(matched)]
    same_box = [mask_iou(r, s) for r, s in zip(reference["masks"], same_box_masks)]
    return {"matched": matched, "mask_iou": np.asarray(pairs, np.float64),
            "same_box_mask_iou": np.asarray(same_box, np.float64)}


def _min_median(values):
    """(min, median) of a 1-D array rounded to 4 digits, or (None, None) when it is empty."""
    if len(values) == 0:
        return None, None
    return round(float(np.min(values)), 4), round(float(np.median(values)), 4)


def summarize(per_image, match_iou=MATCH_BOX_IOU, same_box_iou=SAME_BOX_MASK_IOU):
    """Pools `image_agreement` dicts of several images into the reported numbers.

    Returns dict: detections (float32's), matched, matched_fraction, mask_iou_min/median (over
      matched pairs), same_box_mask_iou_min/median, same_box_fraction (float32 detections whose
      same-box mask IoU is >= `same_box_iou`), and the two thresholds.
    """
    matched = np.concatenate([p["matched"] for p in per_image]) if per_image else np.zeros(0)
    pairs = np.concatenate([p["mask_iou"] for p in per_image]) if per_image else np.zeros(0)
    same = (np.concatenate([p["same_box_mask_iou"] for p in per_image]) if per_image
            else np.zeros(0))
    count = int(len(matched))
    pair_min, pair_median = _min_median(pairs)
    same_min, same_median = _min_median(same)
    return {"detections": count, "matched": int(np.count_nonzero(matched)),
            "matched_fraction": round(float(np.mean(matched)), 4) if count else None,
            "mask_iou_min": pair_min, "mask_iou_median": pair_median,
            "same_box_mask_iou_min": same_min, "same_box_mask_iou_median": same_median,
            "same_box_fraction": (round(float(np.mean(same >= same_box_iou)), 4)
                                  if len(same) else None),
            "match_box_iou": match_iou, "same_box_mask_iou_threshold": same_box_iou}


def _image(batch, b):
    """Image b's real detections (the first num_detections[b] rows) of a batched dict."""
    n = int(batch["num_detections"][b])
    return {key: np.asarray(batch[key][b][:n]) for key in ("boxes", "class_ids", "masks")}


def batch_agreement(reference, other, same_box_masks):
    """`summarize` over a batch.

    Args:
      reference, other: dicts of NumPy arrays: boxes [B, D, 4] (image pixels), class_ids
        [B, D], masks [B, D, H, W] bool, num_detections [B]; rows past num_detections are
        padding and ignored.
      same_box_masks: [B, D, H, W] bool, the other model's masks on reference's boxes.
    Returns: the `summarize` dict.
    """
    per_image = []
    for b in range(len(reference["num_detections"])):
        ref = _image(reference, b)
        per_image.append(image_agreement(ref, _image(other, b),
                                         np.asarray(same_box_masks[b][:len(ref["boxes"])])))
    return summarize(per_image)
