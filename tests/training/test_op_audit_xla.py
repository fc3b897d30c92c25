"""The TPU device plan compiles with XLA, proven on the CPU's XLA.

For every preset family, the model the TPU plan builds (mixed_bfloat16, as TPU runs use) has
its training step (forward, losses, gradients, optimizer update) and its inference lowered to
HLO through TensorFlow's tf2xla bridge, which fails, naming the op, on any op that has no XLA
kernel. (tests/training/test_precision.py also compiles and runs a whole jit-compiled training
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


@pytest.mark.parametrize("label", list(AUDIT_FAMILIES))
def test_tpu_plan_lowers_training_and_inference_to_xla(label):
    base = audit_config(label)
    plan = device_plan.decide("tpu", "TPU", deterministic=True, jit_compile=False,
                              precision="mixed_bfloat16", config=base)
    assert plan.xla and not plan.op_determinism
    config = plan.model_config(base)
    model = build(config, plan.precision)
    batch = zeros_like_spec(op_audit.training_batch_spec(config, 2))
    train_hlo = op_audit.lower_to_hlo(tf.function(model.train_step, jit_compile=True), batch)
    images = tf.zeros([1, 96, 120, 3], tf.uint8)
    inference_hlo = op_audit.lower_to_hlo(
        tf.function(lambda x: model(x, training=False), jit_compile=True), images)
    assert "bf16" in train_hlo and "convolution" in train_hlo
    assert "convolution" in inference_hlo


def test_lowering_names_an_op_without_an_xla_kernel():
    """What the TPU plan avoids: crop_and_resize has no XLA kernel."""
    config = small_model_config(64, roi_align_implementation="crop_and_resize")
    model = build(config, "float32")
    with pytest.raises(ValueError, match="CropAndResize"):
        op_audit.lower_to_hlo(tf.function(lambda x: model(x, training=False),
                                          jit_compile=True), tf.zeros([1, 64, 64, 3], tf.uint8))
