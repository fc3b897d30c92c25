"""Training targets: anchors -> ground truth (RPN) and proposals -> ground truth (RoI heads).

Ground truth comes padded: gt_boxes [B, M, 4], gt_classes [B, M] with 0 on padding rows,
gt_is_crowd [B, M]. Crowd regions are never matched as targets; a candidate lying mostly
inside one (intersection over the candidate's area >= crowd_ioa_threshold, COCO's rule for
crowd regions in evaluation) is never a negative: it is ignored unless it is a positive for a
non-crowd object.
"""

import tensorflow as tf

from mrcnn_tf.ops import boxes as box_ops
from mrcnn_tf.ops import sampling

IGNORE = -1
NEGATIVE = 0
POSITIVE = 1


def match(iou, gt_valid, fg_threshold, bg_threshold, allow_low_quality_matches):
    """Matches candidates (anchors or RoIs) to ground truth by IoU.

    Args:
      iou: [B, N, M] IoU of each candidate with each ground-truth box.
      gt_valid: [B, M] bool, ground truth usable as a target.
      fg_threshold: max IoU >= this is positive.
      bg_threshold: max IoU < this is negative; in between is ignored.
      allow_low_quality_matches: also make positive, for each ground-truth box, the
        candidates whose IoU equals that box's highest IoU (so every object gets at least one
        anchor, as in Faster R-CNN / Detectron2).
    Returns:
      matched [B, N] int32 index of the best ground truth (0 when there is none) and
      labels [B, N] int32 in {POSITIVE, NEGATIVE, IGNORE}.
    """
    iou = tf.where(gt_valid[:, None, :], iou, -1.0)
    max_iou = tf.reduce_max(iou, axis=2)  # -1 when the image has no valid ground truth
    matched = tf.argmax(iou, axis=2, output_type=tf.int32)
    positive = max_iou >= fg_threshold
    negative = max_iou < bg_threshold
    if allow_low_quality_matches:
        best_per_gt = tf.reduce_max(iou, axis=1, keepdims=True)  # [B, 1, M]
        is_best = (iou == best_per_gt) & (best_per_gt > 0.0) & gt_valid[:, None, :]
        positive = positive | tf.reduce_any(is_best, axis=2)
    labels = tf.where(positive, POSITIVE, tf.where(negative, NEGATIVE, IGNORE))
    matched = tf.where(max_iou >= 0.0, matched, 0)
    return matched, labels


def _ignore_crowd(candidates, labels, gt_boxes, crowd, crowd_ioa_threshold):
    """Sets labels of non-positive candidates inside crowd regions to IGNORE.

    Args: candidates [B, N, 4]; labels [B, N]; gt_boxes [B, M, 4]; crowd [B, M] bool.
    """
    ioa = box_ops.ioa(candidates, gt_boxes)  # [B, N, M]
    in_crowd = tf.reduce_any((ioa >= crowd_ioa_threshold) & crowd[:, None, :], axis=2)
    return tf.where(in_crowd & (labels != POSITIVE), IGNORE, labels)


# Salts telling apart the per-image draws made from one stateless seed.
RPN_SAMPLING_SALT = 1
ROI_SAMPLING_SALT = 2


def rpn_targets(anchors, gt_boxes, gt_classes, gt_is_crowd, config, seed=None, seeds=None):
    """Objectness and box targets for every anchor, with balanced sampling.

    Args:
      anchors: [A, 4] all levels concatenated, in image pixels.
      gt_boxes: [B, M, 4]; gt_classes: [B, M] (0 = padding); gt_is_crowd: [B, M] bool.
      config: `Config` (rpn_* fields).
      seed: optional op seed; seeds: optional [B, 2] per-image stateless sampling seeds.
    Returns:
      dict with
        "labels": [B, A] int32: 1 sampled positive, 0 sampled negative, -1 not sampled;
        "box_targets": [B, A, 4] encoded deltas (meaningful where labels == 1).
    """
    valid = gt_classes > 0
    crowd = valid & gt_is_crowd
    targets_valid = valid & tf.logical_not(gt_is_crowd)
    batch = tf.shape(gt_boxes)[0]
    anchors_b = tf.broadcast_to(anchors[None], tf.stack([batch, tf.shape(anchors)[0], 4]))
    iou = box_ops.iou(anchors_b, gt_boxes)
    matched, labels = match(iou, targets_valid, config.rpn_fg_iou_threshold,
                            config.rpn_bg_iou_threshold, allow_low_quality_matches=True)
    labels = _ignore_crowd(anchors_b, labels, gt_boxes, crowd, config.crowd_ioa_threshold)
    indices, is_pos, ok = sampling.sample_balanced(
        labels == POSITIVE, labels == NEGATIVE, config.rpn_batch_size_per_image,
        config.rpn_positive_fraction, seed=seed, seeds=seeds, salt=RPN_SAMPLING_SALT)
    num_anchors = tf.shape(anchors)[0]
    sampled_pos = sampling.indices_to_mask(indices, ok & is_pos, num_anchors)
    sampled_neg = sampling.indices_to_mask(indices, ok & tf.logical_not(is_pos), num_anchors)
    sampled_labels = tf.where(sampled_pos, POSITIVE, tf.where(sampled_neg, NEGATIVE, IGNORE))
    matched_boxes = tf.gather(gt_boxes, matched, batch_dims=1)
    box_targets = box_ops.encode(matched_boxes, anchors_b, config.rpn_box_weights)
    return {"labels": sampled_labels, "box_targets": box_targets}


def detection_targets(proposals, proposal_valid, gt_boxes, gt_classes, gt_is_crowd, *,
                      batch_size_per_image, positive_fraction, fg_iou_threshold,
                      bg_iou_threshold, crowd_ioa_threshold, box_coder_weights, seed=None,
                      seeds=None):
    """Samples RoIs from the proposals and gives each a class and box target.

    The valid non-crowd ground-truth boxes are added to the proposals first, so every object
    has at least one perfect positive RoI from the start of training.

    Args:
      proposals: [B, R, 4]; proposal_valid: [B, R] bool.
      gt_boxes: [B, M, 4]; gt_classes: [B, M] int32 (0 = padding); gt_is_crowd: [B, M] bool.
      batch_size_per_image: S, RoIs sampled per image; positive_fraction: at most this
        fraction of them positive; fg/bg_iou_threshold: IoU >= fg is positive, < bg negative;
        crowd_ioa_threshold: see the module docstring; box_coder_weights: (wy, wx, wh, ww).
      seed: optional op seed; seeds: optional [B, 2] per-image stateless sampling seeds.
    Returns:
      dict with, for S = batch_size_per_image sampled RoIs per image (positives first):
        "rois": [B, S, 4]; "valid": [B, S] bool (padding slots are False);
        "is_positive": [B, S] bool;
        "class_targets": [B, S] int32 (0 = background, also on padding);
        "box_targets": [B, S, 4] encoded with box_coder_weights (zeros unless positive);
        "matched_gt": [B, S] int32 index into the M ground-truth rows.
    """
    valid = gt_classes > 0
    crowd = valid & gt_is_crowd
    targets_valid = valid & tf.logical_not(gt_is_crowd)
    candidates = tf.concat([proposals, gt_boxes], axis=1)  # [B, R + M, 4]
    candidate_valid = tf.concat([proposal_valid, targets_valid], axis=1)
    iou = box_ops.iou(candidates, gt_boxes)
    matched, labels = match(iou, targets_valid, fg_iou_threshold, bg_iou_threshold,
                            allow_low_quality_matches=False)
    labels = _ignore_crowd(candidates, labels, gt_boxes, crowd, crowd_ioa_threshold)
    labels = tf.where(candidate_valid, labels, IGNORE)
    indices, is_pos, ok = sampling.sample_balanced(
        labels == POSITIVE, labels == NEGATIVE, batch_size_per_image, positive_fraction,
        seed=seed, seeds=seeds, salt=ROI_SAMPLING_SALT)
    is_pos = is_pos & ok
    rois = tf.gather(candidates, indices, batch_dims=1)
    matched_gt = tf.gather(matched, indices, batch_dims=1)
    matched_boxes = tf.gather(gt_boxes, matched_gt, batch_dims=1)
    matched_classes = tf.gather(gt_classes, matched_gt, batch_dims=1)
    class_targets = tf.where(is_pos, matched_classes, 0)
    box_targets = box_ops.encode(matched_boxes, rois, box_coder_weights)
    box_targets = tf.where(is_pos[..., None], box_targets, 0.0)
    return {
        "rois": tf.stop_gradient(rois),
        "valid": ok,
        "is_positive": is_pos,
        "class_targets": class_targets,
        "box_targets": tf.stop_gradient(box_targets),
        "matched_gt": matched_gt,
    }
