"""Tests for mrcnn_tf.ops.targets: matching, RPN targets and RoI (detection) targets."""


import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.config import Config
from mrcnn_tf.ops import anchors as anchor_ops
from mrcnn_tf.ops import boxes as box_ops
from mrcnn_tf.ops import targets




from reference import numpy_reference as ref  # noqa: E402

POS, NEG, IGN = targets.POSITIVE, targets.NEGATIVE, targets.IGNORE


def _ref_labels(cands, gt, classes, crowd, fg, bg, crowd_thr, low_quality):
    """NumPy matcher: labels [N] and matched [N] (index into gt rows)."""
    n = len(cands)
    use = (classes > 0) & ~crowd
    labels = np.full(n, NEG)
    matched = np.zeros(n, int)
    if use.any():
        rows = np.flatnonzero(use)
        iou = ref.iou(cands, gt[rows])
        best = iou.max(axis=1)
        matched = rows[iou.argmax(axis=1)]
        labels = np.where(best >= fg, POS, np.where(best < bg, NEG, IGN))
        if low_quality:
            for j in range(len(rows)):
                top = iou[:, j].max()
                if top > 0:
                    labels[np.isclose(iou[:, j], top, rtol=0, atol=1e-9)] = POS
    crowd_rows = np.flatnonzero((classes > 0) & crowd)
    if len(crowd_rows):
        in_crowd = ref.ioa(cands, gt[crowd_rows]).max(axis=1) >= crowd_thr
        labels = np.where(in_crowd & (labels != POS), IGN, labels)
    return labels, matched


# ----------------------------------------------------------------------------- match


def test_match_thresholds_and_ignore_band():
    iou = tf.constant([[[0.9, 0.1], [0.5, 0.2], [0.1, 0.29], [0.3, 0.7], [0.0, 0.0]]])
    gt_valid = tf.constant([[True, True]])
    matched, labels = targets.match(iou, gt_valid, 0.7, 0.3, allow_low_quality_matches=False)
    np.testing.assert_array_equal(labels.numpy()[0], [POS, IGN, NEG, POS, NEG])
    np.testing.assert_array_equal(matched.numpy()[0][[0, 1, 3]], [0, 0, 1])


def test_match_low_quality_and_invalid_gt():
    # GT 0's best candidate has IoU 0.4 (ignore band); GT 1 is padding with a high IoU.
    iou = tf.constant([[[0.4, 0.95], [0.2, 0.0], [0.4, 0.0], [0.1, 0.8]]])
    gt_valid = tf.constant([[True, False]])
    _, labels = targets.match(iou, gt_valid, 0.7, 0.3, allow_low_quality_matches=False)
    np.testing.assert_array_equal(labels.numpy()[0], [IGN, NEG, IGN, NEG])
    matched, labels = targets.match(iou, gt_valid, 0.7, 0.3, allow_low_quality_matches=True)
    # Both candidates tied at the best IoU become positive; padding never counts.
    np.testing.assert_array_equal(labels.numpy()[0], [POS, NEG, POS, NEG])
    np.testing.assert_array_equal(matched.numpy()[0], [0, 0, 0, 0])


def test_match_no_valid_gt_all_negative():
    iou = tf.constant([[[0.9], [0.0]]])
    matched, labels = targets.match(iou, tf.constant([[False]]), 0.7, 0.3, True)
    np.testing.assert_array_equal(labels.numpy()[0], [NEG, NEG])
    np.testing.assert_array_equal(matched.numpy()[0], [0, 0])


# ----------------------------------------------------------------------------- RPN


def _rpn_config(**kw):
    kw.setdefault("rpn_batch_size_per_image", 32)
    return Config().replace(**kw)


def _gt(rows, m):
    """rows: list of (box, class, crowd) -> padded [1, m, ...] arrays."""
    boxes = np.zeros((1, m, 4), np.float32)
    classes = np.zeros((1, m), np.int32)
    crowd = np.zeros((1, m), bool)
    for i, (box, cls, is_crowd) in enumerate(rows):
        boxes[0, i], classes[0, i], crowd[0, i] = box, cls, is_crowd
    return boxes, classes, crowd


def test_rpn_targets_low_quality_match_hand_made():
    anchors = np.array([
        [0, 0, 10, 25],    # IoU 0.4 with the GT: its best anchor -> positive
        [30, 30, 40, 40],  # IoU 0 -> negative
        [0, 0, 10, 30],    # IoU 1/3: ignore band, not best -> not sampled
        [50, 50, 60, 60],  # negative
    ], np.float32)
    gt_boxes, gt_classes, gt_crowd = _gt([([0, 0, 10, 10], 1, False)], 3)
    out = targets.rpn_targets(tf.constant(anchors), tf.constant(gt_boxes),
                              tf.constant(gt_classes), tf.constant(gt_crowd), _rpn_config())
    np.testing.assert_array_equal(out["labels"].numpy()[0], [POS, NEG, IGN, NEG])
    decoded = box_ops.decode(out["box_targets"][0, 0], anchors[0]).numpy()
    np.testing.assert_allclose(decoded, [0, 0, 10, 10], atol=1e-4)


def _random_rpn_inputs():
    anchors = np.concatenate([a.numpy() for a in anchor_ops.pyramid_anchors(
        [(8, 8), (4, 4)], [8, 16], [16.0, 32.0], (0.5, 1.0, 2.0), offset=0.5)])
    gt_boxes = np.zeros((2, 4, 4), np.float32)
    gt_classes = np.zeros((2, 4), np.int32)
    gt_boxes[0, :3] = [[4, 4, 22, 20], [30, 8, 62, 40], [10, 36, 26, 60]]
    gt_classes[0, :3] = [1, 3, 2]
    # Image 1 has no ground truth at all (padding rows have a box but class 0).
    gt_boxes[1, 0] = [4, 4, 22, 20]
    crowd = np.zeros((2, 4), bool)
    return anchors, gt_boxes, gt_classes, crowd


@pytest.mark.parametrize("batch_size", [32, 6])  # 6: fewer positive slots than positives
def test_rpn_targets_random_against_numpy(batch_size):
    anchors, gt_boxes, gt_classes, crowd = _random_rpn_inputs()
    config = _rpn_config(rpn_batch_size_per_image=batch_size)
    out = targets.rpn_targets(tf.constant(anchors), tf.constant(gt_boxes),
                              tf.constant(gt_classes), tf.constant(crowd), config, seed=0)
    labels = out["labels"].numpy()
    box_targets = out["box_targets"].numpy()
    assert labels.shape == (2, len(anchors)) and box_targets.shape == (2, len(anchors), 4)
    s = config.rpn_batch_size_per_image
    max_pos = int(s * config.rpn_positive_fraction)
    for b in range(2):
        ref_labels, matched = _ref_labels(anchors, gt_boxes[b], gt_classes[b], crowd[b],
                                          config.rpn_fg_iou_threshold,
                                          config.rpn_bg_iou_threshold,
                                          config.crowd_ioa_threshold, low_quality=True)
        npos, nneg = (ref_labels == POS).sum(), (ref_labels == NEG).sum()
        sampled_pos = labels[b] == POS
        sampled_neg = labels[b] == NEG
        assert np.all(ref_labels[sampled_pos] == POS)
        assert np.all(ref_labels[sampled_neg] == NEG)
        assert sampled_pos.sum() == min(npos, max_pos)
        assert sampled_pos.sum() + sampled_neg.sum() == min(s, min(npos, max_pos) + nneg)
        assert sampled_pos.sum() + sampled_neg.sum() <= s
        # Every positive's box target decodes back onto its (numpy-matched) GT box.
        pos = np.flatnonzero(sampled_pos)
        decoded = box_ops.decode(box_targets[b, pos], anchors[pos],
                                 config.rpn_box_weights).numpy()
        np.testing.assert_allclose(decoded, gt_boxes[b, matched[pos]], atol=1e-3)
    # Image 0 has positives (every GT gets at least one); image 1 only negatives.
    assert (labels[0] == POS).sum() >= min(3, max_pos)
    assert (labels[1] == POS).sum() == 0
    assert (labels[1] == NEG).sum() == s


def test_rpn_targets_crowd():
    anchors = np.array([
        [10, 10, 30, 30],    # fully inside the crowd box (IoA 1): ignored
        [0, 0, 50, 50],      # equals the crowd box (IoU 1): crowd is no target -> ignored
        [40, 0, 60, 50],     # IoA exactly 0.5: ignored (>=)
        [45, 0, 65, 50],     # IoA 0.25: negative
        [70, 70, 90, 90],    # equals the non-crowd GT: positive
        [100, 100, 120, 120],
    ], np.float32)
    gt_boxes, gt_classes, gt_crowd = _gt(
        [([0, 0, 50, 50], 1, True), ([70, 70, 90, 90], 2, False)], 3)
    out = targets.rpn_targets(tf.constant(anchors), tf.constant(gt_boxes),
                              tf.constant(gt_classes), tf.constant(gt_crowd), _rpn_config())
    np.testing.assert_array_equal(out["labels"].numpy()[0], [IGN, IGN, IGN, NEG, POS, NEG])


def test_rpn_targets_only_crowd_gt_gives_no_positive():
    anchors = np.array([[0, 0, 50, 50], [5, 5, 45, 45], [60, 60, 80, 80]], np.float32)
    gt_boxes, gt_classes, gt_crowd = _gt([([0, 0, 50, 50], 1, True)], 2)
    out = targets.rpn_targets(tf.constant(anchors), tf.constant(gt_boxes),
                              tf.constant(gt_classes), tf.constant(gt_crowd), _rpn_config())
    np.testing.assert_array_equal(out["labels"].numpy()[0], [IGN, IGN, NEG])


# ----------------------------------------------------------------------------- RoI targets

DT_KW = dict(batch_size_per_image=16, positive_fraction=0.25, fg_iou_threshold=0.5,
             bg_iou_threshold=0.5, crowd_ioa_threshold=0.5,
             box_coder_weights=(10.0, 10.0, 5.0, 5.0))


def _detection_targets(proposals, proposal_valid, gt_boxes, gt_classes, gt_crowd, **kw):
    args = dict(DT_KW, **kw)
    out = targets.detection_targets(
        tf.constant(proposals, tf.float32), tf.constant(proposal_valid),
        tf.constant(gt_boxes, tf.float32), tf.constant(gt_classes, tf.int32),
        tf.constant(gt_crowd), seed=0, **args)
    return {k: v.numpy() for k, v in out.items()}


def test_detection_targets_gt_boxes_are_appended_as_positives():
    # Proposals far from both GT boxes: the only positives are the GT boxes themselves.
    proposals = np.array([[[0, 0, 10, 10], [0, 60, 10, 70], [60, 0, 70, 10]]], np.float32)
    gt_boxes, gt_classes, gt_crowd = _gt([([20, 20, 40, 45], 3, False),
                                          ([30, 50, 55, 60], 1, False)], 3)
    out = _detection_targets(proposals, np.ones((1, 3), bool), gt_boxes, gt_classes, gt_crowd)
    pos = out["is_positive"][0]
    assert pos.sum() == 2 and np.all(pos[:2])
    order = np.argsort(out["matched_gt"][0, :2])
    np.testing.assert_allclose(out["rois"][0, :2][order], gt_boxes[0, :2])
    np.testing.assert_array_equal(out["class_targets"][0, :2][order], [3, 1])
    np.testing.assert_allclose(out["box_targets"][0, :2], 0.0, atol=1e-5)
    # Three negatives (the proposals; padding GT rows are not candidates), then padding.
    np.testing.assert_array_equal(out["valid"][0], np.arange(16) < 5)
    np.testing.assert_array_equal(out["class_targets"][0, 2:], 0)
    np.testing.assert_array_equal(out["box_targets"][0, 2:], 0.0)
    assert sorted(map(tuple, out["rois"][0, 2:5].tolist())) == sorted(
        map(tuple, proposals[0].tolist()))


def test_detection_targets_random_against_numpy():
    rng = np.random.default_rng(0)
    b, r, m = 2, 40, 4
    gt_boxes = np.zeros((b, m, 4), np.float32)
    gt_classes = np.zeros((b, m), np.int32)
    gt_boxes[0, :3] = [[10, 10, 40, 50], [50, 20, 90, 60], [20, 60, 60, 95]]
    gt_classes[0, :3] = [2, 1, 3]
    gt_boxes[1, :1] = [[30, 30, 70, 70]]
    gt_classes[1, :1] = [1]
    crowd = np.zeros((b, m), bool)
    proposals = np.zeros((b, r, 4), np.float32)
    for i in range(b):
        # Half jittered copies of GT boxes (many positives), half random boxes.
        n_gt = int((gt_classes[i] > 0).sum())
        src = gt_boxes[i, rng.integers(0, n_gt, r // 2)]
        proposals[i, :r // 2] = src + rng.normal(0, 4, src.shape)
        proposals[i, r // 2:] = ref.random_boxes(rng, r - r // 2, extent=80.0, min_size=5.0)
    proposal_valid = rng.random((b, r)) < 0.9
    out = _detection_targets(proposals, proposal_valid, gt_boxes, gt_classes, crowd)
    s, max_pos = 16, 4
    assert out["rois"].shape == (b, s, 4) and out["box_targets"].shape == (b, s, 4)
    for i in range(b):
        cands = np.concatenate([proposals[i], gt_boxes[i]])
        cand_valid = np.concatenate([proposal_valid[i], gt_classes[i] > 0])
        ref_labels, matched = _ref_labels(cands, gt_boxes[i], gt_classes[i], crowd[i],
                                          0.5, 0.5, 0.5, low_quality=False)
        ref_labels = np.where(cand_valid, ref_labels, IGN)
        valid = out["valid"][i]
        pos = out["is_positive"][i]
        npos = min(max_pos, (ref_labels == POS).sum())
        assert pos.sum() == npos
        assert valid.sum() == min(s, npos + (ref_labels == NEG).sum())
        rois = out["rois"][i]
        iou = ref.iou(rois, gt_boxes[i][gt_classes[i] > 0]).max(axis=1)
        assert np.all(iou[pos] >= 0.5 - 1e-6)
        assert np.all(iou[valid & ~pos] < 0.5 + 1e-6)
        # Each sampled RoI is a valid candidate.
        for k in np.flatnonzero(valid):
            hits = np.flatnonzero(np.all(np.abs(cands - rois[k]) < 1e-5, axis=1) & cand_valid)
            assert len(hits) >= 1
        # Class targets: matched GT class on positives, 0 elsewhere.
        _, roi_matched = _ref_labels(rois, gt_boxes[i], gt_classes[i], crowd[i],
                                     0.5, 0.5, 0.5, low_quality=False)
        np.testing.assert_array_equal(out["matched_gt"][i][pos], roi_matched[pos])
        np.testing.assert_array_equal(out["class_targets"][i][pos],
                                      gt_classes[i][roi_matched[pos]])
        np.testing.assert_array_equal(out["class_targets"][i][~pos], 0)
        np.testing.assert_allclose(
            out["box_targets"][i][pos],
            ref.encode(gt_boxes[i][roi_matched[pos]], rois[pos], (10, 10, 5, 5)),
            atol=1e-3)
        np.testing.assert_array_equal(out["box_targets"][i][~pos], 0.0)
        assert not np.any(pos & ~valid)


def test_detection_targets_all_negative_and_invalid_proposals():
    proposals = np.array([[[0, 0, 10, 10], [5, 5, 20, 20], [30, 30, 50, 50], [1, 1, 2, 2]]],
                         np.float32)
    proposal_valid = np.array([[True, True, True, False]])
    gt_boxes = np.zeros((1, 2, 4), np.float32)
    gt_classes = np.zeros((1, 2), np.int32)
    out = _detection_targets(proposals, proposal_valid, gt_boxes, gt_classes,
                             np.zeros((1, 2), bool))
    assert not out["is_positive"].any()
    np.testing.assert_array_equal(out["valid"][0], np.arange(16) < 3)
    np.testing.assert_array_equal(out["class_targets"], 0)
    np.testing.assert_array_equal(out["box_targets"], 0.0)
    sampled = sorted(map(tuple, out["rois"][0, :3].tolist()))
    assert sampled == sorted(map(tuple, proposals[0, :3].tolist()))


def test_detection_targets_crowd():
    proposals = np.array([[
        [0, 0, 50, 50],      # the crowd box itself: ignored
        [10, 10, 30, 30],    # inside the crowd: ignored
        [45, 0, 65, 50],     # IoA 0.25: negative
        [70, 70, 90, 92],    # IoU 0.91 with the non-crowd GT: positive
    ]], np.float32)
    gt_boxes, gt_classes, gt_crowd = _gt([([0, 0, 50, 50], 1, True),
                                          ([70, 70, 90, 90], 2, False)], 3)
    out = _detection_targets(proposals, np.ones((1, 4), bool), gt_boxes, gt_classes, gt_crowd)
    valid, pos = out["valid"][0], out["is_positive"][0]
    assert pos.sum() == 2  # the proposal and the appended non-crowd GT box
    np.testing.assert_array_equal(out["class_targets"][0][pos], [2, 2])
    np.testing.assert_array_equal(out["matched_gt"][0][pos], [1, 1])
    assert valid.sum() == 3
    sampled = {tuple(b) for b in out["rois"][0][valid].tolist()}
    assert sampled == {(45, 0, 65, 50), (70, 70, 90, 92), (70, 70, 90, 90)}
