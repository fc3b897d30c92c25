"""The named presets (mrcnn_tf/config/presets.py): each one valid and round-tripping through
JSON, the paper's and torchvision's settings, and `get_config` naming an unknown preset or
field."""

import json

import pytest

from mrcnn_tf.config import PRESETS, Config, get_config


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid_and_round_trips_through_json(name):
    config = get_config(name)
    assert config.name == name
    again = Config.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


def test_coco_r50_fpn_has_the_paper_defaults():
    c = get_config("coco_r50_fpn")
    assert (c.image_min_size, c.image_max_size) == (800, 1333)
    assert c.anchor_sizes == (32.0, 64.0, 128.0, 256.0, 512.0)
    assert c.anchor_ratios == (0.5, 1.0, 2.0)
    assert (c.rpn_batch_size_per_image, c.rpn_positive_fraction) == (256, 0.5)
    assert (c.rpn_fg_iou_threshold, c.rpn_bg_iou_threshold) == (0.7, 0.3)
    assert (c.rpn_pre_nms_topk_train, c.rpn_pre_nms_topk_test) == (2000, 1000)
    assert (c.rpn_post_nms_topk_train, c.rpn_nms_threshold) == (1000, 0.7)
    assert (c.roi_batch_size_per_image, c.roi_positive_fraction) == (512, 0.25)
    assert (c.box_pool_size, c.mask_pool_size, c.mask_size) == (7, 14, 28)
    assert (c.roi_sampling_ratio, c.roi_pooler, c.roi_levels) == (2, "roi_align", (2, 5))
    assert (c.detections_per_image, c.score_threshold, c.detection_nms_threshold) == (
        100, 0.05, 0.5)
    assert c.box_coder_weights == (10.0, 10.0, 5.0, 5.0)
    assert (c.momentum, c.weight_decay, c.decay_steps, c.total_steps) == (
        0.9, 1e-4, (60000, 80000), 90000)


def test_torchvision_preset_matches_its_v1_inference_settings():
    c = get_config("torchvision_maskrcnn_r50_fpn")
    assert c.roi_pooler == "roi_align_v1" and c.roi_sampling_ratio == 2
    assert c.box_coder_weights == (10.0, 10.0, 5.0, 5.0)
    assert c.rpn_box_weights == (1.0, 1.0, 1.0, 1.0)
    assert c.norm == "frozen_bn" and c.stride_in_1x1 is False
    assert c.anchor_round_to_int is True
    # ImageNet mean / std on 0..1 RGB, expressed on 0..255.
    for ours, theirs in zip(c.pixel_mean, (0.485, 0.456, 0.406)):
        assert ours == pytest.approx(theirs * 255)
    for ours, theirs in zip(c.pixel_std, (0.229, 0.224, 0.225)):
        assert ours == pytest.approx(theirs * 255)


def test_torchvision_v2_preset_differs_from_v1_in_the_layers_only():
    v1 = get_config("torchvision_maskrcnn_r50_fpn").to_dict()
    v2 = get_config("torchvision_maskrcnn_r50_fpn_v2").to_dict()
    changed = {k for k in v1 if v1[k] != v2[k]}
    assert changed == {"name", "fpn_norm", "rpn_head_num_convs", "box_head_num_convs",
                       "box_head_num_fcs", "box_head_norm", "mask_head_norm"}


def test_unknown_preset_and_unknown_field_are_named():
    with pytest.raises(ValueError, match="unknown config preset 'nope'"):
        get_config("nope")
    with pytest.raises(ValueError, match="not_a_field"):
        get_config("shapes_tiny", not_a_field=1)
