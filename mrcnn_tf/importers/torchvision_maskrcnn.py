"""torchvision Mask R-CNN: which state-dict tensors fill which of our model's variables.

Architectures (`MASKRCNN_ARCHITECTURES`; `torchvision_weights` converts them):

- `maskrcnn_resnet50_fpn` (v1), the model of torchvision's COCO_V1 weights
  (`maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth`) and of anything fine-tuned from it. It becomes
  the preset `torchvision_maskrcnn_r50_fpn` (stride in the 3x3 conv, RoIAlign aligned=False,
  rounded anchors, ImageNet mean / std, torchvision's resize and mask paste).
- `maskrcnn_resnet50_fpn_v2`, the model of `maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth`: the
  preset `torchvision_maskrcnn_r50_fpn_v2`, which adds BatchNorm after every FPN conv (convs
  without bias), a 2-conv RPN head, a 4conv1fc box head with BatchNorm and BatchNorm in the
  mask head. BatchNorm in eval mode is an affine map of its four arrays, so it is imported
  like the frozen BN of the backbone.

The ResNet body, FPN, RPN head and box head (`detector_entries`) are Keypoint R-CNN's too
(`torchvision_keypointrcnn`). Beyond the layouts of `torch_layers`:

- The first box-head fully connected layer (v1 `fc6`, v2 `box_head.5`) reads the pooled (v2:
  convolved) [C, 7, 7] features flattened channel first.
- The output channels of `rpn.head.bbox_pred` and `roi_heads.box_predictor.bbox_pred` are
  permuted from (dx, dy, dw, dh) to (dy, dx, dh, dw). The anchors of a location come in the
  same order in both (one size per level, ratios 0.5, 1, 2), so objectness channels are taken
  as they are.
- Class index i of torchvision's 91 outputs is our class id i (0 = background) and COCO
  category id i, so nothing is permuted there; `coco_label_map()` names the 90 ids.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Tuple

from mrcnn_tf.importers.torch_layers import (Entry, batch_norm_entries, box_output_perm,
                                             conv_entries, conv_transpose_entries,
                                             linear_entries, variable_shape)

# torchvision's 91 COCO slots (index = class id = COCO category id; "N/A" marks the 11 ids
# COCO does not use, 0 is the background).
COCO_CATEGORY_NAMES = (
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train",
    "truck", "boat", "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter",
    "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra",
    "giraffe", "N/A", "backpack", "umbrella", "N/A", "N/A", "handbag", "tie", "suitcase",
    "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot",
    "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "N/A",
    "dining table", "N/A", "N/A", "toilet", "N/A", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "N/A",
    "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)


@dataclasses.dataclass(frozen=True)
class Architecture:
    """What one torchvision builder becomes here.

    Attributes:
      preset: name of our config preset that reproduces its inference.
      bn_epsilon: the epsilon torchvision's frozen BatchNorm uses with its released weights.
      resnet_blocks: bottleneck blocks of stages C2..C5.
      mapping: (model, architecture) -> the `Entry` list pairing every variable with
        state-dict keys.
      label_map: () -> our `LabelMap` of the classes its released weights detect.
    """

    preset: str
    bn_epsilon: float
    resnet_blocks: Tuple[int, int, int, int]
    mapping: Callable[["object", "Architecture"], List[Entry]]
    label_map: Callable[[], "object"]


def coco_label_map():
    """Our `LabelMap` of torchvision's COCO classes: classes 1..90 with dataset ids 1..90 and
    torchvision's names ("N/A" for the 10 ids COCO leaves unused)."""
    from mrcnn_tf.evaluation.coco_eval import LabelMap  # noqa: PLC0415
    return LabelMap(tuple(range(1, len(COCO_CATEGORY_NAMES))), COCO_CATEGORY_NAMES[1:])


def maskrcnn_entries(model, arch: Architecture) -> List[Entry]:
    """Entries of torchvision's Mask R-CNN, v1 or v2 (read off our model's config): ResNet
    body, FPN (+ BatchNorm in v2), RPN head (1 or 2 convs), box head (v1 TwoMLPHead `fc6`,
    `fc7`; v2 FastRCNNConvFCHead: 4 conv + BN blocks, a Flatten at index 4, then Linear at 5)
    + FastRCNNPredictor; then MaskRCNNHeads (+ BN in v2) + MaskRCNNPredictor when
    config.mask_on."""
    entries = detector_entries(model, arch)
    if model.config.mask_on:
        entries += _mask_head_entries(model, arch)
    return entries


def detector_entries(model, arch: Architecture) -> List[Entry]:
    """ResNet body, FPN, RPN head, box head and box predictor: the part torchvision's Mask
    R-CNN and Keypoint R-CNN share."""
    return _body_entries(model, arch) + _box_head_entries(model, arch)


def _body_entries(model, arch: Architecture) -> List[Entry]:
    """ResNet body, FPN and RPN head."""
    eps = arch.bn_epsilon
    backbone = model.backbone
    entries = conv_entries("backbone.body.conv1", backbone.get_layer("conv1_conv"))
    entries += batch_norm_entries("backbone.body.bn1", backbone.get_layer("conv1_bn"), eps)
    for stage, blocks in enumerate(arch.resnet_blocks, start=2):
        for block in range(1, blocks + 1):
            torch_block = f"backbone.body.layer{stage - 1}.{block - 1}"
            ours = f"conv{stage}_block{block}"
            for i in (1, 2, 3):
                entries += conv_entries(f"{torch_block}.conv{i}",
                                        backbone.get_layer(f"{ours}_{i}_conv"))
                entries += batch_norm_entries(f"{torch_block}.bn{i}",
                                              backbone.get_layer(f"{ours}_{i}_bn"), eps)
            if block == 1:
                entries += conv_entries(f"{torch_block}.downsample.0",
                                        backbone.get_layer(f"{ours}_0_conv"))
                entries += batch_norm_entries(f"{torch_block}.downsample.1",
                                              backbone.get_layer(f"{ours}_0_bn"), eps)

    fpn = model.fpn
    for i, (lateral, lateral_norm, output, output_norm) in enumerate(zip(
            fpn.lateral_convs, fpn.lateral_norms, fpn.output_convs, fpn.output_norms)):
        for blocks, conv, norm in (("inner_blocks", lateral, lateral_norm),
                                   ("layer_blocks", output, output_norm)):
            entries += conv_entries(f"backbone.fpn.{blocks}.{i}.0", conv)
            if norm is not None:
                entries += batch_norm_entries(f"backbone.fpn.{blocks}.{i}.1", norm, eps)

    rpn = model.rpn_head
    for i, conv in enumerate(rpn.hidden_convs):
        entries += conv_entries(f"rpn.head.conv.{i}.0", conv)
    entries += conv_entries("rpn.head.cls_logits", rpn.objectness)
    entries += conv_entries("rpn.head.bbox_pred", rpn.deltas,
                            out_perm=box_output_perm(variable_shape(rpn.deltas.kernel)[-1]))
    return entries


def _box_head_entries(model, arch: Architecture) -> List[Entry]:
    """Box head (TwoMLPHead or FastRCNNConvFCHead) and FastRCNNPredictor."""
    eps = arch.bn_epsilon
    config = model.config
    entries = []
    box = model.box_head
    pool = config.box_pool_size
    if box.num_convs == 0 and box.num_fcs == 2:  # v1's TwoMLPHead
        entries += linear_entries("roi_heads.box_head.fc6", box.fc1,
                                  input_chw=(config.fpn_channels, pool, pool))
        entries += linear_entries("roi_heads.box_head.fc7", box.fc2)
    else:  # FastRCNNConvFCHead: Sequential(conv blocks..., Flatten, (Linear, ReLU)...)
        for i in range(1, box.num_convs + 1):
            entries += conv_entries(f"roi_heads.box_head.{i - 1}.0", getattr(box, f"conv{i}"))
            norm = getattr(box, f"conv{i}_norm", None)
            if norm is not None:
                entries += batch_norm_entries(f"roi_heads.box_head.{i - 1}.1", norm, eps)
        channels = box.conv_dim if box.num_convs else config.fpn_channels
        for j in range(1, box.num_fcs + 1):
            index = box.num_convs + 1 + 2 * (j - 1)
            entries += linear_entries(f"roi_heads.box_head.{index}", getattr(box, f"fc{j}"),
                                      input_chw=(channels, pool, pool) if j == 1 else None)
    entries += linear_entries("roi_heads.box_predictor.cls_score", box.class_logits)
    entries += linear_entries(
        "roi_heads.box_predictor.bbox_pred", box.box_deltas,
        out_perm=box_output_perm(variable_shape(box.box_deltas.kernel)[-1]))
    return entries


def _mask_head_entries(model, arch: Architecture) -> List[Entry]:
    """MaskRCNNHeads (conv [+ BN] blocks) and MaskRCNNPredictor."""
    entries = []
    mask = model.mask_head
    for i, (conv, norm) in enumerate(zip(mask.convs, mask.norm_layers())):
        entries += conv_entries(f"roi_heads.mask_head.{i}.0", conv)
        if norm is not None:
            entries += batch_norm_entries(f"roi_heads.mask_head.{i}.1", norm, arch.bn_epsilon)
    entries += conv_transpose_entries("roi_heads.mask_predictor.conv5_mask", mask.upsample)
    entries += conv_entries("roi_heads.mask_predictor.mask_fcn_logits", mask.predictor)
    return entries


MASKRCNN_ARCHITECTURES: Dict[str, Architecture] = {
    # torchvision's COCO_V1 weights run with eps 0 (models/detection/mask_rcnn.py calls
    # overwrite_eps(model, 0.0) after loading them).
    "maskrcnn_resnet50_fpn": Architecture(
        preset="torchvision_maskrcnn_r50_fpn", bn_epsilon=0.0, resnet_blocks=(3, 4, 6, 3),
        mapping=maskrcnn_entries, label_map=coco_label_map),
    # v2: every BatchNorm (backbone, FPN, box and mask heads) is nn.BatchNorm2d, eps 1e-5.
    "maskrcnn_resnet50_fpn_v2": Architecture(
        preset="torchvision_maskrcnn_r50_fpn_v2", bn_epsilon=1e-5, resnet_blocks=(3, 4, 6, 3),
        mapping=maskrcnn_entries, label_map=coco_label_map),
}
