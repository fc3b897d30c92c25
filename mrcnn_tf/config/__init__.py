"""Model and training configuration.

    from mrcnn_tf.config import Config, get_config
    config = get_config("coco_r50_fpn", batch_size=8)

`Config` (schema.py) is the frozen, validated dataclass; the named presets and `get_config`
live in presets.py. Both are exported here, the one place users import them from.
"""

from mrcnn_tf.config.presets import (PRESETS, coco_person_keypoint_fields, coco_r50_fpn,
                                     coco_r101_fpn, get_config, keypoint_fields,
                                     keypoint_rcnn_r50_fpn, shapes_keypoints_tiny, shapes_tiny,
                                     torchvision_keypointrcnn_r50_fpn,
                                     torchvision_maskrcnn_r50_fpn,
                                     torchvision_maskrcnn_r50_fpn_v2)
from mrcnn_tf.config.schema import (BACKBONES, BATCH_PADDINGS, FPN_NORMS, HEAD_NORMS,
                                    KEYPOINT_DECODE_RULES, MASK_HEAD_TYPES, MASK_LOSSES,
                                    MASK_UPSAMPLES, NORMS, PASTE_RULES, RESIZE_RULES,
                                    ROI_POOLERS, Config)

__all__ = [
    "BACKBONES", "BATCH_PADDINGS", "FPN_NORMS", "HEAD_NORMS", "KEYPOINT_DECODE_RULES",
    "MASK_HEAD_TYPES", "MASK_LOSSES", "MASK_UPSAMPLES", "NORMS", "PASTE_RULES", "PRESETS",
    "RESIZE_RULES", "ROI_POOLERS", "Config", "coco_person_keypoint_fields", "coco_r101_fpn",
    "coco_r50_fpn", "get_config", "keypoint_fields", "keypoint_rcnn_r50_fpn",
    "shapes_keypoints_tiny", "shapes_tiny", "torchvision_keypointrcnn_r50_fpn",
    "torchvision_maskrcnn_r50_fpn", "torchvision_maskrcnn_r50_fpn_v2",
]
