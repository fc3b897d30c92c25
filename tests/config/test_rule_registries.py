"""Every named rule in the config is a key of the registry that implements it.

`mrcnn_tf/config/schema.py` stays free of TensorFlow, so it lists each field's allowed values
itself; the implementations live in registries next to their ops. This test ties the two
together: a rule added on one side only fails here, not in a user's run.
"""

import pytest

from mrcnn_tf import config
from mrcnn_tf.modeling import backbones, losses, mask_heads, norm
from mrcnn_tf.ops import canvas, keypoints, masks, poolers, resize

PAIRS = [
    ("resize_rule", config.RESIZE_RULES, resize.RESIZE_RULES),
    ("paste_rule", config.PASTE_RULES, masks.PASTE_RULES),
    ("keypoint_decode_rule", config.KEYPOINT_DECODE_RULES, keypoints.KEYPOINT_DECODE_RULES),
    ("norm", config.NORMS, norm.NORM_KINDS),
    ("backbone", config.BACKBONES, backbones.BACKBONE_KINDS),
    ("batch_padding", config.BATCH_PADDINGS, canvas.BATCH_PADDINGS),
    ("roi_pooler", config.ROI_POOLERS, poolers.ROI_POOLERS),
    ("mask_loss", config.MASK_LOSSES, losses.MASK_LOSSES),
    ("mask_head_type", config.MASK_HEAD_TYPES, mask_heads.MASK_HEAD_TYPES),
    ("mask_upsample", config.MASK_UPSAMPLES, mask_heads.MASK_UPSAMPLES),
]


@pytest.mark.parametrize("field, allowed, registry", PAIRS, ids=[p[0] for p in PAIRS])
def test_config_allows_exactly_the_registered_rules(field, allowed, registry):
    assert tuple(allowed) == tuple(registry), field
    # And the config refuses anything else, naming the field and the choices.
    with pytest.raises(ValueError, match=f"{field}='no-such-rule': expected one of"):
        config.get_config("shapes_tiny", **{field: "no-such-rule"})


def test_head_norms_are_the_norms_plus_none():
    assert config.HEAD_NORMS == ("none",) + tuple(norm.NORM_KINDS)
    assert config.FPN_NORMS == ("auto",) + config.HEAD_NORMS


def test_every_keypoint_decode_rule_says_whether_it_has_static_shapes():
    # The device plan (XLA) and the TFLite export switch away from a rule without them.
    assert {name: rule.static_shapes for name, rule in keypoints.KEYPOINT_DECODE_RULES.items()
            } == {"detectron2": True, "torchvision": False}
