"""Tests for mrcnn_tf.inspection: the six `mrcnn-tf inspect` views of a Mask R-CNN model and
the data behind them (keypoint models: test_inspection_keypoints.py)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import box_iou, small_model_config  # noqa: E402
from mrcnn_tf import inspection, visualize
from mrcnn_tf.data.shapes import CLASS_NAMES, generate_shapes_example
from mrcnn_tf.inspection import drawing, target_tiles, views
from mrcnn_tf.inspection.data import inspection_data, roi_target_boxes
from mrcnn_tf.data.images import read_image
from mrcnn_tf.modeling.mask_rcnn import MaskRCNN
from mrcnn_tf.ops import boxes as box_ops

SIZE = 64


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return MaskRCNN(small_model_config(SIZE), class_names=list(CLASS_NAMES))


@pytest.fixture(scope="module")
def example():
    ex = generate_shapes_example(5, seed=1, image_size=SIZE, min_shapes=3, max_shapes=3)
    assert len(ex["boxes"]) >= 2
    return ex


@pytest.fixture(scope="module")
def data(model, example):
    return inspection_data(model, example)


@pytest.fixture(scope="module")
def class_names(model):
    return model.label_map.class_names


def _zoom():
    return drawing.display_zoom(SIZE, SIZE)


def _display(data):
    return np.repeat(np.repeat(data["image"], _zoom(), axis=0), _zoom(), axis=1)


# ---------------------------------------------------------------------------------------------
# the data
# ---------------------------------------------------------------------------------------------


def test_data_is_in_the_resized_frame(data, example):
    # small_model_config resizes 64 -> 64; the image and ground truth come through as they are.
    assert data["image_shape"] == (SIZE, SIZE)
    np.testing.assert_array_equal(data["image"], example["image"])
    np.testing.assert_allclose(data["gt_boxes"], example["boxes"], atol=1e-4)
    np.testing.assert_array_equal(data["gt_masks"], example["masks"] != 0)
    assert len(data["anchors"]) == 5 and len(data["feature_shapes"]) == 5
    assert data["num_anchors"] == sum(len(a) for a in data["anchors"])
    # Proposals are the valid ones, inside the image.
    assert 0 < len(data["proposals"]) <= 100
    assert data["proposals"].min() >= 0 and data["proposals"].max() <= SIZE


def test_positive_roi_targets_decode_to_the_matched_gt_box(data):
    positive = data["roi_is_positive"]
    # The ground-truth boxes are added to the proposals, so every object has a positive.
    assert positive.sum() >= len(data["gt_boxes"])
    matched = data["gt_boxes"][data["roi_matched_gt"][positive]]
    np.testing.assert_allclose(data["roi_target_boxes"][positive], matched, atol=1e-3)
    assert (box_iou(data["rois"][positive], matched) >= 0.5 - 1e-6).all()
    np.testing.assert_array_equal(data["roi_classes"][positive],
                                  data["gt_classes"][data["roi_matched_gt"][positive]])
    assert (data["roi_classes"][~positive] == 0).all()
    # The mask branch sees exactly the positives, with the same classes.
    assert len(data["mask_rois"]) == positive.sum()
    np.testing.assert_array_equal(data["mask_classes"],
                                  data["gt_classes"][data["mask_matched_gt"]])


def test_samples_are_the_same_every_time_for_one_image(model, example, data):
    """Sampling is seeded by the image id, so inspecting an image twice shows the same RoIs."""
    tf.random.set_seed(1234)  # stateful randomness must not matter
    again = inspection_data(model, example)
    for key in ("rois", "roi_is_positive", "positive_anchors"):
        np.testing.assert_array_equal(again[key], data[key])


def test_roi_target_boxes_inverts_the_encoding():
    rois = np.asarray([[10, 10, 30, 40], [0, 0, 8, 8], [5, 20, 60, 22]], np.float32)
    gt = np.asarray([[12, 8, 33, 41], [1, 1, 9, 6], [4, 19, 58, 25]], np.float32)
    weights = (10.0, 10.0, 5.0, 5.0)
    targets = box_ops.encode(tf.constant(gt), tf.constant(rois), weights).numpy()
    np.testing.assert_allclose(roi_target_boxes(rois, targets, weights), gt, atol=1e-3)
    # Zero targets (negatives) decode to the RoI itself.
    np.testing.assert_allclose(roi_target_boxes(rois, np.zeros_like(rois), weights),
                               rois, atol=1e-4)


def test_mask_target_of_a_gt_box_roi_is_the_gt_mask(data):
    # The RoI equal to a GT box (added to the proposals) has that GT's mask as its target,
    # resampled to m x m: the target's coverage equals the mask's coverage of its box.
    found = 0
    for roi, target, g in zip(data["mask_rois"], data["mask_targets"],
                              data["mask_matched_gt"]):
        box = data["gt_boxes"][g]
        if np.abs(roi - box).max() > 1e-3:
            continue
        found += 1
        y1, x1, y2, x2 = np.round(box).astype(int)
        coverage = data["gt_masks"][g][y1:y2, x1:x2].mean()
        assert abs(target.mean() - coverage) < 0.1
    assert found >= 1


# ---------------------------------------------------------------------------------------------
# the views
# ---------------------------------------------------------------------------------------------


def test_inspect_example_writes_six_drawn_views(model, example, tmp_path):
    paths = inspection.inspect_example(model, example, tmp_path / "views", max_proposals=20,
                                       score_threshold=0.0)
    # A mask model without keypoints: every view but keypoint_targets.
    assert list(paths) == ["anchors", "proposals", "rois", "mask_targets", "detections",
                           "ground_truth"]
    assert sorted(os.listdir(tmp_path / "views")) == sorted(f"{n}.png" for n in paths)
    display = np.repeat(np.repeat(example["image"], _zoom(), 0), _zoom(), 1)
    for name, path in paths.items():
        assert path == str(tmp_path / "views" / f"{name}.png")
        image = read_image(path)
        assert image.ndim == 3 and image.std() > 0, name
        if name in ("anchors", "mask_targets"):
            continue  # grids, checked below
        # A caption bar above the enlarged image, with something drawn on the image.
        assert image.shape[1] == SIZE * _zoom(), name
        region = image[-display.shape[0]:]
        assert region.shape == display.shape, name
        assert np.any(region != display), name
        assert image.shape[0] > display.shape[0], name


def test_anchor_view_has_one_tile_per_level_and_one_of_positives(data, class_names, tmp_path):
    tiles = views.anchor_tiles(data)
    assert len(tiles) == 5 + 1
    tile_shape = (drawing.caption_height(3) + SIZE * _zoom(), SIZE * _zoom(), 3)
    assert all(t.shape == tile_shape for t in tiles)
    display = _display(data)
    for tile in tiles:
        assert np.any(tile[-display.shape[0]:] != display)  # anchors drawn on every level
    paths = views.write_inspection_views(data, tmp_path, class_names)
    grid = read_image(paths["anchors"])
    pad = drawing.GRID_PADDING
    assert grid.shape == (2 * tile_shape[0] + pad, 3 * tile_shape[1] + 2 * pad, 3)
    np.testing.assert_array_equal(
        grid, visualize.make_grid(tiles, views.ANCHOR_GRID_COLUMNS, pad,
                                  drawing.GRID_PAD_VALUE))
    assert len(data["positive_anchors"]) > 0
    # Positive anchors overlap a GT box (RPN fg threshold, or the best anchor of a box).
    iou = np.max([[box_iou(a, g) for g in data["gt_boxes"]] for a in data["positive_anchors"]],
                 axis=1)
    assert (iou > 0.1).all()


def test_mask_target_tiles_show_the_targets(data, class_names, tmp_path):
    tiles = target_tiles.mask_target_tiles(data, class_names)
    targets = data["mask_targets"]
    m = targets.shape[1]
    assert len(tiles) == len(targets) > 0
    cell = target_tiles.mask_panel_side(m) // m
    assert cell >= 2  # enlarged
    for tile, target in zip(tiles, targets):
        crop, panel = target_tiles.split_mask_tile(tile, m)
        # Heat map: 1 is red, 0 is blue; every target cell is a cell x cell square.
        red = panel[..., 0].astype(int) > panel[..., 2].astype(int)
        assert red.sum() == target.sum() * cell * cell
        np.testing.assert_array_equal(red[::cell, ::cell], target >= 0.5)
        assert crop.std() > 0
    paths = views.write_inspection_views(data, tmp_path, class_names)
    np.testing.assert_array_equal(
        read_image(paths["mask_targets"]),
        visualize.make_grid(tiles, target_tiles.MASK_GRID_COLUMNS, drawing.GRID_PADDING,
                            drawing.GRID_PAD_VALUE))


def test_proposals_view_draws_at_most_max_proposals(data):
    few = views.proposals_view(data, max_proposals=1)
    many = views.proposals_view(data, max_proposals=50)
    display = _display(data)
    changed_few = np.any(few[-display.shape[0]:] != display, axis=-1).sum()
    changed_many = np.any(many[-display.shape[0]:] != display, axis=-1).sum()
    assert 0 < changed_few < changed_many


def test_empty_annotation_example(model, tmp_path):
    ex = generate_shapes_example(0, seed=0, image_size=SIZE)
    ex.update(boxes=np.zeros([0, 4], np.float32), class_ids=np.zeros([0], np.int32),
              masks=np.zeros([0, SIZE, SIZE], np.uint8), is_crowd=np.zeros([0], bool))
    data = inspection_data(model, ex)
    assert len(data["gt_boxes"]) == 0 and len(data["positive_anchors"]) == 0
    assert not data["roi_is_positive"].any() and len(data["rois"]) > 0
    assert len(data["mask_targets"]) == 0
    assert len(target_tiles.mask_target_tiles(data, None)) == 1  # the "none" tile
    paths = views.write_inspection_views(data, tmp_path, model.label_map.class_names)
    for path in paths.values():
        assert read_image(path).std() > 0


def test_mini_mask_model_without_detections(tmp_path, example):
    # COCO presets store ground truth as mini-masks; the views must paste them back. The
    # score threshold leaves an untrained model with no detections, which must draw too.
    model = MaskRCNN(small_model_config(SIZE, mini_mask_size=28, score_threshold=0.99),
                     class_names=list(CLASS_NAMES))
    data = inspection_data(model, example)
    assert data["det_boxes"].shape == (0, 4) and data["det_masks"].shape == (0, SIZE, SIZE)
    paths = views.write_inspection_views(data, tmp_path, model.label_map.class_names)
    assert read_image(paths["detections"]).std() > 0
    for pasted, original in zip(data["gt_masks"], example["masks"] != 0):
        inter = np.logical_and(pasted, original).sum()
        assert inter / np.logical_or(pasted, original).sum() > 0.8
    positive = data["roi_is_positive"]
    np.testing.assert_allclose(data["roi_target_boxes"][positive],
                               data["gt_boxes"][data["roi_matched_gt"][positive]], atol=1e-3)
    assert len(data["mask_targets"]) == positive.sum()


def test_bad_inputs_are_named(model, example, tmp_path):
    bad = {k: v for k, v in example.items() if k != "masks"}
    with pytest.raises(ValueError, match="masks"):
        inspection.inspect_example(model, bad, tmp_path)
    with pytest.raises(ValueError, match="max_proposals"):
        inspection.inspect_example(model, example, tmp_path, max_proposals=0)
    assert not os.listdir(tmp_path)
