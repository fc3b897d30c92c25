"""COCO keypoint evaluation (OKS): ground truth and results conversion, evaluate_coco's
"keypoints" type, and evaluate_model / COCOEvalCallback with a stand-in keypoint model."""

import json
import logging

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn_tf import keypoint_spec
from mrcnn_tf.config import get_config
from mrcnn_tf.evaluation import coco_eval, evaluator

SIZE = 64
NAMES = ("head", "left_hand", "right_hand")
SKELETON = (0, 1, 0, 2)
SIGMAS = (0.05, 0.06, 0.06)
# Dataset id 5: the results must carry the dataset's id, not the contiguous 1.
LABELS = coco_eval.LabelMap((5,), ("person",))


def _image(image_id, people):
    """One ground-truth example; people: list of ((y1, x1, y2, x2), keypoints [K, 3] (y, x, v)).

    Masks are the boxes filled, so each annotation's area (OKS's scale) is the box area.
    """
    masks = np.zeros([len(people), SIZE, SIZE], np.uint8)
    for i, (box, _) in enumerate(people):
        masks[i, box[0]:box[2], box[1]:box[3]] = 1
    image = np.full([SIZE, SIZE, 3], image_id, np.uint8)  # distinct pixels per image
    return {"image": image, "image_id": np.int64(image_id), "masks": masks,
            "boxes": np.asarray([b for b, _ in people], np.float32).reshape(-1, 4),
            "class_ids": np.ones([len(people)], np.int32),
            "keypoints": np.asarray([k for _, k in people], np.float32).reshape(-1, 3, 3)}


def _examples():
    """Three images: a person with an occluded and an unlabelled keypoint and one with no
    labelled keypoint at all (COCOeval ignores it); a fully labelled person; no people."""
    return [
        _image(1, [((4, 4, 44, 40), [[8.5, 20.5, 2], [30.5, 6.5, 1], [0, 0, 0]]),
                   ((20, 42, 60, 62), [[0, 0, 0]] * 3)]),
        _image(2, [((10, 10, 50, 50), [[12.5, 30.5, 2], [40.5, 12.5, 2], [40.5, 47.5, 2]])]),
        _image(3, []),
    ]


def _perfect(example, shift=0.0):
    """The ground truth as a keypoint prediction (no masks), keypoints moved right by `shift`
    pixels. Unlabelled keypoints go to the box centre, as a model would put them somewhere."""
    boxes = example["boxes"]
    centre = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], -1)
    kp = example["keypoints"].copy()
    unlabelled = kp[..., 2] == 0
    kp[..., :2] = np.where(unlabelled[..., None], centre[:, None, :], kp[..., :2])
    kp[..., 1] += shift
    kp[..., 2] = 0.9  # the keypoint score
    return {"boxes": boxes, "class_ids": example["class_ids"],
            "scores": np.full([len(boxes)], 0.8, np.float32), "keypoints": kp}


def _results(examples, shift=0.0):
    out = []
    for ex in examples:
        out += coco_eval.predictions_to_coco_results(ex["image_id"], _perfect(ex, shift), LABELS)
    return out


def _gt(examples=None):
    return coco_eval.build_coco_ground_truth(examples or _examples(), LABELS, NAMES, SKELETON)


# ---------------------------------------------------------------------------------------------
# Conversions
# ---------------------------------------------------------------------------------------------


def test_ground_truth_keypoints_in_coco_convention():
    data = coco_eval.coco_ground_truth_dict(_examples(), LABELS, NAMES, SKELETON)
    assert data["categories"] == [{"id": 5, "name": "person", "keypoints": list(NAMES),
                                   "skeleton": [[1, 2], [1, 3]]}]
    first, empty, full = data["annotations"]
    # 0.5 subtracted (COCO's integer index); the unlabelled keypoint is 0, 0, 0.
    assert first["keypoints"] == [20.0, 8.0, 2, 6.0, 30.0, 1, 0, 0, 0]
    assert first["num_keypoints"] == 2
    assert empty["keypoints"] == [0] * 9 and empty["num_keypoints"] == 0
    assert full["num_keypoints"] == 3
    assert first["area"] == 40 * 36  # the mask's pixel count: OKS's scale
    json.dumps(data)


def test_ground_truth_keypoints_without_names_or_with_wrong_names():
    data = coco_eval.coco_ground_truth_dict(_examples(), LABELS)
    assert data["categories"][0]["keypoints"] == ["kp0", "kp1", "kp2"]
    assert data["categories"][0]["skeleton"] == []
    with pytest.raises(ValueError, match="keypoint_names: 2 names, expected 3"):
        coco_eval.coco_ground_truth_dict(_examples(), LABELS, NAMES[:2])
    with pytest.raises(ValueError, match="keypoint_skeleton"):
        coco_eval.coco_ground_truth_dict(_examples(), LABELS, NAMES, (0, 3))


def test_ground_truth_without_keypoints_has_plain_categories():
    examples = _examples()
    for ex in examples:
        del ex["keypoints"]
    data = coco_eval.coco_ground_truth_dict(examples, LABELS, NAMES, SKELETON)
    assert data["categories"] == [{"id": 5, "name": "person"}]
    assert not any("keypoints" in a for a in data["annotations"])


def test_ground_truth_keypoint_errors_name_the_example():
    examples = _examples()
    del examples[1]["keypoints"]
    with pytest.raises(ValueError, match=r"example #1 \(image_id 2\): no 'keypoints'"):
        coco_eval.coco_ground_truth_dict(examples, LABELS)
    examples = _examples()
    examples[1]["keypoints"][0, 0, 2] = 3
    with pytest.raises(ValueError, match="visibilities"):
        coco_eval.coco_ground_truth_dict(examples, LABELS)
    examples = _examples()
    examples[1]["keypoints"] = examples[1]["keypoints"][:, :2]
    with pytest.raises(ValueError, match=r"\[1, 2, 3\], expected \[1, 3, 3\]"):
        coco_eval.coco_ground_truth_dict(examples, LABELS)


def test_results_keypoints_in_coco_convention():
    pred = {"boxes": np.float32([[10, 20, 30, 50]]), "class_ids": np.int32([1]),
            "scores": np.float32([0.75]),
            "keypoints": np.float32([[[10.5, 20.5, 0.3], [15.0, 25.0, 0.6], [29.5, 49.5, 1]]])}
    (res,) = coco_eval.predictions_to_coco_results(7, pred, LABELS)
    assert res["category_id"] == 5 and res["score"] == pytest.approx(0.75)  # detection score
    np.testing.assert_allclose(res["keypoints"],
                               [20, 10, 0.3, 24.5, 14.5, 0.6, 49, 29, 1], rtol=1e-6)
    assert res["bbox"] == [20.0, 10.0, 30.0, 20.0]
    assert "segmentation" not in res  # no masks, no segm result
    json.dumps(res)
    with pytest.raises(ValueError, match=r"keypoints have shape \(3, 3\), expected \[1, K, 3\]"):
        coco_eval.predictions_to_coco_results(7, {**pred, "keypoints": pred["keypoints"][0]},
                                              LABELS)


# ---------------------------------------------------------------------------------------------
# evaluate_coco
# ---------------------------------------------------------------------------------------------


def test_perfect_keypoints_give_ap_one():
    metrics = coco_eval.evaluate_coco(_gt(), _results(_examples()), iou_types=("keypoints",),
                                      print_summary=False, oks_sigmas=SIGMAS)
    assert set(metrics) == ({f"keypoints/{s}" for s in coco_eval.KEYPOINT_STAT_NAMES}
                            | {"keypoints/per_category"})
    assert metrics["keypoints/AP"] == pytest.approx(1.0)
    assert metrics["keypoints/AR"] == pytest.approx(1.0)
    assert metrics["keypoints/per_category"] == pytest.approx({"person": 1.0})


def test_shifted_keypoints_give_lower_ap():
    def shifted(shift):
        return coco_eval.evaluate_coco(_gt(), _results(_examples(), shift=shift),
                                       iou_types=("keypoints",), print_summary=False,
                                       oks_sigmas=SIGMAS)

    # 3 pixels on objects of ~1500 pixels with sigmas 0.05-0.06: OKS about 0.75-0.8, so the
    # strict thresholds fail while 0.5 still matches; 4 pixels: OKS about 0.6-0.7.
    three, four = shifted(3.0), shifted(4.0)
    assert 0.0 < three["keypoints/AP"] < 0.9
    assert three["keypoints/AP50"] == pytest.approx(1.0)
    assert four["keypoints/AP"] < three["keypoints/AP"]
    assert four["keypoints/AP75"] == 0.0


def test_numbers_equal_plain_pycocotools_on_json_files(tmp_path):
    examples = _examples()
    results = _results(examples, shift=2.0)
    gt_path, res_path = tmp_path / "gt.json", tmp_path / "res.json"
    coco_eval.write_coco_json(examples, LABELS, gt_path, NAMES, SKELETON)
    res_path.write_text(json.dumps(results))
    coco_gt = COCO(str(gt_path))
    direct = COCOeval(coco_gt, coco_gt.loadRes(str(res_path)), iouType="keypoints")
    direct.params.kpt_oks_sigmas = np.array(SIGMAS)
    direct.evaluate()
    direct.accumulate()
    direct.summarize()
    ours = coco_eval.evaluate_coco(_gt(examples), results, iou_types=("keypoints",),
                                   print_summary=False, oks_sigmas=SIGMAS)
    np.testing.assert_allclose([ours[f"keypoints/{s}"] for s in coco_eval.KEYPOINT_STAT_NAMES],
                               direct.stats, rtol=0, atol=1e-12)
    assert 0.0 < ours["keypoints/AP"] < 1.0


def test_sigma_count_must_match_the_keypoints():
    with pytest.raises(ValueError, match=r"oks_sigmas: 2 sigmas .* expected 3"):
        coco_eval.evaluate_coco(_gt(), _results(_examples()), iou_types=("keypoints",),
                                print_summary=False, oks_sigmas=SIGMAS[:2])
    # Checked before anything else, also without detections.
    with pytest.raises(ValueError, match="oks_sigmas"):
        coco_eval.evaluate_coco(_gt(), [], iou_types=("keypoints",), print_summary=False,
                                oks_sigmas=(0.1,) * 4)


def test_default_sigmas_are_cocos_for_coco_person_keypoints_only():
    # Someone else's keypoints: no default sigma, the error names the config field.
    with pytest.raises(ValueError, match="keypoint_oks_sigmas"):
        coco_eval.evaluate_coco(_gt(), _results(_examples()), iou_types=("keypoints",),
                                print_summary=False)
    # COCO's 17 person keypoints: COCO's sigmas without being told.
    k = len(keypoint_spec.COCO_PERSON_KEYPOINT_NAMES)
    ex = {"image": np.zeros([SIZE, SIZE, 3], np.uint8), "image_id": 1,
          "boxes": np.float32([[4, 4, 60, 40]]), "class_ids": np.int32([1]),
          "keypoints": np.stack([np.linspace(6, 58, k) + 0.5, np.full(k, 20.5),
                                 np.full(k, 2.0)], -1)[None].astype(np.float32)}
    gt = coco_eval.build_coco_ground_truth([ex], LABELS, keypoint_spec.COCO_PERSON_KEYPOINT_NAMES)
    pred = {"boxes": ex["boxes"], "class_ids": ex["class_ids"], "scores": np.float32([0.9]),
            "keypoints": ex["keypoints"]}
    metrics = coco_eval.evaluate_coco(gt, coco_eval.predictions_to_coco_results(1, pred, LABELS),
                                      iou_types=("keypoints",), print_summary=False)
    assert metrics["keypoints/AP"] == pytest.approx(1.0)


def test_keypoints_need_keypoint_ground_truth():
    examples = _examples()
    for ex in examples:
        del ex["keypoints"]
    with pytest.raises(ValueError, match="no category of the ground truth lists 'keypoints'"):
        coco_eval.evaluate_coco(_gt(examples), _results(_examples()), iou_types=("keypoints",),
                                print_summary=False, oks_sigmas=SIGMAS)


def test_keypoint_evaluation_needs_keypoints_in_every_result():
    results = _results(_examples())
    del results[1]["keypoints"]
    with pytest.raises(ValueError, match="result #1 .* has none. Pass keypoints"):
        coco_eval.evaluate_coco(_gt(), results, iou_types=("keypoints",),
                                print_summary=False, oks_sigmas=SIGMAS)


def test_empty_results_give_zero_keypoint_metrics(caplog):
    with caplog.at_level(logging.WARNING):
        metrics = coco_eval.evaluate_coco(_gt(), [], iou_types=("bbox", "keypoints"),
                                          print_summary=False, oks_sigmas=SIGMAS)
    assert "no detections" in caplog.text
    assert all(metrics[f"keypoints/{s}"] == 0.0 for s in coco_eval.KEYPOINT_STAT_NAMES)
    assert metrics["keypoints/per_category"] == {"person": 0.0}
    assert "keypoints/APs" not in metrics and "bbox/APs" in metrics


# ---------------------------------------------------------------------------------------------
# evaluate_model, COCOEvalCallback, the best-checkpoint metric
# ---------------------------------------------------------------------------------------------


def _keypoint_config(**changes):
    fields = dict(num_classes=1, mask_on=False, num_keypoints=3, keypoint_names=NAMES,
                  keypoint_skeleton=SKELETON, keypoint_oks_sigmas=SIGMAS)
    return get_config("shapes_tiny").replace(**{**fields, **changes})


class KeypointModel:
    """A keypoint model without masks answering each image with its ground truth."""

    def __init__(self, examples, config=None, shift=0.0):
        self.config = config or _keypoint_config()
        self.truth = {int(ex["image"][0, 0, 0]): ex for ex in examples}
        self.shift = shift

    def predict_images(self, images):
        return [_perfect(self.truth[int(image[0, 0, 0])], self.shift) for image in images]


def test_evaluate_model_scores_boxes_and_keypoints_of_a_keypoint_model():
    examples = _examples()
    metrics = evaluator.evaluate_model(KeypointModel(examples), examples, LABELS,
                                       print_summary=False)
    assert metrics["keypoints/AP"] == pytest.approx(1.0)
    assert metrics["bbox/AP"] == pytest.approx(1.0)
    assert not any(k.startswith("segm/") for k in metrics)
    assert metrics["num_images"] == 3
    shifted = evaluator.evaluate_model(KeypointModel(examples, shift=3.0), examples, LABELS,
                                       print_summary=False)
    assert shifted["keypoints/AP"] < 0.9 and shifted["bbox/AP"] == pytest.approx(1.0)


def test_evaluate_model_takes_sigmas_from_the_config():
    examples = _examples()
    wide = KeypointModel(examples, _keypoint_config(keypoint_oks_sigmas=(1.0, 1.0, 1.0)),
                         shift=3.0)
    # Wide sigmas forgive the 3-pixel shift that the config's narrow ones punish.
    assert evaluator.evaluate_model(wide, examples, LABELS, print_summary=False)[
        "keypoints/AP"] == pytest.approx(1.0)


def test_evaluate_model_without_keypoint_ground_truth():
    model = KeypointModel(_examples())
    examples = _examples()
    for ex in examples:
        del ex["keypoints"]
    # Defaults: the keypoint AP that cannot be computed is left out; asked for: an error.
    metrics = evaluator.evaluate_model(model, examples, LABELS, print_summary=False)
    assert "bbox/AP" in metrics and "keypoints/AP" not in metrics
    with pytest.raises(ValueError, match="no category of the ground truth lists 'keypoints'"):
        evaluator.evaluate_model(model, examples, LABELS, iou_types=("keypoints",),
                                 print_summary=False)


def test_callback_logs_keypoint_ap_of_a_keypoint_model(tmp_path):
    examples = _examples()
    callback = evaluator.COCOEvalCallback(examples, LABELS, log_dir=str(tmp_path / "tb"))
    callback.set_model(KeypointModel(examples))
    logs = {}
    callback.on_epoch_end(0, logs)
    assert logs["keypoints_AP"] == pytest.approx(1.0) and logs["bbox_AP"] == pytest.approx(1.0)
    assert "segm_AP" not in logs
    # The ground truth the callback built names the config's keypoints and skeleton.
    assert callback.coco_gt.cats[5]["keypoints"] == list(NAMES)
    assert callback.coco_gt.cats[5]["skeleton"] == [[1, 2], [1, 3]]


def test_iou_types_and_best_metric_follow_the_config():
    keypoints_only = _keypoint_config()
    assert evaluator.default_iou_types(keypoints_only) == ("bbox", "keypoints")
    assert evaluator.best_metric(keypoints_only) == "keypoints_AP"
    both = keypoints_only.replace(mask_on=True)
    assert evaluator.default_iou_types(both) == ("bbox", "segm", "keypoints")
    assert evaluator.best_metric(both) == "segm_AP"
    plain = get_config("shapes_tiny")
    assert evaluator.default_iou_types(plain) == ("bbox", "segm")
    assert evaluator.best_metric(plain) == "segm_AP"
    assert evaluator.best_metric(plain.replace(mask_on=False)) == "bbox_AP"
    assert evaluator.default_iou_types(None) == ("bbox", "segm")
