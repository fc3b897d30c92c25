"""The named presets: the paper's and Detectron2's COCO recipes, torchvision's inference
settings for imported weights, and the small synthetic-shapes models.

`get_config(name, **overrides)` returns preset `name` with fields replaced.
"""

from __future__ import annotations

from typing import Any

from mrcnn_tf import keypoint_spec
from mrcnn_tf.config.schema import Config


def coco_r50_fpn() -> Config:
    """The paper's / Detectron2's R50-FPN 1x schedule on COCO (batch 16, 90k iterations)."""
    # keras.applications' ImageNet ResNet weights (like Detectron2's MSRA ones) expect mean
    # subtraction without division by the std.
    return Config(name="coco_r50_fpn", num_classes=80, backbone_weights="imagenet",
                  pixel_std=(1.0, 1.0, 1.0),
                  train_min_sizes=(640, 672, 704, 736, 768, 800))


def coco_r50_fpn_scratch() -> Config:
    """R50-FPN trained from random weights, Detectron2's from-scratch recipe (He et al.,
    "Rethinking ImageNet Pre-training", 2019): GroupNorm in the backbone, FPN and heads (the
    box head 4 convs + 1 fc), nothing frozen, and a 3x longer schedule (270k iterations at
    batch 16; the paper trains up to 9x). Frozen norms or stages would keep random layers as
    they are, which no run can recover from (see `training.preflight`)."""
    return coco_r50_fpn().replace(
        name="coco_r50_fpn_scratch", backbone_weights=None, norm="gn", freeze_at=0,
        pixel_std=(58.395, 57.12, 57.375), box_head_num_convs=4, box_head_num_fcs=1,
        box_head_norm="gn", mask_head_norm="gn",
        decay_steps=(210000, 250000), total_steps=270000)


def coco_r101_fpn() -> Config:
    """coco_r50_fpn with a ResNet-101 backbone."""
    return coco_r50_fpn().replace(name="coco_r101_fpn", backbone="resnet101")


def torchvision_maskrcnn_r50_fpn() -> Config:
    """torchvision's `maskrcnn_resnet50_fpn` (v1) inference settings, for imported weights:
    ImageNet mean/std on 0..1 RGB (the same numbers on 0..255), stride in the 3x3 conv,
    RoIAlign aligned=False with sampling ratio 2, RPN box weights 1 and box weights (10,10,5,5),
    91 COCO category slots (90 foreground)."""
    return Config(
        name="torchvision_maskrcnn_r50_fpn",
        num_classes=90,
        resize_rule="torchvision",
        paste_rule="torchvision",
        stride_in_1x1=False,
        norm="frozen_bn",
        roi_pooler="roi_align_v1",
        roi_sampling_ratio=2,
        anchor_round_to_int=True,
        anchor_stride_from_grid=True,
        rpn_min_box_size=1e-3,
        min_detection_size=1e-2,
        rpn_smooth_l1_beta=1.0 / 9,
        box_smooth_l1_beta=1.0 / 9,
    )


def torchvision_maskrcnn_r50_fpn_v2() -> Config:
    """torchvision's `maskrcnn_resnet50_fpn_v2` (Li et al., "Benchmarking detection transfer
    learning with vision transformers", 2021): the v1 settings with BatchNorm after every FPN
    conv, a 2-conv RPN head, a 4conv1fc box head with BatchNorm and BatchNorm in the mask head.

    The imported backbone keeps its statistics frozen (1-2 images per step are too few for
    batch statistics); the FPN and head norms are BatchNorm, as torchvision trains them (the
    head norms see hundreds of RoIs per image)."""
    return torchvision_maskrcnn_r50_fpn().replace(
        name="torchvision_maskrcnn_r50_fpn_v2",
        fpn_norm="bn",
        rpn_head_num_convs=2,
        box_head_num_convs=4,
        box_head_num_fcs=1,
        box_head_norm="bn",
        mask_head_norm="bn",
    )


def keypoint_fields(names, skeleton, sigmas) -> dict:
    """The Config fields of a keypoint set: num_keypoints, keypoint_names, keypoint_skeleton
    and keypoint_oks_sigmas (for `Config.replace(**keypoint_fields(...))`)."""
    return {"num_keypoints": len(names), "keypoint_names": tuple(names),
            "keypoint_skeleton": tuple(skeleton), "keypoint_oks_sigmas": tuple(sigmas)}


def coco_person_keypoint_fields() -> dict:
    """A person-keypoint model's fields: one class (person), no mask head, COCO's 17 keypoints
    with their skeleton and OKS sigmas."""
    return {"num_classes": 1, "mask_on": False,
            **keypoint_fields(keypoint_spec.COCO_PERSON_KEYPOINT_NAMES,
                              keypoint_spec.COCO_PERSON_SKELETON,
                              keypoint_spec.COCO_PERSON_OKS_SIGMAS)}


def torchvision_keypointrcnn_r50_fpn() -> Config:
    """torchvision's `keypointrcnn_resnet50_fpn` inference settings, for imported weights: the
    v1 Mask R-CNN settings (`torchvision_maskrcnn_r50_fpn`) with one class (person), no mask
    head, COCO's 17 keypoints on a 14 x 14 RoIAlign (sampling ratio 2, aligned=False), the
    8-conv 512-channel head, torchvision's keypoint decode (per-RoI bicubic resize, the logit as
    score) and KeypointRCNN's training scale jitter (shorter side 640..800; 800 at test time).
    Everything else (1000 proposals and 100 detections per test image, thresholds, box coder)
    is KeypointRCNN's default as for Mask R-CNN."""
    return torchvision_maskrcnn_r50_fpn().replace(
        name="torchvision_keypointrcnn_r50_fpn",
        **coco_person_keypoint_fields(),
        keypoint_pool_size=14,
        keypoint_head_conv_dim=512,
        keypoint_head_num_convs=8,
        keypoint_decode_rule="torchvision",
        train_min_sizes=(640, 672, 704, 736, 768, 800),
    )


def keypoint_rcnn_r50_fpn() -> Config:
    """Detectron2's COCO-Keypoints keypoint_rcnn_R_50_FPN_1x: one class (person), COCO's 17
    keypoints, no mask head, 1500 proposals per training image, box smooth-L1 beta 0.5 (plain
    L1 costs keypoint AP), the 1x schedule of coco_r50_fpn. `--override mask_on=true` adds the
    mask head (on COCO's person masks)."""
    return coco_r50_fpn().replace(
        name="keypoint_rcnn_r50_fpn",
        **coco_person_keypoint_fields(),
        rpn_post_nms_topk_train=1500,
        box_smooth_l1_beta=0.5,
    )


def shapes_tiny() -> Config:
    """A small model for 128 px synthetic shapes: trains on a 2-core CPU in minutes."""
    return Config(
        name="shapes_tiny",
        num_classes=3,
        image_min_size=128,
        image_max_size=128,
        max_instances=8,
        mini_mask_size=0,
        backbone="tiny",
        norm="bn",
        freeze_at=0,
        tiny_widths=(16, 32, 64, 128),
        fpn_channels=64,
        anchor_sizes=(12.0, 24.0, 48.0, 96.0, 192.0),
        rpn_batch_size_per_image=64,
        rpn_pre_nms_topk_train=500,
        rpn_pre_nms_topk_test=300,
        rpn_post_nms_topk_train=200,
        rpn_post_nms_topk_test=100,
        roi_batch_size_per_image=64,
        roi_positive_fraction=0.25,
        box_head_fc_dim=128,
        mask_head_conv_dim=64,
        mask_head_num_convs=2,
        mask_pool_size=14,
        mask_size=28,
        detections_per_image=20,
        detection_pre_nms_topk=400,
        learning_rate=0.02,
        batch_size=8,
        weight_decay=1e-4,
        warmup_steps=100,
        decay_steps=(1500,),
        total_steps=2000,
        gradient_clip_norm=10.0,
    )


def shapes_keypoints_tiny() -> Config:
    """shapes_tiny's model with a small keypoint head and no mask head, for the synthetic
    houses of mrcnn_tf.data.keypoint_shapes (6 keypoints): Keypoint R-CNN on a 2-core CPU in
    minutes. The head has 4 convs of 64 channels instead of Detectron2's 8 of 512 (7.0 GFLOP
    per RoI, `python -m benchmarks keypoints`; these cost 0.06 GFLOP)."""
    return shapes_tiny().replace(
        name="shapes_keypoints_tiny",
        num_classes=1,
        mask_on=False,
        **keypoint_fields(keypoint_spec.HOUSE_KEYPOINT_NAMES, keypoint_spec.HOUSE_SKELETON,
                          keypoint_spec.HOUSE_OKS_SIGMAS),
        keypoint_head_conv_dim=64,
        keypoint_head_num_convs=4,
    )


def small_shapes_ablation() -> Config:
    """The ablations' model (`mrcnn-tf ablate`): shapes_tiny's network on the 256 px "small
    shapes" (objects of 8 to 32 px, thin bars), with every RoI pooled from P3 alone (stride
    8), a coarse map on which rounding a box to the grid moves it by a visible share of the
    object, as the paper's stride-32 C5 ablation did for COCO's objects."""
    return shapes_tiny().replace(
        name="small_shapes_ablation",
        num_classes=4,
        image_min_size=256,
        image_max_size=256,
        max_instances=12,
        anchor_sizes=(8.0, 16.0, 32.0, 64.0, 128.0),
        roi_levels=(3, 3),
        detections_per_image=30,
        batch_size=4,
        learning_rate=0.01,  # shapes_tiny's 0.02 for 8 images, scaled linearly
        warmup_steps=100,
        decay_steps=(600,),
        total_steps=800,  # about 4 minutes a run on 2 cores: a study of 12 runs in 50
    )


PRESETS = {
    "coco_r50_fpn": coco_r50_fpn,
    "coco_r50_fpn_scratch": coco_r50_fpn_scratch,
    "coco_r101_fpn": coco_r101_fpn,
    "torchvision_maskrcnn_r50_fpn": torchvision_maskrcnn_r50_fpn,
    "torchvision_maskrcnn_r50_fpn_v2": torchvision_maskrcnn_r50_fpn_v2,
    "torchvision_keypointrcnn_r50_fpn": torchvision_keypointrcnn_r50_fpn,
    "keypoint_rcnn_r50_fpn": keypoint_rcnn_r50_fpn,
    "shapes_tiny": shapes_tiny,
    "shapes_keypoints_tiny": shapes_keypoints_tiny,
    "small_shapes_ablation": small_shapes_ablation,
}


def get_config(name: str, /, **overrides: Any) -> Config:
    """Returns preset `name` with `overrides` applied (`name` is positional-only, so the
    config's own `name` field can be overridden too: get_config("coco_r50_fpn", name="mine"))."""
    if name not in PRESETS:
        raise ValueError(f"unknown config preset {name!r}; expected one of {sorted(PRESETS)}")
    config = PRESETS[name]()
    return config.replace(**overrides) if overrides else config
