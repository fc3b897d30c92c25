"""The default GPU run (op determinism on) meets no kernel TensorFlow refuses, proven on a CPU.

For every preset family, the model the GPU-deterministic device plan builds is traced (training
step: forward, losses, gradients, optimizer update; and inference) with op determinism on, so
Python takes the same graph-building paths as on the GPU, and every node of the graph and its
function library is checked against `op_audit.REFUSED_UNDER_GPU_DETERMINISM`.
"""

import keras
import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

from mrcnn_tf.modeling.norm import FrozenBatchNormalization
from mrcnn_tf.training import device_plan, op_audit, precision

from helpers import (AUDIT_FAMILIES, audit_config, build_under_policy,  # noqa: E402
                     small_model_config)


@pytest.fixture
def op_determinism():
    """Op determinism on for the test, off again after it (the rest of the suite shares the
    process)."""
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        tf_config.disable_op_determinism()
        keras.mixed_precision.set_global_policy("float32")


def traced_nodes(config, policy="float32"):
    """(training-step nodes, inference nodes) of a model of `config` built under `policy`."""
    keras.utils.set_random_seed(0)
    model = build_under_policy(config, policy)
    model.compile(optimizer=precision.wrap_optimizer(
        keras.optimizers.SGD(0.01, momentum=0.9), policy))
    train = op_audit.graph_nodes(
        op_audit.trace_training_step(model, op_audit.training_batch_spec(config, 2)))
    inference = op_audit.graph_nodes(op_audit.trace_inference(model))
    return train, inference


def describe(refusals):
    return [f"{op} at {name} ({refusal.source}: {refusal.condition})"
            for op, name, refusal in refusals]


@pytest.mark.parametrize("label, policy", [(label, "float32") for label in AUDIT_FAMILIES]
                         + [("torchvision mask v2", "mixed_float16")])
def test_default_gpu_plan_contains_no_op_tensorflow_refuses(label, policy, op_determinism):
    base = audit_config(label)
    plan = device_plan.decide("default", "GPU", deterministic=True, jit_compile=False,
                              precision=policy, config=base)
    assert plan.op_determinism and not plan.xla
    assert plan.static_shapes
    train, inference = traced_nodes(plan.model_config(base), policy)
    assert describe(op_audit.gpu_determinism_refusals(train)) == []
    assert describe(op_audit.gpu_determinism_refusals(inference)) == []
    # The trace holds the whole step: the convolutions' and the RoIAlign gathers' gradients.
    types = op_audit.op_types(train)
    assert {"Conv2DBackpropFilter", "Conv2DBackpropInput", "GatherV2"} <= set(types)
    if policy == "mixed_float16":
        assert "IsFinite" in types  # dynamic loss scaling checks the gradients


def test_audit_finds_crop_and_resize_gradient_under_determinism(op_determinism):
    """What the plan avoids: crop_and_resize in a GPU-deterministic run would stop at step 1."""
    config = small_model_config(128, static_shapes=False)
    train, inference = traced_nodes(config)
    found = {op for op, _, _ in op_audit.gpu_determinism_refusals(train)}
    assert {"CropAndResizeGradImage"} <= found
    assert op_audit.gpu_determinism_refusals(inference) == []  # no gradient, nothing refused


def test_audit_tells_batch_norm_gradients_apart_by_mode():
    """The gradient of batch norm in inference mode is refused, in training mode it is not;
    FrozenBatchNormalization trains through a multiply-add, whose gradient is plain
    arithmetic."""
    x = tf.random.stateless_normal([1, 4, 4, 3], seed=[1, 2])
    ones, zeros = tf.ones([3]), tf.zeros([3])

    def gradient_graph(fn):
        @tf.function
        def grad(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = fn(x)
            return tape.gradient(y, x)
        return op_audit.graph_nodes(grad.get_concrete_function(x))

    def fused(is_training):
        return lambda x: tf.raw_ops.FusedBatchNormV3(
            x=x, scale=ones, offset=zeros, mean=zeros if not is_training else tf.zeros([0]),
            variance=ones if not is_training else tf.zeros([0]), is_training=is_training)[0]

    inference_mode = op_audit.gpu_determinism_refusals(gradient_graph(fused(False)))
    assert [op for op, _, _ in inference_mode] == ["FusedBatchNormGradV3"]
    assert op_audit.gpu_determinism_refusals(gradient_graph(fused(True))) == []
    frozen = FrozenBatchNormalization()
    frozen.build(x.shape)
    assert op_audit.gpu_determinism_refusals(
        gradient_graph(lambda x: frozen(x, training=True))) == []
    at_inference = {node.op for node in gradient_graph(lambda x: frozen(x, training=False))}
    assert "FusedBatchNormGradV3" in at_inference  # the fast fused form, where nothing trains


def test_every_refused_op_type_exists_in_this_tensorflow():
    """A misspelt entry would never match a node: each must be a registered op."""
    missing = [op for refusal in op_audit.REFUSED_UNDER_GPU_DETERMINISM
               for op in refusal.op_types if not hasattr(tf.raw_ops, op)]
    assert missing == []
    for refusal in op_audit.REFUSED_UNDER_GPU_DETERMINISM:
        assert refusal.devices in ("GPU", "any", "XLA")
        assert refusal.source.startswith("tensorflow/") and refusal.condition
