"""Tests for mrcnn_tf.postprocess: keep by score, then paste by the rule, then label."""

import numpy as np
import pytest

from mrcnn_tf import postprocess
from mrcnn_tf.labels import LabelMap
from mrcnn_tf.ops import masks as mask_ops

LABELS = LabelMap((7, 0, 42), ("square", "circle", "triangle"))
H, W = 40, 50


def _rows(m=6):
    """Three detections, scores 0.9 / 0.4 / 0.7 (not sorted, so keeping must index, not cut),
    with box-relative masks of distinct patterns."""
    rng = np.random.default_rng(0)
    return {
        "boxes": np.asarray([[2, 3, 20, 30], [10.5, 10, 35, 45], [0, 0, 39.5, 49]], np.float32),
        "scores": np.asarray([0.9, 0.4, 0.7], np.float32),
        "class_ids": np.asarray([3, 1, 2], np.int32),
        "masks": rng.uniform(size=(3, m, m)).astype(np.float32),
        "keypoints": rng.uniform(size=(3, 2, 3)).astype(np.float32),
    }


@pytest.mark.parametrize("paste_rule", sorted(mask_ops.PASTE_RULES))
def test_keeps_then_pastes_the_kept_masks_by_the_rule(paste_rule):
    rows = _rows()
    found = postprocess.finish_detections(rows, H, W, 0.5, paste_rule, LABELS)
    kept = [0, 2]
    np.testing.assert_array_equal(found["boxes"], rows["boxes"][kept])
    np.testing.assert_array_equal(found["scores"], rows["scores"][kept])
    np.testing.assert_array_equal(found["class_ids"], [3, 2])
    np.testing.assert_array_equal(found["keypoints"], rows["keypoints"][kept])
    expected = mask_ops.paste_masks(rows["masks"][kept], rows["boxes"][kept], H, W,
                                    paste_rule).numpy() >= 0.5
    assert found["masks"].dtype == bool and found["masks"].shape == (2, H, W)
    np.testing.assert_array_equal(found["masks"], expected)
    # Labels: contiguous ids 3 and 2 are the dataset's 42 and 0.
    np.testing.assert_array_equal(found["category_ids"], [42, 0])
    assert found["class_names"] == ["triangle", "circle"]


def test_the_two_paste_rules_differ_so_the_rule_is_really_used():
    rows = _rows(m=4)
    d2 = postprocess.finish_detections(rows, H, W, 0.0, "detectron2")["masks"]
    tv = postprocess.finish_detections(rows, H, W, 0.0, "torchvision")["masks"]
    assert np.any(d2 != tv)


def test_unknown_paste_rule_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="paste_rule='nearest'.*detectron2.*torchvision"):
        postprocess.finish_detections(_rows(), H, W, 0.0, "nearest")


def test_served_rows_with_category_ids_and_pasted_masks():
    """A full-image-mask export's rows: category ids (one the map lacks), masks already
    pasted onto a larger padded canvas, cropped to the image and thresholded."""
    image_masks = np.zeros((2, H + 6, W + 4), np.float32)
    image_masks[0, :H, :W] = 0.6
    image_masks[0, H:, :] = 1.0  # padding: must be cut away
    image_masks[1, 5:9, 5:9] = 0.49
    rows = {"boxes": np.zeros((2, 4), np.float32), "scores": np.float32([0.8, 0.6]),
            "category_ids": np.float32([0, 99]), "image_masks": image_masks}
    found = postprocess.finish_detections(rows, H, W, 0.5, label_map=LABELS)
    assert found["masks"].shape == (2, H, W)
    assert found["masks"][0].all() and not found["masks"][1].any()
    np.testing.assert_array_equal(found["category_ids"], [0, 99])
    assert found["class_names"] == ["circle", "id 99"]
    assert "class_ids" not in found


def test_nothing_kept_gives_empty_well_shaped_arrays():
    found = postprocess.finish_detections(_rows(), H, W, 0.95, "detectron2", LABELS)
    assert found["boxes"].shape == (0, 4) and found["masks"].shape == (0, H, W)
    assert found["keypoints"].shape == (0, 2, 3) and found["class_names"] == []
