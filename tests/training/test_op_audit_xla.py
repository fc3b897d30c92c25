"""The TPU device plan compiles with XLA, proven on the CPU's XLA.

The models the TPU plan builds (mixed_bfloat16, as TPU runs use) have their training step
(forward, losses, gradients, optimizer update) and their inference lowered to HLO through
TensorFlow's tf2xla bridge, which fails, naming the op, on any op that has no XLA kernel; the
families lowered cover every op of every preset family (see TRAINING_FAMILIES). (tests/training/test_precision.py also compiles and runs a whole jit-compiled training
step and inference of the tiny model.)
"""

import keras
import pytest
import tensorflow as tf

from mrcnn_tf.training import device_plan, op_audit

from helpers import (AUDIT_FAMILIES, audit_config, build_under_policy,  # noqa: E402
                     small_model_config)


@pytest.fixture(autouse=True)
def float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def build(config, policy):
    keras.utils.set_random_seed(0)
    model = build_under_policy(config, policy)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    model.optimizer.build(model.trainable_variables)
    return model


def zeros_like_spec(spec):
    return {k: tf.zeros(v.shape, v.dtype) for k, v in spec.items()}


# Lowering a training step costs 10-20 s on 2 cores, so each graph is lowered once, in the
# families that bring new op types: the ResNet-50 backbone with frozen BN, both heads with their
# losses, torchvision v2's normed FPN and conv box head, synchronized BatchNorm (shapes_tiny);
# for inference, the same plus torchvision keypoint decoding under the TPU plan. Tracing every
# family under the TPU plan showed the op types of the others (keypoint only, torchvision v1,
# shapes_keypoints_tiny) inside the union of these, training and inference alike.
TRAINING_FAMILIES = ("mask: coco_r50_fpn", "mask + keypoint", "torchvision mask v2",
                     "shapes_tiny (bn)")
INFERENCE_FAMILIES = ("mask: coco_r50_fpn", "mask + keypoint", "torchvision mask v2",
                      "torchvision keypoint")


def tpu_model(label):
    base = audit_config(label)
    plan = device_plan.decide("tpu", "TPU", deterministic=True, jit_compile=False,
                              precision="mixed_bfloat16", config=base)
    assert plan.xla and not plan.op_determinism
    config = plan.model_config(base)
    return build(config, plan.precision), config


def test_lowered_families_cover_every_family():
    assert set(TRAINING_FAMILIES) | set(INFERENCE_FAMILIES) | {
        "keypoint: keypoint_rcnn_r50_fpn", "shapes_keypoints_tiny (bn)",
        "torchvision mask v1"} == set(AUDIT_FAMILIES)


@pytest.mark.parametrize("label", TRAINING_FAMILIES)
def test_tpu_plan_lowers_the_training_step_to_xla(label):
    model, config = tpu_model(label)
    batch = zeros_like_spec(op_audit.training_batch_spec(config, 2))
    hlo = op_audit.lower_to_hlo(tf.function(model.train_step, jit_compile=True), batch)
    assert "bf16" in hlo and "convolution" in hlo


@pytest.mark.parametrize("label", INFERENCE_FAMILIES)
def test_tpu_plan_lowers_inference_to_xla(label):
    model, _ = tpu_model(label)
    images = tf.zeros([1, 96, 120, 3], tf.uint8)
    hlo = op_audit.lower_to_hlo(tf.function(lambda x: model(x, training=False),
                                            jit_compile=True), images)
    assert "bf16" in hlo and "convolution" in hlo


def test_lowering_names_an_op_without_an_xla_kernel():
    """What the TPU plan avoids: crop_and_resize has no XLA kernel."""
    config = small_model_config(64, static_shapes=False)
    model = build(config, "float32")
    with pytest.raises(ValueError, match="CropAndResize"):
        op_audit.lower_to_hlo(tf.function(lambda x: model(x, training=False),
                                          jit_compile=True), tf.zeros([1, 64, 64, 3], tf.uint8))
