"""Tests for mrcnn_tf.inspection on Keypoint R-CNN and maskless models: keypoint ground truth,
the keypoint_targets view, predicted poses, and no mask_targets view without a mask head."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import run_inprocess, small_model_config
from mrcnn_tf import inspection
from mrcnn_tf.cli import inspect as inspect_cli
from mrcnn_tf.config import get_config
from mrcnn_tf.data import keypoint_shapes
from mrcnn_tf.data.shapes import CLASS_NAMES, generate_shapes_example
from mrcnn_tf.inspection import drawing, target_tiles, views
from mrcnn_tf.inspection.data import inspection_data, keypoint_target_points
from mrcnn_tf.data.images import read_image
from mrcnn_tf.modeling.mask_rcnn import MaskRCNN
from mrcnn_tf.ops import keypoints as keypoint_ops

SIZE = 64
# A small head: the views do not depend on its size, and the tests stay fast.
KEYPOINT_OVERRIDES = dict(image_min_size=SIZE, image_max_size=SIZE, score_threshold=0.0,
                          keypoint_head_conv_dim=16, keypoint_head_num_convs=1,
                          fpn_channels=32, box_head_fc_dim=64, detections_per_image=10)
KEYPOINT_VIEWS = ["anchors", "proposals", "rois", "keypoint_targets", "detections",
                  "ground_truth"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return MaskRCNN(get_config("shapes_keypoints_tiny", **KEYPOINT_OVERRIDES),
                    class_names=list(keypoint_shapes.CLASS_NAMES))


@pytest.fixture(scope="module")
def example():
    # Image 5 of seed 1: three houses, one of them partly hidden (occluded keypoints).
    ex = keypoint_shapes.generate_keypoint_example(5, seed=1, image_size=SIZE)
    assert len(ex["boxes"]) >= 2 and (ex["keypoints"][..., 2] > 0).sum() >= 10
    return ex


@pytest.fixture(scope="module")
def data(model, example):
    return inspection_data(model, example)


def _zoom():
    return drawing.display_zoom(SIZE, SIZE)


def _pixel(image, y, x):
    """The pixel holding continuous point (y, x), as int [3]."""
    return image[int(np.floor(y)), int(np.floor(x))].astype(int)


def _changed_near(image, other, y, x, reach=2):
    """Whether `image` and `other` differ within `reach` pixels of continuous point (y, x): a
    dot drawn there changes its rim even where its colour equals what lies under it (a
    keypoint on its box's edge, drawn in the box's colour)."""
    row, col = int(np.floor(y)), int(np.floor(x))
    window = np.s_[max(row - reach, 0):row + reach + 1, max(col - reach, 0):col + reach + 1]
    return bool(np.any(image[window] != other[window]))


def _half_bins(rois, size):
    """Half the (height, width) of one heatmap bin of each RoI: float [..., 2]."""
    rois = np.asarray(rois, np.float64)
    return np.stack([rois[..., 2] - rois[..., 0], rois[..., 3] - rois[..., 1]], -1) / (2 * size)


def _inside(keypoints, rois):
    """Whether each keypoint [..., P, K, 3] lies in the closed box of its RoI [..., P, 4]."""
    y, x = keypoints[..., 0], keypoints[..., 1]
    rois = np.asarray(rois)[..., None, :]
    return ((y >= rois[..., 0]) & (y <= rois[..., 2]) & (x >= rois[..., 1])
            & (x <= rois[..., 3]))


def _with_roi(data, roi, matched_gt):
    """`data` with one more positive RoI `roi` matched to GT `matched_gt`, its keypoint targets
    made by the model's own encoder (as DetectionTargetLayer makes them)."""
    out = dict(data)
    out["mask_rois"] = np.concatenate([data["mask_rois"], np.float32(roi)[None]])
    out["mask_matched_gt"] = np.append(data["mask_matched_gt"], np.int32(matched_gt))
    out["mask_classes"] = np.append(data["mask_classes"], data["gt_classes"][matched_gt])
    indices, valid = keypoint_ops.keypoint_targets(
        data["gt_keypoints"][out["mask_matched_gt"]], out["mask_rois"],
        data["keypoint_heatmap_size"])
    out["keypoint_targets"], out["keypoint_valid"] = indices.numpy(), valid.numpy()
    out["keypoint_target_points"] = keypoint_target_points(
        out["mask_rois"], out["keypoint_targets"], out["keypoint_valid"],
        data["keypoint_heatmap_size"])
    return out


# ---------------------------------------------------------------------------------------------
# the pure function
# ---------------------------------------------------------------------------------------------


def test_keypoint_target_points_are_the_target_bin_centres():
    size = 56
    # RoI 56 x 112: bins are 1 x 2 pixels; index 3 * 56 + 5 is the bin (3, 5).
    rois = np.asarray([[0, 0, 56, 112]], np.float32)
    points = keypoint_target_points(rois, [[3 * size + 5, 0]], [[True, False]], size)
    assert points.shape == (1, 2, 3) and points.dtype == np.float32
    np.testing.assert_allclose(points[0, 0], [3.5, 11.0, 2.0])
    np.testing.assert_array_equal(points[0, 1], [0.0, 0.0, 0.0])  # not a target: unlabelled

    # Round trip through the training encoder: every valid target lies within half a bin of
    # the keypoint it was made from; labelled keypoints outside the RoI are not targets.
    rng = np.random.default_rng(0)
    y1x1 = rng.uniform(0, 40, [2, 5, 2])
    rois = np.concatenate([y1x1, y1x1 + rng.uniform(3, 60, [2, 5, 2])], -1).astype(np.float32)
    # Keypoints in and around their RoIs: from 20% of a side before it to 20% after it.
    relative = rng.uniform(-0.2, 1.2, [2, 5, 12, 2])
    yx = rois[:, :, None, :2] + relative * (rois[:, :, None, 2:] - rois[:, :, None, :2])
    keypoints = np.concatenate([yx, rng.integers(0, 3, [2, 5, 12, 1])], -1).astype(np.float32)
    indices, valid = keypoint_ops.keypoint_targets(keypoints, rois, size)
    points = keypoint_target_points(rois, indices.numpy(), valid.numpy(), size)
    valid = valid.numpy()
    assert points.shape == (2, 5, 12, 3) and 20 < valid.sum() < valid.size - 20
    error = np.abs(points[..., :2] - keypoints[..., :2])
    assert (error <= _half_bins(rois, size)[..., None, :] + 1e-4)[valid].all()
    assert (points[..., 2] == np.where(valid, 2.0, 0.0)).all()
    np.testing.assert_array_equal(valid, _inside(keypoints, rois) & (keypoints[..., 2] > 0))


# ---------------------------------------------------------------------------------------------
# the data
# ---------------------------------------------------------------------------------------------


def test_keypoint_data_has_targets_and_poses_but_no_masks(data, example):
    # 64 -> 64: no resize, so the ground-truth keypoints come through as they are.
    np.testing.assert_allclose(data["gt_keypoints"], example["keypoints"], atol=1e-4)
    assert "mask_targets" not in data and "det_masks" not in data  # no mask head
    k = keypoint_shapes.NUM_KEYPOINTS
    assert data["det_keypoints"].shape == (len(data["det_boxes"]), k, 3)
    assert data["keypoint_skeleton"] == tuple(keypoint_shapes.SKELETON)
    p = len(data["mask_rois"])
    assert p >= len(data["gt_boxes"])  # the GT boxes join the proposals
    assert data["keypoint_valid"].shape == data["keypoint_targets"].shape == (p, k)
    # Every target decodes to within half a bin of the GT keypoint of its matched instance.
    gt = data["gt_keypoints"][data["mask_matched_gt"]]
    rois = data["mask_rois"]
    valid = data["keypoint_valid"]
    assert valid.sum() >= 10
    error = np.abs(data["keypoint_target_points"][..., :2] - gt[..., :2])
    half_bins = _half_bins(rois, data["keypoint_heatmap_size"])
    assert (error <= half_bins[:, None] + 1e-4)[valid].all()
    # Labelled keypoints without a target lie outside their RoI.
    np.testing.assert_array_equal(valid, _inside(gt, rois) & (gt[..., 2] > 0))


# ---------------------------------------------------------------------------------------------
# the views
# ---------------------------------------------------------------------------------------------


def test_keypoint_model_writes_the_keypoint_views_and_no_mask_targets(model, example, data,
                                                                      tmp_path):
    out = tmp_path / "views"
    paths = inspection.inspect_example(model, example, out, max_proposals=20,
                                       score_threshold=0.0)
    assert list(paths) == KEYPOINT_VIEWS == list(views.view_names(data))
    assert sorted(os.listdir(out)) == sorted(f"{name}.png" for name in KEYPOINT_VIEWS)
    for name, path in paths.items():
        assert path == str(out / f"{name}.png")
        with open(path, "rb") as f:
            assert f.read(8) == PNG_SIGNATURE, name
    names = model.label_map.class_names
    # The PNG is the view (of the right size), and the views of the whole image keep the
    # enlarged image's width.
    np.testing.assert_array_equal(read_image(paths["keypoint_targets"]),
                                  target_tiles.keypoint_targets_view(data, names))
    for name in ("detections", "ground_truth"):
        assert read_image(paths[name]).shape[1] == SIZE * _zoom(), name


def test_ground_truth_view_draws_the_labelled_keypoints(data):
    view = views.ground_truth_view(data, None)
    unlabelled = dict(data, gt_keypoints=np.zeros_like(data["gt_keypoints"]))
    plain = views.ground_truth_view(unlabelled, None)
    assert view.shape == plain.shape
    z = _zoom()
    region, plain_region = view[-SIZE * z:], plain[-SIZE * z:]
    labelled = data["gt_keypoints"][data["gt_keypoints"][..., 2] > 0]
    assert len(labelled) >= 10
    for y, x, _ in labelled:  # the dots are where the keypoints are
        assert _changed_near(region, plain_region, y * z, x * z)
    # and nowhere far from a keypoint or a limb: away from the poses both views agree.
    far = np.ones(region.shape[:2], bool)
    for y, x in (labelled[:, :2] * z).astype(int):
        far[max(y - 40, 0):y + 40, max(x - 40, 0):x + 40] = False
    np.testing.assert_array_equal(region[far], plain_region[far])


def test_detections_view_draws_poses_without_masks(data):
    # One detection with a house pose in the middle of its box: drawn at score 0.9, not at
    # 0.01 (below the keypoint threshold).
    box = np.asarray([[10, 12, 54, 50]], np.float32)
    pose = np.asarray([[[16, 31], [28, 18], [28, 44], [50, 18], [50, 44], [39, 31]]],
                      np.float32)
    def scored(score):
        return dict(data, det_boxes=box, det_class_ids=np.ones([1], np.int32),
                    det_scores=np.ones([1], np.float32),
                    det_keypoints=np.concatenate([pose, np.full([1, 6, 1], score)], -1))

    assert "det_masks" not in data
    drawn = views.detections_view(scored(0.9), None, score_threshold=0.5)
    hidden = views.detections_view(scored(0.01), None, score_threshold=0.5)
    z = _zoom()
    # The dots, and the middle of the roof's left slope (limb 0-1, the skeleton).
    for y, x in np.concatenate([pose[0], (pose[0, :1] + pose[0, 1:2]) / 2]):
        assert _changed_near(drawn[-SIZE * z:], hidden[-SIZE * z:], y * z, x * z, reach=0)


def test_keypoint_target_tiles_show_targets_and_dropped_keypoints(data):
    # A RoI over the lower half of GT 0: the keypoints above it have no target.
    g = 0
    y1, x1, y2, x2 = data["gt_boxes"][g]
    roi = np.asarray([(y1 + y2) / 2, x1, y2, x2], np.float32)
    extended = _with_roi(data, roi, g)
    labelled = extended["gt_keypoints"][g][:, 2] > 0
    valid = extended["keypoint_valid"][-1]
    assert valid.any() and (labelled & ~valid).any()

    tiles = target_tiles.keypoint_target_tiles(extended, None)
    side = target_tiles.KEYPOINT_PANEL_SIDE
    assert len(tiles) == len(extended["mask_rois"])
    assert all(t.shape == (drawing.caption_height(2) + side, side, 3) for t in tiles)
    # The new RoI comes right after the other positives of GT 0 (tiles group by instance).
    order = np.lexsort((np.arange(len(tiles)), extended["mask_matched_gt"]))
    panel = tiles[int(np.flatnonzero(order == len(tiles) - 1)[0])][-side:]
    region = target_tiles.keypoint_tile_region(roi, data["gt_boxes"][g],
                                               data["gt_keypoints"][g])
    scale = side / (region[2] - region[0])
    for (ty, tx, _), (gy, gx, _), target, label in zip(
            extended["keypoint_target_points"][-1], extended["gt_keypoints"][g], valid,
            labelled):
        if target:  # a magenta dot at the target bin centre
            np.testing.assert_array_equal(
                _pixel(panel, (ty - region[0]) * scale, (tx - region[1]) * scale), (255, 0, 255))
        elif label:  # a red cross on the labelled keypoint outside the RoI
            np.testing.assert_array_equal(
                _pixel(panel, (gy - region[0]) * scale, (gx - region[1]) * scale), (255, 40, 40))


def test_many_positives_show_every_instance():
    matched = np.asarray([0] * 30 + [1] * 3 + [2])
    chosen = target_tiles._spread_over_instances(matched, 24)
    assert len(chosen) == 24 and len(set(chosen.tolist())) == 24
    assert set(matched[chosen].tolist()) == {0, 1, 2}
    assert (np.diff(matched[chosen]) >= 0).all()  # grouped by instance
    assert set(chosen.tolist()) >= {30, 31, 32, 33}  # the small instances all fit


def test_keypoint_view_without_positives(model, tmp_path):
    ex = keypoint_shapes.generate_keypoint_example(0, seed=0, image_size=SIZE)
    k = keypoint_shapes.NUM_KEYPOINTS
    ex.update(boxes=np.zeros([0, 4], np.float32), class_ids=np.zeros([0], np.int32),
              masks=np.zeros([0, SIZE, SIZE], np.uint8), is_crowd=np.zeros([0], bool),
              keypoints=np.zeros([0, k, 3], np.float32))
    data = inspection_data(model, ex)
    assert data["gt_keypoints"].shape == (0, k, 3) and len(data["mask_rois"]) == 0
    assert len(target_tiles.keypoint_target_tiles(data, None)) == 1  # the "none" tile
    paths = views.write_inspection_views(data, tmp_path, None)
    assert list(paths) == KEYPOINT_VIEWS
    assert read_image(paths["keypoint_targets"]).std() > 0


def test_maskless_model_without_keypoints(tmp_path):
    # A Faster R-CNN (no mask head, no keypoints): no mask targets, no masks anywhere.
    keras.utils.set_random_seed(0)
    model = MaskRCNN(small_model_config(SIZE, mask_on=False), class_names=list(CLASS_NAMES))
    ex = generate_shapes_example(5, seed=1, image_size=SIZE, min_shapes=3, max_shapes=3)
    data = inspection_data(model, ex)
    assert not {"mask_targets", "det_masks", "keypoint_targets", "det_keypoints"} & set(data)
    assert len(data["det_boxes"]) > 0 and len(data["mask_rois"]) >= len(data["gt_boxes"])
    paths = inspection.inspect_example(model, ex, tmp_path, score_threshold=0.0)
    assert list(paths) == ["anchors", "proposals", "rois", "detections", "ground_truth"]
    assert sorted(os.listdir(tmp_path)) == sorted(f"{name}.png" for name in paths)
    display = np.repeat(np.repeat(ex["image"], _zoom(), 0), _zoom(), 1)
    detections = read_image(paths["detections"])[-display.shape[0]:]
    assert np.any(detections != display)  # boxes drawn without masks


# ---------------------------------------------------------------------------------------------
# the CLI
# ---------------------------------------------------------------------------------------------


def test_cli_synthetic_index_of_a_keypoint_config_inspects_a_house(capsys, tmp_path, model):
    out = tmp_path / "inspect"
    overrides = [arg for key, value in KEYPOINT_OVERRIDES.items()
                 for arg in ("--override", f"{key}={value}")]
    code, stdout, err = run_inprocess(capsys, "inspect", "--config", "shapes_keypoints_tiny",
                                      *overrides, "--synthetic_index", "2", "--out", str(out))
    assert code == 0, err
    assert sorted(os.listdir(out)) == sorted(f"{name}.png" for name in KEYPOINT_VIEWS)
    for name in KEYPOINT_VIEWS:
        assert str(out / f"{name}.png") in stdout
    # The ground truth drawn is keypoint-house image 2 (the view depends on the example, not
    # on the weights), with its class name.
    house = keypoint_shapes.generate_keypoint_example(2, inspect_cli.SYNTHETIC_SEED, SIZE)
    expected = views.ground_truth_view(inspection_data(model, house),
                                       model.label_map.class_names)
    np.testing.assert_array_equal(read_image(out / "ground_truth.png"), expected)


def test_tf_tensors_are_accepted(model, example, data):
    # Examples from a tf.data pipeline come as tensors; keypoints included.
    tensors = {k: tf.constant(v) for k, v in example.items()}
    again = inspection_data(model, tensors)
    np.testing.assert_array_equal(again["keypoint_target_points"],
                                  data["keypoint_target_points"])
