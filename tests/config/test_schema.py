"""Config (mrcnn_tf/config/schema.py): validation messages that name the field, fpn_norm
"auto", frozen fields, static_shapes, and configs written with the old roi_align field."""

import pytest

from mrcnn_tf.config import Config, get_config


@pytest.mark.parametrize("field, value", [
    ("num_classes", 0),
    ("backbone", "vgg16"),
    ("norm", "layer"),
    ("anchor_sizes", (32.0, 64.0)),
    ("rpn_positive_fraction", 1.5),
    ("mask_size", 30),
    ("image_min_size", 2000),
    ("size_divisibility", 48),
    ("gradient_clip_norm", -1.0),
    ("fpn_norm", "layer"),
    ("box_head_norm", "auto"),
    ("mask_head_norm", "syncbn"),
    ("rpn_head_num_convs", 0),
    ("box_head_num_fcs", -1),
    ("box_head_conv_dim", 0),
])
def test_bad_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        get_config("coco_r50_fpn", **{field: value})


def test_fpn_norm_auto_follows_the_backbone_norm():
    assert get_config("coco_r50_fpn").fpn_norm_kind is None
    assert get_config("coco_r50_fpn", norm="gn").fpn_norm_kind == "gn"
    assert get_config("coco_r50_fpn", fpn_norm="none", norm="gn").fpn_norm_kind is None
    assert get_config("torchvision_maskrcnn_r50_fpn_v2").fpn_norm_kind == "bn"


def test_config_is_frozen():
    config = get_config("shapes_tiny")
    with pytest.raises(Exception):
        config.num_classes = 5  # type: ignore[misc]


def test_static_shapes_is_checked():
    assert get_config("shapes_tiny", static_shapes=True).static_shapes is True
    with pytest.raises(ValueError, match="static_shapes='yes': expected True or False"):
        get_config("shapes_tiny", static_shapes="yes")


@pytest.mark.parametrize("old, static", [("crop_and_resize", False), ("builtin", True)])
def test_configs_written_with_the_old_roi_align_field_still_read(old, static):
    values = get_config("shapes_tiny").to_dict()
    del values["static_shapes"]
    values["roi_align_implementation"] = old
    assert Config.from_dict(values) == get_config("shapes_tiny", static_shapes=static)
    values["roi_align_implementation"] = "fast"
    with pytest.raises(ValueError, match="roi_align_implementation='fast'.*static_shapes"):
        Config.from_dict(values)


@pytest.mark.parametrize("aligned, pooler", [(True, "roi_align"), (False, "roi_align_v1")])
def test_configs_written_with_roi_aligned_read_as_a_pooler(aligned, pooler):
    values = get_config("shapes_tiny").to_dict()
    del values["roi_pooler"]
    values["roi_aligned"] = aligned
    assert Config.from_dict(values) == get_config("shapes_tiny", roi_pooler=pooler)
    values["roi_aligned"] = "maybe"
    with pytest.raises(ValueError, match="roi_aligned='maybe'.*roi_pooler"):
        Config.from_dict(values)


@pytest.mark.parametrize("changes, message", [
    ({"mask_loss": "softmax", "mask_class_agnostic": True},
     "mask_loss='softmax' with mask_class_agnostic=True"),
    ({"mask_loss": "softmax", "num_classes": 1}, "mask_loss='softmax' with .*num_classes=1"),
    ({"mask_head_type": "mlp", "mask_upsample": "bilinear"},
     "mask_upsample='bilinear' with mask_head_type='mlp'"),
    ({"roi_levels": (3, 2)}, r"roi_levels=\(3, 2\): expected \(min, max\) FPN levels"),
    ({"roi_levels": (1, 5)}, r"roi_levels=\(1, 5\)"),
    ({"mask_head_fc_dim": 0}, "mask_head_fc_dim=0"),
])
def test_mask_and_pooler_combinations_that_cannot_work_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        get_config("shapes_tiny", **changes)


def test_every_mask_variant_alone_is_accepted():
    for changes in ({"mask_loss": "softmax"}, {"mask_class_agnostic": True},
                    {"mask_head_type": "mlp"}, {"mask_upsample": "nearest"},
                    {"roi_pooler": "roi_pool", "roi_levels": (3, 3)}):
        config = get_config("shapes_tiny", **changes)
        assert all(getattr(config, k) == v for k, v in changes.items())
