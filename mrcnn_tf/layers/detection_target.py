"""DetectionTargetLayer: samples training RoIs and builds class, box and mask targets."""

import keras
import tensorflow as tf

from mrcnn_tf.ops import keypoints as keypoint_ops
from mrcnn_tf.ops import masks as mask_ops
from mrcnn_tf.ops import sampling
from mrcnn_tf.ops import targets as target_ops


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class DetectionTargetLayer(keras.layers.Layer):
    """Adds the ground-truth boxes to the proposals, matches by IoU, samples RoIs (a fraction
    foreground), and gives each its class and box target; the positive RoIs also get their
    matched ground-truth mask cropped to mask_size x mask_size.

    Crowd boxes are never targets and RoIs inside crowd regions are not used as negatives;
    an image with no ground truth gets only background RoIs.

    Call args:
      proposals: [B, R, 4]; proposal_valid: [B, R] bool.
      gt_boxes: [B, M, 4]; gt_classes: [B, M] int32 (0 = padding); gt_is_crowd: [B, M] bool;
      gt_masks: [B, M, H, W] full-canvas binary masks, or [B, M, m, m] mini-masks (each inside
        its gt box) when the layer was made with mini_masks=True; None for a model without
        a mask head (no mask targets then).
      seeds: optional [B, 2] per-image stateless sampling seeds (reproducible whatever the
        batch layout); None samples with the layer's op seed.
      gt_keypoints: optional [B, M, K, 3] (y, x, v) pixels, for a layer made with
        keypoint_heatmap_size S > 0.
    Returns a dict:
      "rois" [B, S, 4], "valid" [B, S], "is_positive" [B, S], "class_targets" [B, S],
      "box_targets" [B, S, 4], "matched_gt" [B, S] for S = batch_size_per_image; and for the
      first P slots (which hold every positive):
      "mask_rois" [B, P, 4], "mask_classes" [B, P] int32, "mask_valid" [B, P] bool,
      "mask_targets" [B, P, mask_size, mask_size] float32 in {0, 1} (with gt_masks);
      "keypoint_targets" [B, P, K] int32 flat S x S heatmap indices and "keypoint_valid"
      [B, P, K] bool (with gt_keypoints; `ops.keypoints.keypoint_targets` on the positives);
      P = max(1, the largest positive count of an image), or the static
      int(S * positive_fraction) with static_shapes (XLA, TFLite, deterministic GPU), where
      the mask targets are also cropped with gathers instead of crop_and_resize.

    Precision: the layer's dtype policy is "float32" unless `dtype` is given, so under a mixed
    global policy the boxes are never rounded to float16 / bfloat16 and the targets are float32.
    """

    def __init__(self, batch_size_per_image=512, positive_fraction=0.25, fg_iou_threshold=0.5,
                 bg_iou_threshold=0.5, crowd_ioa_threshold=0.5,
                 box_coder_weights=(10.0, 10.0, 5.0, 5.0), mask_size=28, mini_masks=False,
                 seed=None, static_shapes=False,
                 keypoint_heatmap_size=0, **kwargs):
        kwargs.setdefault("dtype", "float32")  # box arithmetic in float32 (class docstring)
        super().__init__(**kwargs)
        self.batch_size_per_image = int(batch_size_per_image)
        self.positive_fraction = float(positive_fraction)
        self.fg_iou_threshold = float(fg_iou_threshold)
        self.bg_iou_threshold = float(bg_iou_threshold)
        self.crowd_ioa_threshold = float(crowd_ioa_threshold)
        self.box_coder_weights = tuple(box_coder_weights)
        self.mask_size = int(mask_size)
        self.mini_masks = bool(mini_masks)
        self.seed = seed
        # Static shapes crop mask targets with gathers, which XLA compiles (ops/masks.py), and
        # keep all P mask rows.
        self.static_shapes = bool(static_shapes)
        self.keypoint_heatmap_size = int(keypoint_heatmap_size)

    @classmethod
    def from_model_config(cls, config, **kwargs):
        return cls(config.roi_batch_size_per_image, config.roi_positive_fraction,
                   config.roi_fg_iou_threshold, config.roi_bg_iou_threshold,
                   config.crowd_ioa_threshold, config.box_coder_weights, config.mask_size,
                   config.mini_mask_size > 0,
                   static_shapes=config.static_shapes,
                   keypoint_heatmap_size=(config.keypoint_heatmap_size if config.num_keypoints
                                          else 0), **kwargs)

    @property
    def max_positives(self):
        return sampling.max_positives(self.batch_size_per_image, self.positive_fraction)

    def call(self, proposals, proposal_valid, gt_boxes, gt_classes, gt_is_crowd, gt_masks,
             seeds=None, gt_keypoints=None):
        proposals = tf.cast(proposals, tf.float32)
        gt_boxes = tf.cast(gt_boxes, tf.float32)
        targets = target_ops.detection_targets(
            proposals, proposal_valid, gt_boxes, tf.cast(gt_classes, tf.int32),
            tf.cast(gt_is_crowd, tf.bool), batch_size_per_image=self.batch_size_per_image,
            positive_fraction=self.positive_fraction, fg_iou_threshold=self.fg_iou_threshold,
            bg_iou_threshold=self.bg_iou_threshold,
            crowd_ioa_threshold=self.crowd_ioa_threshold,
            box_coder_weights=self.box_coder_weights, seed=self.seed, seeds=seeds)
        p = self.max_positives
        if not self.static_shapes:
            # Only the rows up to the last positive of any image: the mask head (about 1 GFLOP
            # per RoI at 14x14x256, three times that in training) then runs on the positives,
            # as in Detectron2 and torchvision, not on P mostly padded slots. At least one row
            # (oneDNN convolutions mis-shape an empty batch). Static shapes keep all P.
            positives = tf.reduce_sum(tf.cast(targets["is_positive"][:, :p], tf.int32), axis=1)
            p = tf.maximum(tf.reduce_max(tf.concat([positives, [0]], axis=0)), 1)
        mask_rois = targets["rois"][:, :p]
        targets["mask_rois"] = mask_rois
        targets["mask_classes"] = targets["class_targets"][:, :p]
        targets["mask_valid"] = targets["is_positive"][:, :p]
        matched = targets["matched_gt"][:, :p]
        if gt_keypoints is not None:
            if not self.keypoint_heatmap_size:
                raise ValueError("DetectionTargetLayer got gt_keypoints but was made with "
                                 "keypoint_heatmap_size=0; expected the heatmap side (56)")
            matched_keypoints = tf.gather(tf.cast(gt_keypoints, tf.float32), matched,
                                          batch_dims=1)  # [B, P, K, 3]
            indices, valid = keypoint_ops.keypoint_targets(matched_keypoints, mask_rois,
                                                           self.keypoint_heatmap_size)
            targets["keypoint_targets"] = indices
            targets["keypoint_valid"] = valid & targets["mask_valid"][..., None]
        if gt_masks is None:
            return targets
        if self.mini_masks:
            targets["mask_targets"] = mask_ops.crop_mini_mask_targets(
                gt_masks, gt_boxes, mask_rois, matched, self.mask_size,
                static_shapes=self.static_shapes)
        else:
            targets["mask_targets"] = mask_ops.crop_mask_targets(
                gt_masks, mask_rois, matched, self.mask_size,
                static_shapes=self.static_shapes)
        return targets

    def get_config(self):
        config = super().get_config()
        config.update({
            "batch_size_per_image": self.batch_size_per_image,
            "positive_fraction": self.positive_fraction,
            "fg_iou_threshold": self.fg_iou_threshold,
            "bg_iou_threshold": self.bg_iou_threshold,
            "crowd_ioa_threshold": self.crowd_ioa_threshold,
            "box_coder_weights": list(self.box_coder_weights),
            "mask_size": self.mask_size,
            "mini_masks": self.mini_masks,
            "seed": self.seed,
            "static_shapes": self.static_shapes,
            "keypoint_heatmap_size": self.keypoint_heatmap_size,
        })
        return config
