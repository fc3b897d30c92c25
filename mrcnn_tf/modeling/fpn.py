"""Feature Pyramid Network (Lin et al., 2017): [C2..C5] -> [P2..P6], all `channels` wide."""

from __future__ import annotations

from typing import Optional, Tuple

import keras

from mrcnn_tf.modeling.backbones import build_backbone
from mrcnn_tf.modeling.norm import NORM_KINDS, make_norm

FPN_LEVELS = (2, 3, 4, 5)  # input levels C2..C5; P6 is added on top


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class FPN(keras.layers.Layer):
    """Top-down feature pyramid with lateral connections and a max-pooled extra level.

        L_k = lateral_k(C_k)                          1x1 conv to `channels`, k = 2..5
        T_5 = L_5;  T_k = L_k + upsample2x_nearest(T_{k+1})
        P_k = output_k(T_k)                           3x3 conv, k = 2..5
        P_6 = maxpool(kernel 1, stride 2)(P_5)        ("LastLevelMaxPool"; the RPN uses it)

    Sublayers (stable names; a weight importer maps onto them):

        ours              torchvision (`backbone.fpn.`)            Detectron2 (`backbone.`)
        fpn_lateral{k}    inner_blocks.{k-2}[.0].weight / .bias    fpn_lateral{k}
        fpn_output{k}     layer_blocks.{k-2}[.0].weight / .bias    fpn_output{k}
        fpn_lateral{k}_norm       inner_blocks.{k-2}.1 (v2 BN)           fpn_lateral{k}.norm
        fpn_output{k}_norm        layer_blocks.{k-2}.1 (v2 BN)           fpn_output{k}.norm

    (torchvision >= 0.13 wraps each conv in Conv2dNormActivation, hence the optional `.0`.)
    PyTorch kernels [out, in, kh, kw] become Keras kernels via transpose(2, 3, 1, 0).

    With norm=None the convs have biases (torchvision v1 / Detectron2 default); with a norm
    they have none and the norm follows each conv: "gn" (32 groups, or the largest divisor of
    `channels` below 32) as Detectron2's FPN with NORM="GN", "bn" / "frozen_bn" as torchvision's
    `maskrcnn_resnet50_fpn_v2`. Kernels are initialised as Detectron2's c2_xavier_fill /
    torchvision's kaiming_uniform_(a=1), i.e. uniform in +-sqrt(3 / fan_in) = Keras
    "lecun_uniform"; biases start at 0.

    Args:
        channels: output channels of every level.
        norm: None, "bn", "frozen_bn" or "gn" (`make_norm` kinds).

    Call:
        inputs: list [C2, C3, C4, C5], C_k of shape [B, H / 2^k, W / 2^k, c_k] (H, W multiples
            of 32, possibly dynamic; the channel counts c_k may differ).
    Returns:
        list [P2, P3, P4, P5, P6], P_k of shape [B, H / 2^k, W / 2^k, channels]
        (P6: [B, ceil(H / 64), ceil(W / 64), channels]).
    """

    def __init__(self, channels: int = 256, norm: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        if norm is not None and norm not in NORM_KINDS:
            raise ValueError(f"FPN norm={norm!r}: expected None or one of {tuple(NORM_KINDS)}")
        self.channels = int(channels)
        self.norm = norm
        use_bias = norm is None

        def conv(kernel, name):
            return keras.layers.Conv2D(self.channels, kernel, padding="same", use_bias=use_bias,
                                       kernel_initializer="lecun_uniform", name=name)

        def norm_layer(name):
            return make_norm(norm, name, channels=self.channels)

        # Lists indexed by level - 2, the same order as torchvision's inner/layer_blocks.
        self.lateral_convs = [conv(1, f"fpn_lateral{k}") for k in FPN_LEVELS]
        self.output_convs = [conv(3, f"fpn_output{k}") for k in FPN_LEVELS]
        if norm is not None:
            self.lateral_norms = [norm_layer(f"fpn_lateral{k}_norm") for k in FPN_LEVELS]
            self.output_norms = [norm_layer(f"fpn_output{k}_norm") for k in FPN_LEVELS]
        else:
            self.lateral_norms = [None] * len(FPN_LEVELS)
            self.output_norms = [None] * len(FPN_LEVELS)
        # Nearest 2x upsampling is pixel repetition: it works with dynamic H, W and equals
        # torch's interpolate(size=lateral size, mode="nearest") since sizes are exact 2x.
        self.upsample = keras.layers.UpSampling2D(2, interpolation="nearest", name="fpn_upsample")
        self.p6_pool = keras.layers.MaxPooling2D(pool_size=1, strides=2, padding="valid",
                                                 name="fpn_p6_pool")

    def build(self, input_shape):
        if len(input_shape) != len(FPN_LEVELS):
            raise ValueError(f"{self.name}: expected {len(FPN_LEVELS)} inputs [C2..C5], got "
                             f"{len(input_shape)}")
        for shape, lateral, lateral_norm, output, output_norm in zip(
                input_shape, self.lateral_convs, self.lateral_norms, self.output_convs,
                self.output_norms):
            shape = tuple(shape)
            lateral.build(shape)
            out_shape = shape[:-1] + (self.channels,)
            output.build(out_shape)
            for norm_layer in (lateral_norm, output_norm):
                if norm_layer is not None:
                    norm_layer.build(out_shape)

    def call(self, inputs, training=None):
        laterals = []
        for x, conv, norm_layer in zip(inputs, self.lateral_convs, self.lateral_norms):
            y = conv(x)
            laterals.append(norm_layer(y, training=training) if norm_layer is not None else y)
        # Top-down pass from the coarsest level.
        merged = [None] * len(laterals)
        merged[-1] = laterals[-1]
        for i in range(len(laterals) - 2, -1, -1):
            merged[i] = laterals[i] + self.upsample(merged[i + 1])
        outputs = []
        for x, conv, norm_layer in zip(merged, self.output_convs, self.output_norms):
            y = conv(x)
            outputs.append(norm_layer(y, training=training) if norm_layer is not None else y)
        outputs.append(self.p6_pool(outputs[-1]))
        return outputs

    def compute_output_shape(self, input_shape):
        shapes = [tuple(s[:-1]) + (self.channels,) for s in input_shape]
        b, h, w, _ = shapes[-1]
        half = lambda d: None if d is None else (d + 1) // 2  # noqa: E731
        shapes.append((b, half(h), half(w), self.channels))
        return shapes

    def get_config(self):
        config = super().get_config()
        config.update({"channels": self.channels, "norm": self.norm})
        return config


def build_backbone_with_fpn(config,
                            input_shape: Tuple[Optional[int], Optional[int], int] = (None, None, 3),
                            name: str = "backbone_fpn") -> keras.Model:
    """images [B, H, W, 3] -> [P2, P3, P4, P5, P6] (`config.fpn_channels` channels each).

    The backbone (`build_backbone(config)`) is nested as the sub-model "backbone" and the FPN
    is the layer "fpn", normalized as `config.fpn_norm_kind` says.
    """
    backbone = build_backbone(config, input_shape=input_shape)
    images = keras.Input(shape=tuple(input_shape), dtype="float32", name="images")
    features = backbone(images)
    pyramid = FPN(channels=config.fpn_channels, norm=config.fpn_norm_kind, name="fpn")(features)
    return keras.Model(images, pyramid, name=name)
