"""torchvision Keypoint R-CNN: which state-dict tensors fill which of our model's variables.

Architecture (`KEYPOINTRCNN_ARCHITECTURES`; `torchvision_weights` converts it):

- `keypointrcnn_resnet50_fpn`, the model of `keypointrcnn_resnet50_fpn_coco-fc266e95.pth`
  (COCO_V1; BatchNorm eps 0 as for Mask R-CNN v1; the older COCO_LEGACY file
  `keypointrcnn_resnet50_fpn_coco-9f466800.pth` runs with eps 1e-5: pass bn_epsilon=1e-5):
  the preset `torchvision_keypointrcnn_r50_fpn`. The v1 backbone, FPN, RPN and box head
  (`torchvision_maskrcnn.detector_entries`) with 2 class slots (background, person), no mask
  head, and the keypoint head: 8 x (3x3 conv 512 + ReLU) in `roi_heads.keypoint_head`
  (nn.Sequential, so the convs are its items 0, 2, ..., 14) -> our conv_fcn1..8, then
  `roi_heads.keypoint_predictor.kps_score_lowres` (ConvTranspose2d 4x4, stride 2, padding 1)
  -> score_lowres. The preset decodes heatmaps with torchvision's rule
  (`ops.keypoints.heatmaps_to_keypoints_torchvision`).

Its 2 class outputs are background and person (COCO category 1): `coco_person_label_map()`.
Its 17 heatmaps come in COCO's keypoint order, which is ours.
"""

from __future__ import annotations

from typing import Dict, List

from mrcnn_tf.importers.torch_layers import Entry, conv_entries, conv_transpose_entries
from mrcnn_tf.importers.torchvision_maskrcnn import Architecture, detector_entries


def coco_person_label_map():
    """Our `LabelMap` of torchvision's Keypoint R-CNN: class 1, COCO's "person" (id 1)."""
    from mrcnn_tf.evaluation.coco_eval import LabelMap  # noqa: PLC0415
    return LabelMap((1,), ("person",))


def keypointrcnn_entries(model, arch: Architecture) -> List[Entry]:
    """Entries of torchvision's Keypoint R-CNN: the detector Mask R-CNN v1 has
    (`detector_entries`), then KeypointRCNNHeads + KeypointRCNNPredictor."""
    return detector_entries(model, arch) + _keypoint_head_entries(model)


def _keypoint_head_entries(model) -> List[Entry]:
    """KeypointRCNNHeads, an nn.Sequential of (Conv2d, ReLU) pairs (conv i at item 2i), and
    KeypointRCNNPredictor's transposed conv (its 2x bilinear upsample has no weights)."""
    head = model.keypoint_head
    entries = []
    for i, conv in enumerate(head.convs):
        entries += conv_entries(f"roi_heads.keypoint_head.{2 * i}", conv)
    entries += conv_transpose_entries("roi_heads.keypoint_predictor.kps_score_lowres",
                                      head.score_lowres)
    return entries


KEYPOINTRCNN_ARCHITECTURES: Dict[str, Architecture] = {
    # COCO_V1 weights run with eps 0 too (models/detection/keypoint_rcnn.py); the
    # COCO_LEGACY ones keep FrozenBatchNorm2d's 1e-5.
    "keypointrcnn_resnet50_fpn": Architecture(
        preset="torchvision_keypointrcnn_r50_fpn", bn_epsilon=0.0, resnet_blocks=(3, 4, 6, 3),
        mapping=keypointrcnn_entries, label_map=coco_person_label_map),
}
