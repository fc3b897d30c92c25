"""Tests for mrcnn_tf.ops.resize: the shortest-edge rules, in Python and in the graph."""

import numpy as np
import pytest
import tensorflow as tf

from helpers import import_torch_or_skip  # noqa: E402
from mrcnn_tf.config import RESIZE_RULES, get_config
from mrcnn_tf.ops import resize
from mrcnn_tf.ops.resize import resize_params, resize_shape_static


# -- the rules -----------------------------------------------------------------------------

@pytest.mark.parametrize("h, w, expected", [
    (480, 640, (800, 1067)),   # shorter side -> 800
    (640, 480, (1067, 800)),
    (800, 800, (800, 800)),
    (100, 2000, (67, 1333)),   # shorter side would make longer 16000: capped at 1333
    (2000, 100, (1333, 67)),
    (427, 640, (800, 1199)),   # 640 * 800 / 427 = 1199.06
    (1, 100000, (1, 1333)),    # never 0 pixels
])
def test_resize_rule(h, w, expected):
    config = get_config("coco_r50_fpn")
    new_h, new_w, scale = resize_params(h, w, config)
    assert (int(new_h), int(new_w)) == expected
    assert resize_shape_static(h, w, config) == expected
    assert abs(float(scale) - min(800 / min(h, w), 1333 / max(h, w))) < 1e-6


@pytest.mark.parametrize("h, w, expected", [
    (480, 640, (800, 1066)),   # 1066.67 floored, where the Detectron2 rule gives 1067
    (315, 1224, (343, 1332)),  # 1224 * (1333 / 1224) = 1332.9999... in float64
    (1479, 410, (1333, 369)),
    (1054, 891, (946, 800)),
])
def test_torchvision_resize_rule_floors(h, w, expected):
    config = get_config("torchvision_maskrcnn_r50_fpn")
    assert resize_shape_static(h, w, config) == expected
    assert tuple(int(v) for v in resize_params(h, w, config)[:2]) == expected


def test_torchvision_resize_rule_matches_torchvision_if_available():
    torch, torchvision = import_torch_or_skip("the fixed cases above stand in")
    transform = torchvision.models.detection.transform.GeneralizedRCNNTransform(800, 1333, [0.0] * 3, [1.0] * 3)
    config = get_config("torchvision_maskrcnn_r50_fpn")
    rng = np.random.default_rng(1)
    for h, w in rng.integers(60, 1600, size=(150, 2)):
        resized = transform.resize(torch.zeros(3, int(h), int(w)), None)[0]
        assert resize_shape_static(int(h), int(w), config) == tuple(resized.shape[-2:]), (h, w)


@pytest.mark.parametrize("preset", ["coco_r50_fpn", "torchvision_maskrcnn_r50_fpn"])
def test_resize_rule_in_graph_matches_static(preset):
    config = get_config(preset, image_min_size=640, image_max_size=1000)
    fn = tf.function(lambda h, w: resize_params(h, w, config)[:2],
                     input_signature=[tf.TensorSpec([], tf.int32)] * 2)
    rng = np.random.default_rng(0)
    for h, w in rng.integers(1, 3000, size=(200, 2)):
        got = tuple(int(v) for v in fn(tf.constant(h, tf.int32), tf.constant(w, tf.int32)))
        assert got == resize_shape_static(int(h), int(w), config)


def test_rule_registry_keys_are_the_configs_allowed_values():
    assert tuple(resize.RESIZE_RULES) == RESIZE_RULES


def test_unknown_rule_is_refused_naming_the_choices():
    class Loose:  # a config-like object that skipped Config's validation
        image_min_size, image_max_size, resize_rule = 800, 1333, "nearest"
    with pytest.raises(ValueError, match="resize_rule='nearest'.*detectron2.*torchvision"):
        resize_shape_static(480, 640, Loose)
