"""TIDE's error breakdown (mrcnn_tf/evaluation/error_breakdown.py): hand-built detections that
each fall in one known category, AP50 and precision equal to COCOeval's, and each oracle fix
equal to COCOeval run on the detections and ground truth that fix describes."""

import copy

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

from mrcnn_tf.data.coco_writer import coco_from_dict
from mrcnn_tf.evaluation import coco_eval, error_breakdown as eb


def _truth(ann_id, image_id, category_id, box, crowd=0):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": list(box),
            "area": float(box[2] * box[3]), "iscrowd": crowd}


def _box_rle(box, size=100):
    """The box's mask as compressed RLE (counts as str, as results are written)."""
    x, y, w, h = (int(v) for v in box)
    mask = np.zeros((size, size), np.uint8)
    mask[y:y + h, x:x + w] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def _coco(truths, num_images, size=100):
    for t in truths:
        t["segmentation"] = _box_rle(t["bbox"], size)
    return coco_from_dict({
        "images": [{"id": i, "height": size, "width": size, "file_name": f"{i}.png"}
                   for i in range(1, num_images + 1)],
        "annotations": truths,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]})


def _detection(image_id, category_id, box, score):
    return {"image_id": image_id, "category_id": category_id, "bbox": [float(v) for v in box],
            "score": score, "segmentation": _box_rle(box)}


@pytest.fixture(scope="module")
def hand_built():
    """Every detection in one known TIDE category (xywh boxes, 20 x 20 ground truth)."""
    truths = [_truth(1, 1, 1, (10, 10, 20, 20)), _truth(2, 1, 1, (50, 10, 20, 20)),
              _truth(3, 1, 1, (10, 50, 20, 20)), _truth(4, 1, 1, (60, 60, 20, 20)),
              _truth(6, 2, 2, (10, 10, 20, 20)), _truth(7, 2, 2, (40, 40, 50, 50), crowd=1)]
    detections = [
        _detection(1, 1, (10, 10, 20, 20), 0.9),   # true positive on truth 1
        _detection(1, 1, (10, 10, 20, 20), 0.8),   # duplicate: truth 1 is taken
        _detection(1, 1, (62, 10, 20, 20), 0.7),   # localization: IoU 0.25 with truth 2
        _detection(1, 2, (10, 50, 20, 20), 0.6),   # classification: truth 3 is class 1
        _detection(1, 2, (22, 10, 20, 20), 0.5),   # both: class 2, IoU 0.25 with truth 1
        _detection(1, 1, (85, 85, 10, 10), 0.4),   # background: touches nothing
        _detection(2, 2, (10, 10, 20, 20), 0.95),  # true positive on truth 6
        _detection(3, 1, (10, 10, 20, 20), 0.3),   # background: image 3 has no ground truth
        _detection(2, 2, (50, 50, 20, 20), 0.35),  # inside the crowd region: not counted
    ]
    return _coco(truths, 3), detections


EXPECTED = ["tp", "duplicate", "localization", "classification", "both", "background", "tp",
            "background", "crowd"]


def _names(outcome):
    special = {eb.TRUE_POSITIVE: "tp", eb.CROWD: "crowd", eb.NOT_SCORED: "not scored"}
    return [special.get(int(o)) or eb.ERROR_TYPES[int(o)] for o in outcome]


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_each_hand_built_detection_falls_in_its_category(hand_built, iou_type):
    coco_gt, detections = hand_built
    found = eb.analyze(coco_gt, detections, iou_type)
    assert _names(found.outcome) == EXPECTED
    assert found.missed == [4]  # truth 4: nothing near it; truths 2 and 3 have errors on them
    assert found.counts() == {"classification": 1, "localization": 1, "both": 1,
                              "duplicate": 1, "background": 2, "missed": 1}
    assert found.target_id[2] == 2 and found.target_id[3] == 3
    assert found.recovers.tolist() == [False, False, True, True] + [False] * 5
    # Class a: 1 of 4 found first, then only false positives; class b: found at once.
    assert found.ap() == pytest.approx((26 / 101 + 1.0) / 2)
    assert found.ap(eb.ERROR_TYPES) == pytest.approx(1.0)
    by_image = {im["image_id"]: im for im in found.images}
    assert by_image[1] == {"image_id": 1, "tp": 1, "fp": 4, "fn": 3, "f1": 2 / 9,
                           "missed_ids": [2, 3, 4]}  # detections >= 0.5 only
    assert (by_image[2]["tp"], by_image[2]["fp"], by_image[2]["fn"]) == (1, 0, 0)
    assert (by_image[3]["tp"], by_image[3]["fp"], by_image[3]["fn"]) == (0, 0, 0)


def test_ap50_and_fixes_agree_with_cocoeval_on_the_hand_built_case(hand_built):
    coco_gt, detections = hand_built
    found = eb.analyze(coco_gt, detections, "bbox")
    metrics = coco_eval.evaluate_coco(coco_gt, detections, ("bbox",), print_summary=False)
    assert found.ap() == pytest.approx(metrics["bbox/AP50"], abs=1e-9)
    for error_type in eb.ERROR_TYPES + ("false_positive",):
        assert found.ap([error_type]) == pytest.approx(
            _ap50_of_fixed(coco_gt, detections, found, error_type), abs=1e-9), error_type
    deltas = found.delta_ap()
    assert deltas["classification"] > 0 and deltas["localization"] > 0
    assert deltas["missed"] > 0 and deltas["false_negative"] > deltas["missed"]


def _ap50_of_fixed(coco_gt, detections, found, error_type):
    """COCOeval's AP50 after the oracle fix of `error_type`, written as an edit of the inputs:
    a recovering localization or classification error takes its target's box and class, the
    other errors of the type are dropped, and a missed truth leaves the ground truth."""
    code = eb.ERROR_TYPES.index(error_type) if error_type in eb.ERROR_TYPES else None
    anns = {a["id"]: a for a in coco_gt.dataset["annotations"]}
    kept = []
    for i, d in enumerate(detections):
        if error_type == "false_positive" and found.outcome[i] < len(eb.ERROR_TYPES):
            continue
        if found.outcome[i] == code and error_type != "missed":
            if not found.recovers[i]:
                continue
            target = anns[int(found.target_id[i])]
            d = dict(d, bbox=list(target["bbox"]), category_id=target["category_id"])
        kept.append(d)
    dataset = copy.deepcopy(coco_gt.dataset)
    if error_type == "missed":
        dataset["annotations"] = [a for a in dataset["annotations"]
                                  if a["id"] not in set(found.missed)]
    metrics = coco_eval.evaluate_coco(coco_from_dict(dataset), kept, ("bbox",),
                                      print_summary=False)
    return metrics["bbox/AP50"]


def _random_case(seed, images=12, size=64):
    """Random square-ish boxes of 2 classes, some crowd, some images without ground truth,
    detections near the truth (sometimes of the other class) and elsewhere."""
    rng = np.random.default_rng(seed)
    truths, detections = [], []
    for image_id in range(1, images + 1):
        placed = []
        for _ in range(rng.integers(0, 5)):
            x, y = rng.integers(0, size - 16, 2)
            w, h = rng.integers(6, 16, 2)
            category = int(rng.integers(1, 3))
            truths.append(_truth(len(truths) + 1, image_id, category, (x, y, w, h),
                                 crowd=int(rng.random() < 0.1)))
            placed.append((x, y, w, h, category))
        for _ in range(rng.integers(0, 3)):
            placed.append(tuple(rng.integers(0, size - 16, 2)) + tuple(rng.integers(6, 16, 2))
                          + (int(rng.integers(1, 3)),))
        for x, y, w, h, category in placed:
            for _ in range(rng.integers(1, 3)):
                dx, dy = rng.integers(-4, 5, 2)
                x2, y2 = max(0, x + dx), max(0, y + dy)
                box = (x2, y2, min(w, size - x2), min(h, size - y2))
                flip = rng.random() < 0.2
                detections.append(dict(_detection(image_id, 3 - category if flip else category,
                                                  box, float(rng.random())),
                                       segmentation=_box_rle(box, size)))
    return _coco(truths, images, size), detections


@pytest.mark.parametrize("seed", [0, 1])
def test_ap50_and_precision_equal_cocoeval_on_random_detections(seed):
    coco_gt, detections = _random_case(seed)
    metrics = coco_eval.evaluate_coco(coco_gt, detections, ("bbox", "segm"),
                                      print_summary=False)
    for iou_type in ("bbox", "segm"):
        found = eb.analyze(coco_gt, detections, iou_type)
        assert found.ap() == pytest.approx(metrics[f"{iou_type}/AP50"], abs=1e-9)
        assert found.ap(eb.ERROR_TYPES) == pytest.approx(1.0)
        assert sum(found.counts().values()) > 10
    # The per-category precision at IoU 0.5 is COCOeval's, point for point.
    fields = ("segmentation",)
    reference = COCOeval(coco_gt, coco_gt.loadRes(
        [{k: v for k, v in d.items() if k not in fields} for d in detections]), "bbox")
    reference.params.iouThrs = np.array([0.5])
    reference.evaluate()
    reference.accumulate()
    found = eb.analyze(coco_gt, detections, "bbox")
    scored = (found.outcome != eb.CROWD) & (found.outcome != eb.NOT_SCORED)
    for k in range(2):
        rows = scored & (found._category == k)
        ours = eb.precision_at_recall(found._score[rows], found._order_key[rows],
                                      found.outcome[rows] == eb.TRUE_POSITIVE,
                                      int(found._truth_count[k]))
        np.testing.assert_array_equal(ours, reference.eval["precision"][0, :, k, 0, 2])


def test_each_fix_on_random_detections_equals_cocoeval_of_the_fixed_inputs():
    coco_gt, detections = _random_case(2, images=16)
    found = eb.analyze(coco_gt, detections, "bbox")
    for error_type in eb.ERROR_TYPES + ("false_positive",):
        assert found.ap([error_type]) == pytest.approx(
            _ap50_of_fixed(coco_gt, detections, found, error_type), abs=1e-9), error_type


def test_bad_arguments_are_named(hand_built):
    coco_gt, detections = hand_built
    with pytest.raises(ValueError, match="'keypoints'.*'bbox' or 'segm'"):
        eb.analyze(coco_gt, detections, "keypoints")
    with pytest.raises(ValueError, match="bg_iou"):
        eb.analyze(coco_gt, detections, "bbox", bg_iou=0.6)
    with pytest.raises(ValueError, match="unknown error types.*'typo'"):
        eb.analyze(coco_gt, detections, "bbox").ap(["typo"])


def test_categories_are_tried_in_tides_order():
    # One false positive per row against two truths.
    iou = np.array([[0.3, 0.6], [0.05, 0.6], [0.7, 0.0], [0.3, 0.0], [0.1, 0.05]])
    same_class = np.array([[True, False], [True, False], [True, False], [False, True],
                           [False, False]])
    matched = np.array([True, False])
    kinds, aims = eb._classify(iou, same_class, matched, 0.5, 0.1)
    assert [eb.ERROR_TYPES[k] for k in kinds] == [
        "localization",  # checked before classification
        "classification", "duplicate", "both", "background"]
    assert aims.tolist() == [0, 1, -1, -1, -1]
    kinds, aims = eb._classify(np.zeros((2, 0)), np.zeros((2, 0), bool), np.zeros(0, bool),
                               0.5, 0.1)  # no truth in the image
    assert [eb.ERROR_TYPES[k] for k in kinds] == ["background"] * 2 and aims.tolist() == [-1, -1]
