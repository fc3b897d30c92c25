"""Tests for DetectionTargetLayer: shapes, mask targets, empty images, config."""


import numpy as np
import tensorflow as tf

from mrcnn_tf.config import Config
from mrcnn_tf.layers.detection_target import DetectionTargetLayer




from reference import numpy_reference as ref  # noqa: E402

H = W = 64
S, FRACTION, MASK = 16, 0.25, 14


def _inputs():
    rng = np.random.default_rng(0)
    b, m, r = 2, 3, 24
    gt_boxes = np.zeros((b, m, 4), np.float32)
    gt_classes = np.zeros((b, m), np.int32)
    gt_masks = np.zeros((b, m, H, W), np.uint8)
    gt_boxes[0, :3] = [[4, 6, 30, 28], [30, 30, 60, 62], [0, 40, 20, 64]]
    gt_classes[0, :3] = [2, 1, 3]
    yy, xx = np.mgrid[:H, :W] + 0.5
    for k in range(3):
        y1, x1, y2, x2 = gt_boxes[0, k]
        # An ellipse inscribed in each box, so crops have structure.
        cy, cx, ry, rx = (y1 + y2) / 2, (x1 + x2) / 2, (y2 - y1) / 2, (x2 - x1) / 2
        gt_masks[0, k] = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.uint8)
    # Image 1: no ground truth.
    proposals = np.zeros((b, r, 4), np.float32)
    src = gt_boxes[0, rng.integers(0, 3, r // 2)]
    proposals[0, :r // 2] = src + rng.normal(0, 2.5, src.shape)
    proposals[0, r // 2:] = ref.random_boxes(rng, r - r // 2, extent=50.0, min_size=4.0,
                                             max_size=20.0)
    proposals[1] = ref.random_boxes(rng, r, extent=50.0, min_size=4.0, max_size=20.0)
    valid = np.ones((b, r), bool)
    valid[1, -4:] = False
    crowd = np.zeros((b, m), bool)
    return proposals, valid, gt_boxes, gt_classes, crowd, gt_masks


def _run(layer):
    return {k: v.numpy() for k, v in layer(*[tf.constant(x) for x in _inputs()]).items()}


def test_shapes_and_mask_targets_match_cropped_gt():
    layer = DetectionTargetLayer(batch_size_per_image=S, positive_fraction=FRACTION,
                                 mask_size=MASK, seed=1)
    out = _run(layer)
    proposals, valid, gt_boxes, gt_classes, _, gt_masks = _inputs()
    p = int(S * FRACTION)
    assert layer.max_positives == p
    shapes = {"rois": (2, S, 4), "valid": (2, S), "is_positive": (2, S),
              "class_targets": (2, S), "box_targets": (2, S, 4), "matched_gt": (2, S),
              "mask_rois": (2, p, 4), "mask_classes": (2, p), "mask_valid": (2, p),
              "mask_targets": (2, p, MASK, MASK)}
    assert {k: v.shape for k, v in out.items()} == shapes
    # Image 0 has more positive candidates than slots: all P slots positive.
    assert out["mask_valid"][0].all() and out["is_positive"][0].sum() == p
    np.testing.assert_array_equal(out["mask_rois"], out["rois"][:, :p])
    np.testing.assert_array_equal(out["mask_classes"], out["class_targets"][:, :p])
    for k in range(p):
        roi = out["mask_rois"][0, k]
        j = out["matched_gt"][0, k]
        # The matched GT is the one with the highest IoU, per NumPy.
        assert j == np.argmax(ref.iou(roi[None], gt_boxes[0, :3])[0])
        assert out["mask_classes"][0, k] == gt_classes[0, j]
        soft = ref.crop_mask_soft(gt_masks[0, j], roi, MASK)
        clear = np.abs(soft - 0.5) > 1e-4
        np.testing.assert_array_equal(out["mask_targets"][0, k][clear],
                                      (soft >= 0.5)[clear].astype(np.float32))
        assert out["mask_targets"][0, k].sum() > 0.3 * MASK * MASK  # an ellipse, not empty


def test_zero_gt_batch_element_is_all_background():
    out = _run(DetectionTargetLayer(batch_size_per_image=S, positive_fraction=FRACTION,
                                    mask_size=MASK, seed=2))
    assert not out["is_positive"][1].any() and not out["mask_valid"][1].any()
    np.testing.assert_array_equal(out["class_targets"][1], 0)
    np.testing.assert_array_equal(out["box_targets"][1], 0.0)
    assert out["valid"][1].sum() == S  # 20 valid proposals, 16 slots
    proposals, valid = _inputs()[:2]
    sampled = out["rois"][1][out["valid"][1]]
    for roi in sampled:
        hit = np.flatnonzero(np.all(np.abs(proposals[1] - roi) < 1e-5, axis=1))
        assert len(hit) == 1 and valid[1, hit[0]]


def test_runs_under_tf_function():
    layer = DetectionTargetLayer(batch_size_per_image=S, positive_fraction=FRACTION,
                                 mask_size=MASK)
    out = tf.function(lambda *a: layer(*a))(*[tf.constant(x) for x in _inputs()])
    assert out["mask_targets"].shape == (2, 4, MASK, MASK)
    assert int(tf.reduce_sum(tf.cast(out["is_positive"][0], tf.int32))) == 4


def test_get_config_round_trip():
    layer = DetectionTargetLayer(batch_size_per_image=64, positive_fraction=0.33,
                                 fg_iou_threshold=0.6, bg_iou_threshold=0.4,
                                 crowd_ioa_threshold=0.7, box_coder_weights=(1, 2, 3, 4),
                                 mask_size=14, seed=5, name="dt")
    config = layer.get_config()
    clone = DetectionTargetLayer.from_config(config)
    assert clone.get_config() == config
    assert clone.name == "dt" and clone.seed == 5 and clone.box_coder_weights == (1, 2, 3, 4)
    assert clone.max_positives == 21


def test_from_model_config():
    config = Config().replace(roi_batch_size_per_image=128, roi_positive_fraction=0.5,
                              mask_pool_size=7, mask_size=14)
    layer = DetectionTargetLayer.from_model_config(config)
    assert (layer.batch_size_per_image, layer.positive_fraction, layer.mask_size) == (
        128, 0.5, 14)
    assert layer.box_coder_weights == tuple(config.box_coder_weights)


def test_mask_rows_end_at_the_last_positive_and_equal_the_static_rows():
    """crop_and_resize: mask outputs have max_b(positives) rows (the mask head trains on the
    positives only); builtin (XLA): the static P rows, the extra ones invalid."""
    inputs = [tf.constant(x) for x in _inputs()]
    inputs[0] = tf.constant(_inputs()[0][::-1].copy())  # image 0: random boxes, few positives
    kwargs = dict(batch_size_per_image=2 * S, positive_fraction=FRACTION, mask_size=MASK,
                  seed=1)
    seeds = tf.constant([[1, 2], [3, 4]])  # stateless: both layers sample the same RoIs
    trimmed = {k: v.numpy() for k, v in
               DetectionTargetLayer(**kwargs)(*inputs, seeds=seeds).items()}
    static = {k: v.numpy() for k, v in DetectionTargetLayer(
        static_shapes=True, **kwargs)(*inputs, seeds=seeds).items()}
    p = int(2 * S * FRACTION)
    positives = static["mask_valid"].sum(axis=1)
    rows = max(int(positives.max()), 1)
    assert rows < p, positives
    assert trimmed["mask_rois"].shape == (2, rows, 4)
    assert trimmed["mask_targets"].shape == (2, rows, MASK, MASK)
    assert static["mask_rois"].shape == (2, p, 4)
    assert not static["mask_valid"][:, rows:].any()
    for key in ("mask_rois", "mask_classes", "mask_valid"):
        np.testing.assert_array_equal(trimmed[key], static[key][:, :rows], err_msg=key)
    np.testing.assert_allclose(trimmed["mask_targets"], static["mask_targets"][:, :rows],
                               atol=1e-5)
