"""Tests for mrcnn_tf.evaluation.coco_eval on small synthetic images."""

import json
import logging

import numpy as np
import pytest
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn_tf.evaluation.coco_eval import (
    STAT_NAMES,
    LabelMap,
    build_coco_ground_truth,
    evaluate_coco,
    predictions_to_coco_results,
    write_coco_json,
)

SIZE = 64
# Dataset category ids include 0 and are neither contiguous nor sorted.
LABEL_MAP = LabelMap((0, 7, 3), ("square", "disc", "bar"))


def _rect_mask(y1, x1, y2, x2, size=SIZE):
    m = np.zeros([size, size], np.uint8)
    m[y1:y2, x1:x2] = 1
    return m


def _disc_mask(cy, cx, r, size=SIZE):
    yy, xx = np.mgrid[:size, :size]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)


def _box_of(mask):
    """(y1, x1, y2, x2) with exclusive right/bottom edges."""
    ys, xs = np.nonzero(mask)
    return [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]


def _example(image_id, instances, crowd=()):
    """instances: list of (class_id, mask); crowd: indices of crowd instances."""
    masks = np.stack([m for _, m in instances]).astype(np.uint8)
    image = np.zeros([SIZE, SIZE, 3], np.uint8)
    image[masks.any(0)] = 200
    return {
        "image": image,
        "boxes": np.asarray([_box_of(m) for m in masks], np.float32),
        "class_ids": np.asarray([c for c, _ in instances], np.int32),
        "masks": masks,
        "is_crowd": np.asarray([i in crowd for i in range(len(instances))], bool),
        "image_id": np.int64(image_id),
    }


def _examples():
    """Three 64x64 images; every class appears; one square is 40x40 (a "medium" object)."""
    return [
        _example(11, [(1, _rect_mask(4, 4, 20, 24)), (2, _disc_mask(40, 44, 9))]),
        _example(12, [(3, _rect_mask(30, 2, 36, 60)), (2, _disc_mask(14, 14, 7)),
                      (1, _rect_mask(8, 30, 24, 50))]),
        _example(13, [(1, _rect_mask(12, 12, 52, 52)), (3, _rect_mask(2, 2, 8, 30))]),
    ]


def _perfect_predictions(example, score=1.0):
    keep = ~example["is_crowd"]
    return {
        "boxes": example["boxes"][keep],
        "class_ids": example["class_ids"][keep],
        "scores": np.full([int(keep.sum())], score, np.float32),
        "masks": example["masks"][keep].astype(bool),
    }


def _results(examples, predictions):
    out = []
    for ex, pred in zip(examples, predictions):
        out += predictions_to_coco_results(ex["image_id"], pred, LABEL_MAP)
    return out


def _imperfect_predictions(examples):
    """Deterministically degraded predictions, so metrics are strictly between 0 and 1."""
    rng = np.random.default_rng(3)
    preds = []
    for ex in examples:
        p = _perfect_predictions(ex)
        n = len(p["boxes"])
        p["boxes"] = p["boxes"] + rng.uniform(-3, 3, size=[n, 4]).astype(np.float32)
        p["scores"] = rng.uniform(0.2, 1.0, size=[n]).astype(np.float32)
        # Shift masks two pixels to the right so that mask IoU drops below 1.
        p["masks"] = np.roll(p["masks"], shift=2, axis=2)
        # An extra false positive of class 2 with a middling score.
        p["boxes"] = np.concatenate([p["boxes"], [[50, 0, 60, 10]]]).astype(np.float32)
        p["class_ids"] = np.concatenate([p["class_ids"], [2]]).astype(np.int32)
        p["scores"] = np.concatenate([p["scores"], [0.5]]).astype(np.float32)
        p["masks"] = np.concatenate([p["masks"], _rect_mask(50, 0, 60, 10)[None] > 0])
        preds.append(p)
    return preds


# ---------------------------------------------------------------------------------------------
# LabelMap
# ---------------------------------------------------------------------------------------------


def test_label_map_round_trip_with_zero_and_gaps():
    lm = LabelMap([0, 7, 3], ["a", "b", "c"])
    assert lm.num_classes == 3
    assert [lm.dataset_id(i) for i in (1, 2, 3)] == [0, 7, 3]
    assert [lm.contiguous_id(d) for d in (0, 7, 3)] == [1, 2, 3]
    assert lm.class_names == ["background", "a", "b", "c"]
    restored = LabelMap.from_dict(json.loads(json.dumps(lm.to_dict())))
    assert restored == lm
    assert restored.contiguous_id(0) == 1 and restored.dataset_id(2) == 7


def test_label_map_from_names_and_errors():
    lm = LabelMap.from_names(["x", "y"])
    assert lm.dataset_ids == (1, 2)
    assert lm.contiguous_id(2) == 2
    with pytest.raises(KeyError, match="dataset category id 5"):
        lm.contiguous_id(5)
    with pytest.raises(KeyError, match="outside 1..2"):
        lm.dataset_id(0)
    with pytest.raises(ValueError, match="distinct"):
        LabelMap((1, 1), ("a", "b"))
    with pytest.raises(ValueError, match="names"):
        LabelMap((1, 2), ("a",))
    with pytest.raises(ValueError, match="1..K"):
        LabelMap.from_dict({"categories": [{"id": 2, "dataset_id": 5, "name": "a"}]})


def test_from_coco_categories_sorts_by_dataset_id():
    lm = LabelMap.from_coco_categories([{"id": 9, "name": "b"}, {"id": 0, "name": "a"}])
    assert lm.dataset_ids == (0, 9) and lm.names == ("a", "b")


# ---------------------------------------------------------------------------------------------
# Conversions
# ---------------------------------------------------------------------------------------------


def test_ground_truth_fields():
    examples = _examples()
    gt = build_coco_ground_truth(examples, LABEL_MAP)
    assert sorted(gt.getImgIds()) == [11, 12, 13]
    assert sorted(gt.getCatIds()) == [0, 3, 7]
    anns = gt.loadAnns(gt.getAnnIds(imgIds=[12]))
    assert [a["category_id"] for a in anns] == [3, 7, 0]
    assert min(a["id"] for a in gt.dataset["annotations"]) == 1  # COCOeval treats id 0 as "no match"
    bar = anns[0]
    # Rows 30..35, columns 2..59 -> x=2, y=30, w=58, h=6; area is the mask's pixel count.
    assert bar["bbox"] == [2.0, 30.0, 58.0, 6.0]
    assert bar["area"] == 58 * 6
    assert isinstance(bar["segmentation"]["counts"], str)
    np.testing.assert_array_equal(gt.annToMask(bar), examples[1]["masks"][0])
    json.dumps(gt.dataset)  # JSON-able as is


def test_prediction_bbox_matches_pycocotools_box_of_the_mask():
    # A mask covering columns 3..7 and rows 10..11 has the box (10, 3, 12, 8).
    mask = _rect_mask(10, 3, 12, 8)
    pred = {
        "boxes": np.asarray([[10, 3, 12, 8]], np.float32),
        "class_ids": np.asarray([2], np.int32),
        "scores": np.asarray([0.75], np.float32),
        "masks": mask[None].astype(bool),
    }
    (res,) = predictions_to_coco_results(np.int64(5), pred, LABEL_MAP)
    assert res["image_id"] == 5 and res["category_id"] == 7
    assert res["score"] == pytest.approx(0.75)
    assert res["bbox"] == [3.0, 10.0, 5.0, 2.0]
    np.testing.assert_allclose(mask_util.toBbox(res["segmentation"]), res["bbox"])
    np.testing.assert_array_equal(mask_util.decode(res["segmentation"]), mask)
    json.dumps(res)


def test_empty_prediction_gives_no_results():
    pred = {"boxes": np.zeros([0, 4]), "class_ids": np.zeros([0], np.int32),
            "scores": np.zeros([0]), "masks": np.zeros([0, SIZE, SIZE], bool)}
    assert predictions_to_coco_results(1, pred, LABEL_MAP) == []


# ---------------------------------------------------------------------------------------------
# evaluate_coco
# ---------------------------------------------------------------------------------------------


def test_perfect_predictions_give_ap_one():
    examples = _examples()
    gt = build_coco_ground_truth(examples, LABEL_MAP)
    results = _results(examples, [_perfect_predictions(ex) for ex in examples])
    metrics = evaluate_coco(gt, results, print_summary=False)
    for t in ("bbox", "segm"):
        assert metrics[f"{t}/AP"] == pytest.approx(1.0)
        assert metrics[f"{t}/AP50"] == pytest.approx(1.0)
        assert metrics[f"{t}/AR100"] == pytest.approx(1.0)
        assert metrics[f"{t}/per_category"] == pytest.approx(
            {"square": 1.0, "disc": 1.0, "bar": 1.0}
        )
    assert metrics["bbox/APl"] == -1.0  # no large objects in a 64x64 image: "not applicable"
    # loadRes writes "id"/"area" into what it loads; the caller's results must stay untouched.
    assert all(set(r) == {"image_id", "category_id", "bbox", "score", "segmentation"}
               for r in results)


def test_empty_results_give_zeros(caplog):
    gt = build_coco_ground_truth(_examples(), LABEL_MAP)
    with caplog.at_level(logging.WARNING):
        metrics = evaluate_coco(gt, [], print_summary=True)
    assert "no detections" in caplog.text
    for t in ("bbox", "segm"):
        assert all(metrics[f"{t}/{s}"] == 0.0 for s in STAT_NAMES)
        assert metrics[f"{t}/per_category"] == {"square": 0.0, "disc": 0.0, "bar": 0.0}


def test_boxes_shifted_by_half_a_box_lower_ap():
    examples = _examples()
    gt = build_coco_ground_truth(examples, LABEL_MAP)
    preds = []
    for ex in examples:
        p = _perfect_predictions(ex)
        width = p["boxes"][:, 3] - p["boxes"][:, 1]
        p["boxes"] = p["boxes"] + np.stack([0 * width, width / 2, 0 * width, width / 2], 1)
        preds.append(p)
    metrics = evaluate_coco(gt, _results(examples, preds), iou_types=("bbox",),
                            print_summary=False)
    # Shifting by half the width leaves IoU = 0.5 / 1.5 = 1/3, below every COCO threshold.
    assert metrics["bbox/AP"] < 0.5
    assert metrics["bbox/AP50"] == 0.0


def test_wrong_category_gives_zero_ap():
    examples = _examples()
    gt = build_coco_ground_truth(examples, LABEL_MAP)
    preds = []
    for ex in examples:
        p = _perfect_predictions(ex)
        p["class_ids"] = (p["class_ids"] % 3 + 1).astype(np.int32)  # 1->2, 2->3, 3->1
        preds.append(p)
    metrics = evaluate_coco(gt, _results(examples, preds), print_summary=False)
    assert metrics["bbox/AP"] == 0.0 and metrics["segm/AP"] == 0.0
    assert set(metrics["segm/per_category"].values()) == {0.0}


def _crowd_case(with_crowd):
    """One disc plus (optionally) a large crowd region of discs; a small disc detection sits
    inside the crowd region and scores higher than the real detection. The class must be the
    same: COCOeval matches per category, and a category without ground truth is skipped."""
    instances = [(2, _disc_mask(48, 48, 8))]
    if with_crowd:
        instances.append((2, _rect_mask(0, 0, 36, 36)))
    ex = _example(1, instances, crowd=(1,) if with_crowd else ())
    pred = _perfect_predictions(ex, score=0.5)
    inside = _rect_mask(10, 10, 20, 20)
    pred = {
        "boxes": np.concatenate([pred["boxes"], [_box_of(inside)]]).astype(np.float32),
        "class_ids": np.concatenate([pred["class_ids"], [2]]).astype(np.int32),
        "scores": np.concatenate([pred["scores"], [0.9]]).astype(np.float32),
        "masks": np.concatenate([pred["masks"], inside[None] > 0]),
    }
    gt = build_coco_ground_truth([ex], LABEL_MAP)
    return evaluate_coco(gt, predictions_to_coco_results(1, pred, LABEL_MAP),
                         print_summary=False)


def test_detection_on_crowd_region_is_not_a_false_positive():
    with_crowd = _crowd_case(with_crowd=True)
    assert with_crowd["bbox/AP"] == pytest.approx(1.0)
    assert with_crowd["segm/AP"] == pytest.approx(1.0)
    # Control: without the crowd annotation the same detection is a false positive. Its high
    # score ranks it first, so precision at the first true positive is 1/2.
    without = _crowd_case(with_crowd=False)
    assert without["bbox/AP"] == pytest.approx(0.5, abs=0.01)
    assert without["segm/AP"] == pytest.approx(0.5, abs=0.01)


def test_bbox_only_accepts_results_with_masks():
    examples = _examples()
    gt = build_coco_ground_truth(examples, LABEL_MAP)
    metrics = evaluate_coco(gt, _results(examples, _imperfect_predictions(examples)),
                            iou_types=("bbox",), print_summary=False)
    assert not any(k.startswith("segm/") for k in metrics)
    assert 0.0 < metrics["bbox/AP"] < 1.0


def test_segm_without_masks_is_a_clear_error():
    examples = _examples()
    gt = build_coco_ground_truth(examples, LABEL_MAP)
    preds = [_perfect_predictions(ex) for ex in examples]
    for p in preds:
        del p["masks"]
    with pytest.raises(ValueError, match="segmentation"):
        evaluate_coco(gt, _results(examples, preds), print_summary=False)


def test_unknown_image_id_is_a_clear_error():
    gt = build_coco_ground_truth(_examples(), LABEL_MAP)
    res = [{"image_id": 999, "category_id": 0, "bbox": [0, 0, 1, 1], "score": 1.0}]
    with pytest.raises(ValueError, match="999"):
        evaluate_coco(gt, res, iou_types=("bbox",), print_summary=False)


def _direct_cocoeval(gt_path, res_path, iou_type, cat_ids=None):
    coco_gt = COCO(str(gt_path))
    coco_dt = coco_gt.loadRes(str(res_path))
    ev = COCOeval(coco_gt, coco_dt, iouType=iou_type)
    if cat_ids is not None:
        ev.params.catIds = cat_ids
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev.stats


def test_numbers_equal_plain_pycocotools_on_json_files(tmp_path, capsys):
    examples = _examples()
    results = _results(examples, _imperfect_predictions(examples))
    gt_path = tmp_path / "gt.json"
    write_coco_json(examples, LABEL_MAP, gt_path)

    metrics = evaluate_coco(build_coco_ground_truth(examples, LABEL_MAP), results,
                            print_summary=True)
    printed = capsys.readouterr().out
    assert "Average Precision" in printed and "Per-category segm" in printed
    assert 0.0 < metrics["bbox/AP"] < 1.0 and 0.0 < metrics["segm/AP"] < 1.0

    # bbox: the results file exactly as produced. segm: without "bbox", so that pycocotools
    # sizes instances by mask area (with a bbox present, loadRes would use the box area).
    bbox_path, segm_path = tmp_path / "bbox.json", tmp_path / "segm.json"
    bbox_path.write_text(json.dumps(results))
    segm_path.write_text(json.dumps([{k: v for k, v in r.items() if k != "bbox"}
                                     for r in results]))
    for t, path in (("bbox", bbox_path), ("segm", segm_path)):
        stats = _direct_cocoeval(gt_path, path, t)
        ours = [metrics[f"{t}/{s}"] for s in STAT_NAMES]
        np.testing.assert_allclose(ours, stats, rtol=0, atol=1e-12, err_msg=t)
        # Per-category AP equals COCOeval's AP restricted to that one category.
        for name, dataset_id in zip(LABEL_MAP.names, LABEL_MAP.dataset_ids):
            single = _direct_cocoeval(gt_path, path, t, cat_ids=[dataset_id])
            assert metrics[f"{t}/per_category"][name] == pytest.approx(single[0], abs=1e-12)

    # The results path form gives the same numbers as the list form.
    from_file = evaluate_coco(COCO(str(gt_path)), str(bbox_path), iou_types=("bbox",),
                              print_summary=False)
    assert from_file["bbox/AP"] == pytest.approx(metrics["bbox/AP"], abs=1e-12)
