"""benchmarks/agreement.py on hand-made boxes and masks (NumPy only, no model): it must tell
agreeing detections from a shifted box, a changed class and a changed mask."""

import pathlib
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks import agreement  # noqa: E402

SIZE = 20


def _box_mask(box):
    """bool [SIZE, SIZE] mask filling box (y1, x1, y2, x2), integer pixels."""
    mask = np.zeros((SIZE, SIZE), bool)
    y1, x1, y2, x2 = (int(v) for v in box)
    mask[y1:y2, x1:x2] = True
    return mask


def _detections(boxes, classes, masks=None):
    """A one-image batch as agreement.batch_agreement takes it: [1, D, ...] arrays."""
    boxes = np.asarray(boxes, np.float32)
    masks = np.stack([_box_mask(b) for b in boxes]) if masks is None else np.asarray(masks)
    return {"boxes": boxes[None], "class_ids": np.asarray(classes, np.int32)[None],
            "masks": masks[None], "num_detections": np.asarray([len(boxes)])}


REFERENCE_BOXES = [[0, 0, 10, 10], [10, 10, 20, 20], [0, 10, 10, 20]]
REFERENCE_CLASSES = [1, 2, 3]


def test_box_and_mask_iou():
    ious = agreement.box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [0, 5, 10, 15], [20, 20, 30, 30]])
    assert ious.shape == (1, 3) and ious[0] == pytest.approx([1.0, 50 / 150, 0.0])
    assert agreement.box_iou(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)
    a, b = _box_mask([0, 0, 10, 10]), _box_mask([0, 0, 10, 5])
    assert agreement.mask_iou(a, b) == pytest.approx(0.5)
    assert agreement.mask_iou(np.zeros((4, 4), bool), np.zeros((4, 4), bool)) == 1.0


def test_identical_detections_agree_fully():
    reference = _detections(REFERENCE_BOXES, REFERENCE_CLASSES)
    result = agreement.batch_agreement(reference, reference, reference["masks"])
    assert result["detections"] == 3 and result["matched"] == 3
    assert result["matched_fraction"] == 1.0
    assert result["mask_iou_min"] == result["same_box_mask_iou_min"] == 1.0
    assert result["same_box_fraction"] == 1.0


def test_a_shifted_box_and_a_changed_class_are_not_matched():
    reference = _detections(REFERENCE_BOXES, REFERENCE_CLASSES)
    # Detection 0 is shifted by 2 px (box IoU 80/120 < 0.9); detection 2 has another class;
    # the other's order is shuffled, which must not matter.
    other = _detections([[10, 10, 20, 20], [0, 12, 10, 22], [0, 2, 10, 12]], [2, 1, 1])
    index, ious = agreement.match_detections(reference["boxes"][0], REFERENCE_CLASSES,
                                             other["boxes"][0], other["class_ids"][0])
    assert list(index) == [2, 0, -1]  # class 3 has no detection in `other`
    assert ious == pytest.approx([80 / 120, 1.0, 0.0])
    result = agreement.batch_agreement(reference, other, reference["masks"])
    assert result["matched"] == 1 and result["matched_fraction"] == pytest.approx(1 / 3, abs=1e-4)
    assert result["mask_iou_min"] == result["mask_iou_median"] == 1.0  # the one matched pair


def test_a_changed_mask_on_the_same_box_is_reported():
    reference = _detections(REFERENCE_BOXES, REFERENCE_CLASSES)
    same_box = reference["masks"].copy()
    same_box[0, 1, :, :] = False  # the other precision's mask for detection 1 is empty
    same_box[0, 2, 0:10, 10:15] = False  # and half of detection 2's
    # The boxes still match, but detection 2's own mask differs too.
    other = _detections(REFERENCE_BOXES, REFERENCE_CLASSES, masks=same_box[0])
    result = agreement.batch_agreement(reference, other, same_box)
    assert result["matched_fraction"] == 1.0
    assert result["mask_iou_min"] == 0.0 and result["mask_iou_median"] == 0.5
    assert result["same_box_mask_iou_min"] == 0.0
    assert result["same_box_mask_iou_median"] == 0.5
    assert result["same_box_fraction"] == pytest.approx(1 / 3, abs=1e-4)


def test_padding_rows_are_ignored_and_no_detections_give_none():
    reference = _detections(REFERENCE_BOXES, REFERENCE_CLASSES)
    padded = {k: v.copy() for k, v in reference.items()}
    padded["num_detections"] = np.asarray([2])
    padded["class_ids"][0, 2] = 0  # a padding row, whatever it holds
    result = agreement.batch_agreement(padded, padded, padded["masks"])
    assert result["detections"] == 2 and result["matched_fraction"] == 1.0
    empty = {k: v[:, :0] for k, v in reference.items() if k != "num_detections"}
    empty["num_detections"] = np.asarray([0])
    result = agreement.batch_agreement(empty, reference, empty["masks"])
    assert result["detections"] == 0 and result["matched_fraction"] is None
    assert result["mask_iou_min"] is None and result["same_box_fraction"] is None
