"""Normalization layers for the backbone and FPN, chosen by `Config.norm`.

- "bn": `keras.layers.BatchNormalization` (epsilon 1e-5, momentum 0.9, i.e. PyTorch's
  momentum 0.1), trained with batch statistics synchronized across tf.distribute replicas
  (SyncBN). Sensible only with several images per step.
- "frozen_bn": `FrozenBatchNormalization`, a fixed per-channel affine transform built from the
  four BatchNorm arrays. Detection trains with 1-2 images per GPU, too few for batch statistics,
  so Detectron2 / torchvision keep the ImageNet statistics frozen; this is that layer.
- "gn": `keras.layers.GroupNormalization` (Wu & He, 2018), independent of the batch size.

All layers work on channels-last tensors [..., C].
"""

from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class FrozenBatchNormalization(keras.layers.Layer):
    """BatchNorm with fixed statistics and affine parameters.

        y = (x - moving_mean) / sqrt(moving_variance + epsilon) * gamma + beta

    All four arrays are non-trainable weights, so pretrained statistics stay as imported
    (torchvision's / Detectron2's `FrozenBatchNorm2d`). The weight order is the same as
    `keras.layers.BatchNormalization` (gamma, beta, moving_mean, moving_variance), so
    `set_weights(bn.get_weights())` copies a BatchNormalization into it.

    At inference, feature maps [B, H, W, C] in float32 or bfloat16 go through the inference
    form of FusedBatchNormV3 (statistics and affine parameters in float32), which TensorFlow
    fuses into the preceding convolution. In training, and for other inputs, the per-channel
    scale and shift are computed from float32 variables (read without autocasting:
    rsqrt(var + 1e-5) loses precision in float16), then cast to the input dtype and applied as
    one multiply-add: the gradient of the fused form, FusedBatchNormGradV3 with
    is_training=False, is one of the kernels TensorFlow refuses to run on a GPU under op
    determinism (see mrcnn_tf.training.op_audit), while a multiply-add's gradient is plain
    arithmetic. Either way the output has the input's dtype.

    Args:
        epsilon: added to the variance, 1e-5 as in PyTorch.

    Input: [..., C] float tensor. Output: same shape and dtype.
    """

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{self.name}: the channel dimension of the input must be known, "
                             f"got input shape {input_shape}")

        def weight(name, init):
            # autocast=False keeps the reads in float32 under a mixed-precision policy.
            return self.add_weight(name=name, shape=(channels,), initializer=init,
                                   trainable=False, autocast=False)

        self.gamma = weight("gamma", "ones")
        self.beta = weight("beta", "zeros")
        self.moving_mean = weight("moving_mean", "zeros")
        self.moving_variance = weight("moving_variance", "ones")

    def call(self, inputs, training=None):
        if (not training and inputs.shape.rank == 4
                and inputs.dtype in (tf.float32, tf.bfloat16)):
            # The inference form of FusedBatchNormV3 (the same formula): TensorFlow's graph
            # optimizer fuses it with the convolution before it (and a ReLU after), which
            # saves two passes over the feature map per layer; R50 backbone at 512 px on a
            # 2-core CPU: 238 -> 224 ms in float32, 170 -> 135 ms in mixed_bfloat16.
            outputs, *_ = tf.raw_ops.FusedBatchNormV3(
                x=inputs, scale=self.gamma, offset=self.beta, mean=self.moving_mean,
                variance=self.moving_variance, epsilon=self.epsilon, is_training=False,
                data_format="NHWC")
            return outputs
        scale = self.gamma * ops.rsqrt(self.moving_variance + self.epsilon)
        shift = self.beta - self.moving_mean * scale
        return inputs * ops.cast(scale, inputs.dtype) + ops.cast(shift, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon})
        return config


def group_count(channels: int, groups: int = 32) -> int:
    """The largest divisor of `channels` that is <= `groups` (GroupNorm needs groups | channels).

    32 groups (the paper's default) when `channels` is a multiple of 32, as in ResNet and FPN;
    narrower layers get fewer groups (16 channels: 16 groups of one channel each; 48: 24 of 2).
    """
    for g in range(min(groups, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


def make_norm(kind: str, name: str, groups: int = 32,
              channels: Optional[int] = None) -> keras.layers.Layer:
    """Returns a normalization layer of `kind` named `name`.

    Args:
        kind: "bn", "frozen_bn" or "gn" (`Config.norm`).
        name: the layer name.
        groups: the most GroupNorm groups wanted; only used by "gn".
        channels: the channel count of the normalized tensor; required by "gn", which uses
            `group_count(channels, groups)` groups so that the group count divides the channels.

    Raises:
        ValueError: unknown `kind`, or "gn" without `channels`.
    """
    if kind not in NORM_KINDS:
        raise ValueError(f"norm={kind!r}: expected one of {tuple(NORM_KINDS)}")
    return NORM_KINDS[kind](name, groups, channels)


def _batch_norm(name, groups, channels):
    # synchronized: under tf.distribute the batch statistics are those of the global batch,
    # so N replicas train exactly like one replica on the whole batch.
    return keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, synchronized=True,
                                           name=name)


def _frozen_batch_norm(name, groups, channels):
    return FrozenBatchNormalization(epsilon=1e-5, name=name)


def _group_norm(name, groups, channels):
    if channels is None:
        raise ValueError(f"make_norm('gn', {name!r}): `channels` is required to choose a "
                         f"group count that divides it")
    return keras.layers.GroupNormalization(groups=group_count(channels, groups), epsilon=1e-5,
                                           name=name)


# Keyed by Config.norm's allowed values: (name, groups, channels) -> the layer.
NORM_KINDS = {"bn": _batch_norm, "frozen_bn": _frozen_batch_norm, "gn": _group_norm}
