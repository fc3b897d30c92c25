"""Tests for DetectionLayer on hand-made box-head outputs."""


import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.config import Config
from mrcnn_tf.layers.detection import DetectionLayer




from reference import numpy_reference as ref  # noqa: E402
K = 3
WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def _logits(probs):
    """Per-RoI class probabilities (background first) -> logits."""
    return np.log(np.asarray(probs, np.float64)).astype(np.float32)


def _run(layer, rois, probs, deltas=None, roi_valid=None, image_shape=((100, 100),)):
    rois = np.asarray(rois, np.float32)
    b, r = rois.shape[:2]
    if deltas is None:
        deltas = np.zeros((b, r, (K + 1) * 4), np.float32)
    if roi_valid is None:
        roi_valid = np.ones((b, r), bool)
    out = layer(tf.constant(rois), tf.constant(roi_valid), tf.constant(_logits(probs)),
                tf.constant(deltas), tf.constant(np.asarray(image_shape, np.int32)))
    return {k: v.numpy() for k, v in out.items()}


BG = [0.99, 0.004, 0.003, 0.003]  # background RoI: every class below the threshold


def test_one_confident_roi_gives_one_detection_with_decoded_box():
    rois = [[[10, 10, 40, 50], [60, 60, 90, 90], [5, 70, 30, 95], [50, 5, 70, 40]]]
    probs = [[[0.001, 0.001, 0.997, 0.001], BG, BG, BG]]
    deltas = np.zeros((1, 4, (K + 1) * 4), np.float32)
    deltas[0, 0, 8:12] = [1.0, -2.0, 0.5, 1.0]  # class 2's deltas
    deltas[0, 0, 4:8] = [9.0, 9.0, 9.0, 9.0]  # class 1's deltas must not be used
    layer = DetectionLayer(K, detections_per_image=5)
    out = _run(layer, rois, probs, deltas)
    assert out["boxes"].shape == (1, 5, 4) and out["scores"].shape == (1, 5)
    assert out["class_ids"].shape == (1, 5) and out["num_detections"].tolist() == [1]
    assert out["class_ids"][0, 0] == 2
    assert out["scores"][0, 0] == pytest.approx(0.997, abs=1e-4)
    expected = ref.clip_boxes(ref.decode(deltas[0, 0, 8:12], rois[0][0], WEIGHTS), 100, 100)
    np.testing.assert_allclose(out["boxes"][0, 0], expected, atol=1e-3)
    # Padding rows are zero.
    np.testing.assert_array_equal(out["boxes"][0, 1:], 0.0)
    np.testing.assert_array_equal(out["scores"][0, 1:], 0.0)
    np.testing.assert_array_equal(out["class_ids"][0, 1:], 0)


def test_score_threshold():
    rois = [[[10, 10, 40, 40], [60, 60, 90, 90]]]
    probs = [[[0.4, 0.35, 0.0001, 0.2499], [0.69, 0.01, 0.29, 0.01]]]
    out = _run(DetectionLayer(K, detections_per_image=4, score_threshold=0.3), rois, probs)
    assert out["num_detections"].tolist() == [1]
    assert out["class_ids"][0, 0] == 1
    np.testing.assert_allclose(out["boxes"][0, 0], [10, 10, 40, 40], atol=1e-4)
    out = _run(DetectionLayer(K, detections_per_image=4, score_threshold=0.2), rois, probs)
    assert out["num_detections"].tolist() == [3]
    np.testing.assert_allclose(out["scores"][0, :3], [0.35, 0.29, 0.2499], atol=1e-4)
    np.testing.assert_array_equal(out["class_ids"][0, :3], [1, 2, 3])


def test_per_class_nms():
    rois = [[[10, 10, 50, 50], [12, 12, 52, 52], [11, 11, 51, 51], [70, 70, 90, 90]]]
    assert ref.iou(np.array(rois[0][:3]), np.array(rois[0][:3])).min() > 0.8
    probs = [[[0.1, 0.9, 1e-4, 1e-4],   # class 1
              [0.2, 1e-4, 0.8, 1e-4],   # class 2, overlapping: kept
              [0.3, 0.7, 1e-4, 1e-4],   # class 1, overlapping the first: suppressed
              [0.4, 0.6, 1e-4, 1e-4]]]  # class 1, far away: kept
    out = _run(DetectionLayer(K, detections_per_image=6, nms_threshold=0.5), rois, probs)
    n = out["num_detections"][0]
    assert n == 3
    np.testing.assert_array_equal(out["class_ids"][0, :n], [1, 2, 1])
    p = np.array(probs[0])
    p = p / p.sum(axis=1, keepdims=True)  # softmax of log(p) renormalizes
    np.testing.assert_allclose(out["scores"][0, :n], [p[0, 1], p[1, 2], p[3, 1]], atol=1e-5)
    np.testing.assert_allclose(out["boxes"][0, :n], np.array(rois[0])[[0, 1, 3]], atol=1e-4)


def test_invalid_rois_clipping_and_batch():
    rois = [[[10, 10, 40, 40], [-20, 50, 30, 130]], [[10, 10, 40, 40], [-20, 50, 30, 130]]]
    probs = [[[0.05, 0.95, 1e-4, 1e-4], [0.1, 1e-4, 1e-4, 0.9]]] * 2
    valid = np.array([[False, True], [True, True]])
    out = _run(DetectionLayer(K, detections_per_image=3), rois, probs, roi_valid=valid,
               image_shape=((100, 100), (64, 80)))
    assert out["num_detections"].tolist() == [1, 2]
    np.testing.assert_allclose(out["boxes"][0, 0], [0, 50, 30, 100], atol=1e-4)
    assert out["class_ids"][0, 0] == 3
    np.testing.assert_allclose(out["boxes"][1, :2], [[10, 10, 40, 40], [0, 50, 30, 80]],
                               atol=1e-4)
    np.testing.assert_array_equal(out["class_ids"][1, :2], [1, 3])
    np.testing.assert_array_equal(out["boxes"][0, 1:], 0.0)


def test_detections_per_image_cap_keeps_best():
    r = 8
    rois = [[[10 * i, 0, 10 * i + 8, 8] for i in range(r)]]  # disjoint boxes
    fg = np.linspace(0.5, 0.9, r)
    probs = [[[1 - p, p, 0.0, 0.0] for p in fg]]
    probs = np.maximum(np.array(probs), 1e-6)
    out = _run(DetectionLayer(K, detections_per_image=5), rois, probs)
    assert out["num_detections"].tolist() == [5]
    np.testing.assert_allclose(out["scores"][0], fg[::-1][:5], atol=1e-4)
    np.testing.assert_allclose(out["boxes"][0, :, 0], [70, 60, 50, 40, 30], atol=1e-4)


def test_get_config_round_trip():
    layer = DetectionLayer(7, detections_per_image=33, score_threshold=0.2, nms_threshold=0.45,
                           pre_nms_topk=999, min_size=1.5, box_weights=(1, 1, 2, 2),
                           delta_clip=2.5, name="det")
    config = layer.get_config()
    clone = DetectionLayer.from_config(config)
    assert clone.get_config() == config
    assert clone.name == "det" and clone.num_classes == 7 and clone.box_weights == (1, 1, 2, 2)
    from_model = DetectionLayer.from_model_config(Config().replace(num_classes=5,
                                                                    score_threshold=0.3))
    assert from_model.num_classes == 5 and from_model.score_threshold == 0.3
