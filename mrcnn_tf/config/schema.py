"""`Config`: every hyper-parameter of Mask R-CNN in one frozen dataclass, validated on
construction, and the allowed values of its named rules.

Every field is a plain Python value, so a config round-trips through `to_dict` / `from_dict`
(and JSON) and travels with checkpoints and exports. This module imports no TensorFlow; the
rules' implementations live in registries next to their ops, and
tests/config/test_rule_registries.py checks that their keys are the allowed values listed here.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Tuple

from mrcnn_tf import keypoint_spec

BACKBONES = ("resnet50", "resnet101", "tiny")
NORMS = ("bn", "frozen_bn", "gn")
# Norms of the FPN and head convs: "none" or one of NORMS; the FPN also takes "auto".
HEAD_NORMS = ("none",) + NORMS
FPN_NORMS = ("auto",) + HEAD_NORMS
RESIZE_RULES = ("detectron2", "torchvision")
PASTE_RULES = ("detectron2", "torchvision")
# How heatmaps become keypoints: see Config.keypoint_decode_rule.
KEYPOINT_DECODE_RULES = ("detectron2", "torchvision")
# How training batches are padded: see Config.batch_padding.
BATCH_PADDINGS = ("batch", "buckets", "square")
# How a box's features are pooled (mrcnn_tf.ops.poolers): see Config.roi_pooler.
ROI_POOLERS = ("roi_align", "roi_align_v1", "roi_warp", "roi_pool")
# The mask branch's variants (Mask R-CNN's Table 2 ablations): see Config.mask_loss etc.
MASK_LOSSES = ("sigmoid", "softmax")
MASK_HEAD_TYPES = ("fcn", "mlp")
MASK_UPSAMPLES = ("deconv", "bilinear", "nearest")


@dataclasses.dataclass(frozen=True)
class Config:
    """Every hyper-parameter of Mask R-CNN. Sizes are in input-image pixels."""

    name: str = "custom"
    num_classes: int = 80  # foreground classes K; class 0 is background

    # Input: resize keeping aspect ratio so the shorter side is `image_min_size` and the longer
    # at most `image_max_size`, then pad to a multiple of `size_divisibility`.
    image_min_size: int = 800
    image_max_size: int = 1333
    # How the resized size is rounded: "detectron2" rounds half up, "torchvision" floors (e.g.
    # 480x640 -> 800x1066 there, 800x1067 here).
    resize_rule: str = "detectron2"
    size_divisibility: int = 32
    # Normalization on 0..255 RGB: (x - mean) / std.
    pixel_mean: Tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: Tuple[float, float, float] = (58.395, 57.12, 57.375)
    max_instances: int = 100  # ground-truth instances kept per image (padded to this count)
    # Ground-truth masks stored at this size inside their boxes (bounded memory whatever the
    # image size); 0 keeps full-canvas masks (exact, fine for small images).
    mini_mask_size: int = 56
    # Training scale jitter: the shorter side is drawn from these (empty: image_min_size).
    train_min_sizes: Tuple[int, ...] = ()
    # How training batches are padded (ops/canvas.py): "batch" to the batch's largest image,
    # rounded up to size_divisibility, with images of one orientation batched together;
    # "buckets" to the smallest of three fixed canvases that holds them (few shapes: XLA
    # compiles once per shape, and the device plan picks it under XLA); "square" to the
    # max_padded_size square, one shape for every batch.
    batch_padding: str = "batch"

    # Backbone and FPN.
    backbone: str = "resnet50"
    backbone_weights: Optional[str] = None  # None, "imagenet" or a path to a weights file
    # "bn", "frozen_bn" or "gn" after each backbone conv; "none": convs with a bias and no norm,
    # the inference form of "frozen_bn" and "bn" that `modeling.rebuild.folded` builds (a ResNet
    # trained from random weights without a norm rarely converges).
    norm: str = "frozen_bn"
    stride_in_1x1: bool = True  # ResNet v1 (keras.applications) puts the stride in the 1x1 conv
    freeze_at: int = 2  # stem + stages up to C{freeze_at} are not trained (0 = train all)
    tiny_widths: Tuple[int, int, int, int] = (16, 32, 64, 128)  # C2..C5 widths of "tiny"
    fpn_channels: int = 256
    # A norm after each FPN conv (which then has no bias). "auto": GroupNorm when norm == "gn"
    # (Detectron2's GN recipe), none otherwise (the original FPN; torchvision v1).
    fpn_norm: str = "auto"

    # Anchors: one size per level P2..P6, the same ratios (h / w) on every level.
    anchor_sizes: Tuple[float, ...] = (32.0, 64.0, 128.0, 256.0, 512.0)
    anchor_ratios: Tuple[float, ...] = (0.5, 1.0, 2.0)
    anchor_round_to_int: bool = False  # torchvision rounds anchor corners; Detectron2 does not
    # torchvision spaces a level's anchors by (padded image size // feature map size) per axis,
    # which is not the nominal stride on P6 when P5 has an odd size (e.g. 800 // 13 = 61).
    anchor_stride_from_grid: bool = False

    # RPN.
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_fg_iou_threshold: float = 0.7
    rpn_bg_iou_threshold: float = 0.3
    rpn_pre_nms_topk_train: int = 2000  # per level
    rpn_pre_nms_topk_test: int = 1000  # per level
    rpn_post_nms_topk_train: int = 1000  # per image
    rpn_post_nms_topk_test: int = 1000  # per image
    rpn_nms_threshold: float = 0.7
    rpn_min_box_size: float = 0.0
    rpn_box_weights: Tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    rpn_smooth_l1_beta: float = 0.0
    rpn_head_num_convs: int = 1  # shared 3x3 conv + ReLU layers before the 1x1 outputs

    # RoI heads.
    roi_batch_size_per_image: int = 512
    roi_positive_fraction: float = 0.25
    roi_fg_iou_threshold: float = 0.5
    roi_bg_iou_threshold: float = 0.5  # negatives: max IoU < this
    crowd_ioa_threshold: float = 0.5  # RoIs this much inside a crowd region are ignored
    box_pool_size: int = 7
    mask_pool_size: int = 14
    mask_size: int = 28
    roi_sampling_ratio: int = 2
    # The pooler of the box, mask and keypoint heads (mrcnn_tf.ops.poolers): "roi_align"
    # (aligned=True, Detectron2's ROIAlignV2), "roi_align_v1" (aligned=False: the paper's
    # first form and torchvision v1's), "roi_warp" (the box rounded to the feature grid, then
    # bilinear) or "roi_pool" (Fast R-CNN: rounded box, rounded bins, max). The last two are
    # the paper's Table 2c ablations; every one trains, exports and converts to TFLite.
    roi_pooler: str = "roi_align"
    # The FPN levels the poolers read (min, max): a box's level by the FPN rule is clamped
    # into them. (2, 5) is FPN's; (3, 3) pools every box from P3 (stride 8), a coarse single
    # map like the paper's C4 / C5 ablations.
    roi_levels: Tuple[int, int] = (2, 5)
    # The shape policy. False: shapes follow the data where that saves work: RoIAlign pools
    # each box on its own level with crop_and_resize, and the mask and keypoint heads run only
    # on the rows in use (the positives in training, the detections at inference): fastest
    # in TensorFlow on CPU and GPU. True: every shape is fixed by the config: gather-only
    # RoIAlign and mask-target crops (the same numbers) and heads on all rows, which XLA
    # (TPU, jit_compile), TFLite builtin ops and deterministic GPU training need. The device
    # plan (training.device_plan) and the TFLite export switch it on by themselves.
    static_shapes: bool = False
    box_coder_weights: Tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    # Box head: box_head_num_convs x (3x3 conv [+ norm] + ReLU), then box_head_num_fcs x
    # (fc + ReLU). The paper's "2fc" head is 0 convs + 2 fcs; "4conv1fc" (Wu & He's GN
    # recipe, torchvision v2) is 4 convs + 1 fc with a norm.
    box_head_num_convs: int = 0
    box_head_conv_dim: int = 256
    box_head_num_fcs: int = 2
    box_head_fc_dim: int = 1024
    box_head_norm: str = "none"  # after each box-head conv: "none", "bn", "frozen_bn", "gn"
    mask_head_conv_dim: int = 256
    mask_head_num_convs: int = 4
    mask_head_norm: str = "none"  # after each mask-head conv: "none", "bn", "frozen_bn", "gn"
    # The mask branch's variants, each a Table 2 ablation of the paper (defaults: the paper's
    # choice). mask_class_agnostic: one mask for every class instead of one per class.
    # mask_loss: "sigmoid" (per-class binary cross-entropy, the GT class's mask only) or
    # "softmax" (a per-pixel softmax over background and the K classes, the GT class against
    # the rest: masks compete). mask_head_type: "fcn" (convs, 2x upsampling, 1x1 predictor)
    # or "mlp" (two fc layers of mask_head_fc_dim, then an fc to every class's m x m logits).
    # mask_upsample: the FCN head's 2x upsampling: "deconv" (learned 2x2 stride-2 transposed
    # conv + ReLU), or fixed "bilinear" / "nearest" interpolation (no weights).
    mask_class_agnostic: bool = False
    mask_loss: str = "sigmoid"
    mask_head_type: str = "fcn"
    mask_head_fc_dim: int = 1024
    mask_upsample: str = "deconv"
    # The mask branch can be switched off (Keypoint R-CNN without masks, Detectron2's
    # MASK_ON): no mask head, no mask loss, no "masks" output.
    mask_on: bool = True

    # Keypoint branch (Keypoint R-CNN; off when num_keypoints == 0). Keypoints are (y, x, v)
    # in continuous pixels, see mrcnn_tf.keypoint_spec. The names decide the left/right swap
    # of a horizontal flip; the skeleton is flat 0-based pairs (for drawing); the OKS sigmas
    # (for COCO keypoint AP) default to COCO's for COCO's person keypoints.
    num_keypoints: int = 0
    keypoint_names: Tuple[str, ...] = ()
    keypoint_skeleton: Tuple[int, ...] = ()
    keypoint_oks_sigmas: Tuple[float, ...] = ()
    keypoint_pool_size: int = 14  # RoIAlign output; heatmaps are 4x this (56 x 56)
    keypoint_head_conv_dim: int = 512
    keypoint_head_num_convs: int = 8
    # How a detection's heatmaps become (y, x, score): "detectron2" takes the centre of the
    # argmax bin of the S x S maps, scored by its softmax probability (static shapes
    # throughout; mrcnn_tf.ops.keypoints.heatmaps_to_keypoints); "torchvision" resizes each
    # RoI's maps bicubically to its own pixel size, takes the argmax pixel and scores it by
    # the resized logit, exactly as torchvision's Keypoint R-CNN (for imported weights;
    # heatmaps_to_keypoints_torchvision: shapes inside depend on the boxes, so not under XLA).
    keypoint_decode_rule: str = "detectron2"
    box_smooth_l1_beta: float = 0.0
    # dw, dh are clamped at this before exp() when decoding.
    bbox_delta_clip: float = math.log(1000.0 / 16)

    # Detection (inference).
    detections_per_image: int = 100
    score_threshold: float = 0.05
    detection_nms_threshold: float = 0.5
    detection_pre_nms_topk: int = 5000  # (RoI, class) candidates kept before per-class NMS
    min_detection_size: float = 0.0
    # How predict_images pastes the m x m mask probabilities into the image: "detectron2"
    # samples the mask at each pixel centre (continuous box); "torchvision" pads the mask by
    # one, expands the box by (m + 2) / m, truncates it to integers and bilinear-resizes the
    # padded mask onto [y1, y2] x [x1, x2] inclusive (paste_masks_in_image).
    paste_rule: str = "detectron2"

    # Losses.
    loss_weight_rpn_class: float = 1.0
    loss_weight_rpn_box: float = 1.0
    loss_weight_class: float = 1.0
    loss_weight_box: float = 1.0
    loss_weight_mask: float = 1.0
    loss_weight_keypoint: float = 1.0

    # Optimization (SGD with momentum, linear warmup, step decay).
    learning_rate: float = 0.02  # for `batch_size` images per step
    batch_size: int = 16
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_steps: int = 1000
    warmup_factor: float = 0.001
    decay_steps: Tuple[int, ...] = (60000, 80000)
    decay_factor: float = 0.1
    total_steps: int = 90000
    gradient_clip_norm: Optional[float] = None

    def __post_init__(self):
        errors = []

        def check(condition, field, expected):
            if not condition:
                errors.append(f"{field}={getattr(self, field)!r}: expected {expected}")

        check(isinstance(self.num_classes, int) and self.num_classes >= 1, "num_classes",
              "an integer >= 1 (foreground classes, background excluded)")
        check(0 < self.image_min_size <= self.image_max_size, "image_min_size",
              "0 < image_min_size <= image_max_size")
        check(self.resize_rule in RESIZE_RULES, "resize_rule", f"one of {RESIZE_RULES}")
        check(self.paste_rule in PASTE_RULES, "paste_rule", f"one of {PASTE_RULES}")
        check(self.batch_padding in BATCH_PADDINGS, "batch_padding",
              f"one of {BATCH_PADDINGS}")
        check(self.keypoint_decode_rule in KEYPOINT_DECODE_RULES, "keypoint_decode_rule",
              f"one of {KEYPOINT_DECODE_RULES}")
        check(self.size_divisibility >= 32 and self.size_divisibility % 32 == 0,
              "size_divisibility", "a positive multiple of 32 (the coarsest backbone stride)")
        check(len(self.pixel_mean) == 3, "pixel_mean", "3 values (R, G, B)")
        check(len(self.pixel_std) == 3 and all(s > 0 for s in self.pixel_std), "pixel_std",
              "3 positive values (R, G, B)")
        check(self.max_instances >= 1, "max_instances", "an integer >= 1")
        check(self.mini_mask_size >= 0, "mini_mask_size", ">= 0 (0 = full-canvas masks)")
        check(all(0 < s_ <= self.image_max_size for s_ in self.train_min_sizes),
              "train_min_sizes", "sizes in (0, image_max_size]")
        check(self.backbone in BACKBONES, "backbone", f"one of {BACKBONES}")
        check(self.norm in HEAD_NORMS, "norm", f"one of {HEAD_NORMS}")
        check(0 <= self.freeze_at <= 5, "freeze_at", "0..5")
        check(len(self.tiny_widths) == 4, "tiny_widths", "4 widths for C2..C5")
        check(self.fpn_channels >= 1, "fpn_channels", "an integer >= 1")
        check(self.fpn_norm in FPN_NORMS, "fpn_norm", f"one of {FPN_NORMS}")
        check(self.box_head_norm in HEAD_NORMS, "box_head_norm", f"one of {HEAD_NORMS}")
        check(self.mask_head_norm in HEAD_NORMS, "mask_head_norm", f"one of {HEAD_NORMS}")
        check(isinstance(self.rpn_head_num_convs, int) and self.rpn_head_num_convs >= 1,
              "rpn_head_num_convs", "an integer >= 1")
        for f in ("box_head_num_convs", "box_head_num_fcs"):
            check(isinstance(getattr(self, f), int) and getattr(self, f) >= 0, f,
                  "an integer >= 0")
        check(len(self.anchor_sizes) == 5 and all(s > 0 for s in self.anchor_sizes),
              "anchor_sizes", "5 positive sizes, one per level P2..P6")
        check(len(self.anchor_ratios) >= 1 and all(r > 0 for r in self.anchor_ratios),
              "anchor_ratios", "one or more positive ratios (height / width)")
        for f in ("rpn_positive_fraction", "roi_positive_fraction"):
            check(0 < getattr(self, f) <= 1, f, "a fraction in (0, 1]")
        for f in ("rpn_fg_iou_threshold", "rpn_bg_iou_threshold", "roi_fg_iou_threshold",
                  "roi_bg_iou_threshold", "rpn_nms_threshold", "detection_nms_threshold",
                  "crowd_ioa_threshold"):
            check(0 <= getattr(self, f) <= 1, f, "a value in [0, 1]")
        check(self.rpn_bg_iou_threshold <= self.rpn_fg_iou_threshold, "rpn_bg_iou_threshold",
              "<= rpn_fg_iou_threshold")
        check(self.roi_bg_iou_threshold <= self.roi_fg_iou_threshold, "roi_bg_iou_threshold",
              "<= roi_fg_iou_threshold")
        for f in ("rpn_batch_size_per_image", "rpn_pre_nms_topk_train", "rpn_pre_nms_topk_test",
                  "rpn_post_nms_topk_train", "rpn_post_nms_topk_test",
                  "roi_batch_size_per_image", "box_pool_size", "mask_pool_size",
                  "detections_per_image", "detection_pre_nms_topk", "box_head_fc_dim",
                  "box_head_conv_dim", "mask_head_conv_dim", "batch_size", "total_steps"):
            check(isinstance(getattr(self, f), int) and getattr(self, f) >= 1, f,
                  "an integer >= 1")
        check(self.mask_size == 2 * self.mask_pool_size, "mask_size",
              "2 * mask_pool_size (the mask head upsamples once by 2)")
        check(self.roi_pooler in ROI_POOLERS, "roi_pooler", f"one of {ROI_POOLERS}")
        check(len(self.roi_levels) == 2 and 2 <= self.roi_levels[0] <= self.roi_levels[1] <= 5,
              "roi_levels", "(min, max) FPN levels with 2 <= min <= max <= 5")
        check(self.mask_loss in MASK_LOSSES, "mask_loss", f"one of {MASK_LOSSES}")
        check(self.mask_head_type in MASK_HEAD_TYPES, "mask_head_type",
              f"one of {MASK_HEAD_TYPES}")
        check(self.mask_upsample in MASK_UPSAMPLES, "mask_upsample",
              f"one of {MASK_UPSAMPLES}")
        check(isinstance(self.mask_class_agnostic, bool), "mask_class_agnostic",
              "True or False")
        check(isinstance(self.mask_head_fc_dim, int) and self.mask_head_fc_dim >= 1,
              "mask_head_fc_dim", "an integer >= 1")
        if self.mask_loss == "softmax" and (self.mask_class_agnostic or self.num_classes < 2):
            errors.append(f"mask_loss='softmax' with mask_class_agnostic="
                          f"{self.mask_class_agnostic}, num_classes={self.num_classes}: "
                          "expected class-specific masks of 2 or more classes (with one mask "
                          "there is nothing for the softmax to compete with; use 'sigmoid')")
        if self.mask_head_type == "mlp" and self.mask_upsample != "deconv":
            errors.append(f"mask_upsample={self.mask_upsample!r} with mask_head_type='mlp': "
                          "the MLP head predicts m x m logits directly and upsamples nothing; "
                          "expected mask_head_type='fcn' or mask_upsample='deconv'")
        check(self.roi_sampling_ratio >= 0, "roi_sampling_ratio",
              ">= 0 (0 = adaptive, as torchvision)")
        check(isinstance(self.static_shapes, bool), "static_shapes", "True or False")
        check(len(self.box_coder_weights) == 4 and all(w > 0 for w in self.box_coder_weights),
              "box_coder_weights", "4 positive weights (wy, wx, wh, ww)")
        check(len(self.rpn_box_weights) == 4 and all(w > 0 for w in self.rpn_box_weights),
              "rpn_box_weights", "4 positive weights (wy, wx, wh, ww)")
        check(0 <= self.score_threshold < 1, "score_threshold", "a value in [0, 1)")
        check(self.mask_head_num_convs >= 0, "mask_head_num_convs", "an integer >= 0")
        check(isinstance(self.num_keypoints, int) and self.num_keypoints >= 0,
              "num_keypoints", "an integer >= 0 (0 = no keypoint head)")
        if self.num_keypoints > 0:
            check(len(self.keypoint_names) == self.num_keypoints, "keypoint_names",
                  f"{self.num_keypoints} names (one per keypoint, num_keypoints)")
            check(len(self.keypoint_skeleton) % 2 == 0 and all(
                isinstance(i, int) and 0 <= i < self.num_keypoints
                for i in self.keypoint_skeleton), "keypoint_skeleton",
                f"flat 0-based index pairs in 0..{self.num_keypoints - 1}")
            check(len(self.keypoint_oks_sigmas) in (0, self.num_keypoints) and all(
                s_ > 0 for s_ in self.keypoint_oks_sigmas), "keypoint_oks_sigmas",
                f"empty (COCO's) or {self.num_keypoints} positive sigmas")
            check(self.keypoint_pool_size >= 1, "keypoint_pool_size", "an integer >= 1")
            check(self.keypoint_head_conv_dim >= 1, "keypoint_head_conv_dim",
                  "an integer >= 1")
            check(self.keypoint_head_num_convs >= 0, "keypoint_head_num_convs",
                  "an integer >= 0")
            if len(self.keypoint_names) == self.num_keypoints:
                try:
                    keypoint_spec.flip_permutation(self.keypoint_names)
                except ValueError as e:
                    errors.append(str(e))
        check(self.loss_weight_keypoint >= 0, "loss_weight_keypoint", ">= 0")
        check(self.learning_rate > 0, "learning_rate", "> 0")
        check(0 <= self.momentum < 1, "momentum", "a value in [0, 1)")
        check(self.weight_decay >= 0, "weight_decay", ">= 0")
        check(self.warmup_steps >= 0, "warmup_steps", ">= 0")
        check(list(self.decay_steps) == sorted(self.decay_steps), "decay_steps",
              "increasing step numbers")
        check(self.gradient_clip_norm is None or self.gradient_clip_norm > 0,
              "gradient_clip_norm", "None or > 0")
        if errors:
            raise ValueError(f"invalid config {self.name!r}: " + "; ".join(errors))

    # -- derived values ------------------------------------------------------------------
    @property
    def num_anchors_per_location(self) -> int:
        return len(self.anchor_ratios)

    @property
    def keypoint_heatmap_size(self) -> int:
        """Side S of the keypoint heatmaps (the head upsamples its input 4x)."""
        return 4 * self.keypoint_pool_size

    @property
    def keypoint_flip_permutation(self) -> Tuple[int, ...]:
        """Keypoint order after a horizontal flip (see keypoint_spec.flip_permutation)."""
        return keypoint_spec.flip_permutation(self.keypoint_names)

    @property
    def oks_sigmas(self) -> Tuple[float, ...]:
        """keypoint_oks_sigmas, or COCO's for COCO's person keypoints (else ValueError)."""
        if self.keypoint_oks_sigmas:
            return tuple(self.keypoint_oks_sigmas)
        return keypoint_spec.default_oks_sigmas(self.keypoint_names)

    @property
    def max_padded_size(self) -> int:
        """Side of the square canvas that holds any resized image, padded."""
        d = self.size_divisibility
        return int(math.ceil(self.image_max_size / d) * d)

    @property
    def fpn_norm_kind(self) -> Optional[str]:
        """The FPN's norm with "auto" resolved: None (no norm) or one of NORMS."""
        if self.fpn_norm == "auto":
            return "gn" if self.norm == "gn" else None
        return None if self.fpn_norm == "none" else self.fpn_norm

    def replace(self, **changes: Any) -> "Config":
        """Returns a copy with `changes` applied (validated again)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; known fields: "
                             f"{sorted(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        values = _upgrade(values)
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}")
        # JSON turns tuples into lists; the dataclass is frozen and hashable with tuples.
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**fixed)


def _upgrade(values: dict) -> dict:
    """Reads configs written before a field was renamed (run folders, exports, .keras files):
    roi_align_implementation "crop_and_resize" / "builtin" became static_shapes False / True,
    and roi_aligned True / False became roi_pooler "roi_align" / "roi_align_v1"."""
    if "roi_aligned" in values:
        values = dict(values)
        aligned = values.pop("roi_aligned")
        if not isinstance(aligned, bool):
            raise ValueError(f"roi_aligned={aligned!r} (an older form of roi_pooler): "
                             "expected true or false")
        values.setdefault("roi_pooler", "roi_align" if aligned else "roi_align_v1")
    if "roi_align_implementation" not in values:
        return values
    values = dict(values)
    old = values.pop("roi_align_implementation")
    if old not in ("crop_and_resize", "builtin"):
        raise ValueError(f"roi_align_implementation={old!r} (an older name of static_shapes): "
                         "expected 'crop_and_resize' or 'builtin'")
    values.setdefault("static_shapes", old == "builtin")
    return values
