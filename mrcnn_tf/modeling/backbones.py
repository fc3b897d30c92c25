"""Backbones: images -> [C2, C3, C4, C5] feature maps at strides 4, 8, 16, 32.

Two families, chosen by `Config.backbone`:

- "resnet50" / "resnet101": bottleneck ResNet v1 (He et al., 2016), stages [3, 4, 6, 3] /
  [3, 4, 23, 3], widths 64..512 (outputs 256, 512, 1024, 2048 channels).
- "tiny": a small residual network for 128-256 px images on a CPU (`Config.tiny_widths`).

Layer names follow `keras.applications.ResNet50/101`, so weights map by name:

    conv1_conv, conv1_bn, conv1_relu, pool1_pool                 stem (stride 4)
    conv{s}_block{b}_{i}_conv, conv{s}_block{b}_{i}_bn          s = 2..5 stage, i = 1, 2, 3
    conv{s}_block1_0_conv, conv{s}_block1_0_bn                  projection shortcut
    conv{s}_block{b}_out                                        block output (after the add+ReLU)

The norm layer is named `..._bn` whatever `Config.norm` is, so importers need one mapping.
With norm="none" there is no norm layer and each conv has a bias (the folded inference form of
BatchNorm, `modeling.rebuild.folded`).
The tiny backbone uses the same scheme (its basic blocks have convs _1, _2 and shortcut _0; its
second stem conv is `conv1_2_conv`), which is what `Config.freeze_at` keys on.

Padding. Every strided conv / pool is an explicit symmetric `ZeroPadding2D` followed by a
'valid' op, as torchvision does (padding=3 for the 7x7 stem conv, 1 for the 3x3 maxpool and the
3x3 convs). TF's padding='same' on a stride-2 layer pads asymmetrically (0 top/left, 1
bottom/right for an even input and a 3x3 kernel), which shifts every feature by half a pixel
relative to torchvision and breaks numerical parity with imported weights. Stride-1 convs use
'same', which is symmetric for odd kernels. The maxpool input is post-ReLU (>= 0), so padding it
with zeros gives exactly what torchvision's -inf padding gives: a padded zero can never exceed
the window's real (non-negative) values.

Convs have no bias (but with norm="none"): each is followed by a norm layer whose shift makes
a bias redundant.
keras.applications' ResNet convs do have biases; `_copy_keras_resnet_weights` folds each into
the following BatchNorm's moving mean, which is exact for inference/frozen BN and irrelevant for
training-mode BN (the batch mean removes any constant).
"""

from __future__ import annotations

import os
import re
import warnings
from typing import List, Optional, Sequence, Tuple

import keras
import numpy as np
from absl import logging

from mrcnn_tf.modeling.norm import FrozenBatchNormalization, make_norm

BACKBONE_KINDS = ("resnet50", "resnet101", "tiny")
RESNET_BLOCKS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}
RESNET_WIDTHS = (64, 128, 256, 512)  # bottleneck widths of stages C2..C5; outputs are 4x these
BOTTLENECK_EXPANSION = 4
# keras.applications' caffe-style preprocessing for its ImageNet ResNet weights, in RGB order.
KERAS_RESNET_PIXEL_MEAN_RGB = (123.68, 116.779, 103.939)

_CONV_INIT = "he_normal"


def backbone_channels(config) -> List[int]:
    """Channel counts of [C2, C3, C4, C5] for `config.backbone`."""
    if config.backbone in RESNET_BLOCKS:
        return [w * BOTTLENECK_EXPANSION for w in RESNET_WIDTHS]
    if config.backbone == "tiny":
        return [int(w) for w in config.tiny_widths]
    raise ValueError(f"backbone={config.backbone!r}: expected one of {BACKBONE_KINDS}")


def build_backbone(config, input_shape: Tuple[Optional[int], Optional[int], int] = (None, None, 3),
                   name: str = "backbone") -> keras.Model:
    """Builds the backbone of `config` (fields backbone, backbone_weights, norm, stride_in_1x1,
    freeze_at, tiny_widths).

    Args:
        config: a `mrcnn_tf.config.Config`.
        input_shape: (H, W, 3); H and W may be None (dynamic). At run time they must be multiples
            of 32 so that every stride divides exactly.
        name: the model name.

    Returns:
        A `keras.Model` mapping float32 images [B, H, W, 3] (RGB, already normalized with
        `config.pixel_mean/std`) to the list [C2, C3, C4, C5], Ck of shape
        [B, H / 2^k, W / 2^k, backbone_channels(config)[k - 2]], in the compute dtype of the
        global dtype policy when the model was built (float16 / bfloat16 under a mixed policy,
        see `mrcnn_tf.training.precision`; the weights are float32 either way).

    Raises:
        ValueError: unknown backbone, pretrained weights with norm="gn" or with "tiny", or a
            weights path that is not a file.
    """
    if config.backbone not in BACKBONE_KINDS:
        raise ValueError(f"backbone={config.backbone!r}: expected one of {BACKBONE_KINDS}")
    # Check the weights request before building anything (and before any download).
    if config.backbone_weights is not None:
        _check_weights_request(config)

    inputs = keras.Input(shape=tuple(input_shape), dtype="float32", name="images")
    if config.backbone == "tiny":
        features = _tiny_features(inputs, config)
    else:
        features = _resnet_features(inputs, config)
    model = keras.Model(inputs, features, name=name)

    if config.backbone_weights is not None:
        source = _keras_application_resnet(config.backbone, config.backbone_weights)
        _copy_keras_resnet_weights(source, model)
        del source
    freeze_stages(model, config.freeze_at)
    return model


# -- building blocks -------------------------------------------------------------------------
def _conv(x, filters: int, kernel: int, stride: int, name: str, use_bias: bool = False):
    """kxk conv, padded (k-1)/2 on every side (torchvision's padding)."""
    pad = (kernel - 1) // 2
    if stride > 1 and pad > 0:
        # Symmetric explicit padding: 'same' would pad only bottom/right here (module docstring).
        x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"  # stride 1, odd kernel: TF pads (k-1)/2 on both sides, symmetric
    return keras.layers.Conv2D(filters, kernel, strides=stride, padding=padding,
                               use_bias=use_bias, kernel_initializer=_CONV_INIT, name=name)(x)


def _conv_norm(x, filters, kernel, stride, prefix, norm, relu=True):
    """conv `{prefix}_conv` -> norm `{prefix}_bn` -> optional ReLU `{prefix}_relu`.

    norm="none": a conv with a bias and no norm layer.
    """
    x = _conv(x, filters, kernel, stride, f"{prefix}_conv", use_bias=norm == "none")
    if norm != "none":
        x = make_norm(norm, f"{prefix}_bn", channels=filters)(x)
    if relu:
        x = keras.layers.ReLU(name=f"{prefix}_relu")(x)
    return x


def _bottleneck(x, width: int, stride: int, project: bool, stride_in_1x1: bool, norm: str,
                name: str):
    """ResNet v1 bottleneck: 1x1 (width) -> 3x3 (width) -> 1x1 (4 width), plus the shortcut.

    [B, H, W, Cin] -> [B, H / stride, W / stride, 4 width]. `stride_in_1x1` puts the stride in
    the first 1x1 conv (MSRA / keras.applications) instead of the 3x3 conv (torchvision, "ResNet
    v1.5"); the 1x1-stride version skips 3/4 of the input pixels entirely.
    """
    out_channels = width * BOTTLENECK_EXPANSION
    if project:
        shortcut = _conv_norm(x, out_channels, 1, stride, f"{name}_0", norm, relu=False)
    else:
        shortcut = x
    stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
    y = _conv_norm(x, width, 1, stride_1x1, f"{name}_1", norm)
    y = _conv_norm(y, width, 3, stride_3x3, f"{name}_2", norm)
    y = _conv_norm(y, out_channels, 1, 1, f"{name}_3", norm, relu=False)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def _resnet_features(images, config) -> List:
    """[B, H, W, 3] -> [C2, C3, C4, C5] of a bottleneck ResNet."""
    norm = config.norm
    # Stem: 7x7/2 conv (padding 3) -> norm -> ReLU -> 3x3/2 maxpool (padding 1): stride 4.
    x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(images)
    x = keras.layers.Conv2D(64, 7, strides=2, padding="valid", use_bias=norm == "none",
                            kernel_initializer=_CONV_INIT, name="conv1_conv")(x)
    if norm != "none":
        x = make_norm(norm, "conv1_bn", channels=64)(x)
    x = keras.layers.ReLU(name="conv1_relu")(x)
    # Zero padding == torchvision's -inf padding here because x >= 0 after the ReLU.
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="pool1_pool")(x)

    features = []
    for stage, (width, blocks) in enumerate(zip(RESNET_WIDTHS, RESNET_BLOCKS[config.backbone]),
                                            start=2):
        for block in range(1, blocks + 1):
            # C2 keeps the stem's stride (the maxpool already downsampled); C3..C5 halve.
            stride = 2 if (block == 1 and stage > 2) else 1
            x = _bottleneck(x, width, stride, project=(block == 1),
                            stride_in_1x1=config.stride_in_1x1, norm=norm,
                            name=f"conv{stage}_block{block}")
        features.append(x)
    return features


def _basic_block(x, in_channels: int, width: int, stride: int, norm: str, name: str):
    """Residual basic block: 3x3/stride -> norm -> ReLU -> 3x3 -> norm, + shortcut, ReLU.

    [B, H, W, in_channels] -> [B, H / stride, W / stride, width]; the shortcut is a 1x1/stride
    conv + norm when the shape changes.
    """
    if stride != 1 or in_channels != width:
        shortcut = _conv_norm(x, width, 1, stride, f"{name}_0", norm, relu=False)
    else:
        shortcut = x
    y = _conv_norm(x, width, 3, stride, f"{name}_1", norm)
    y = _conv_norm(y, width, 3, 1, f"{name}_2", norm, relu=False)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def _tiny_features(images, config) -> List:
    """[B, H, W, 3] -> [C2, C3, C4, C5] of the tiny backbone.

    Stem: two 3x3/2 convs (3 -> w2/2 -> w2), stride 4; then one basic block per stage, the
    blocks of C3..C5 starting with stride 2. Two stride-2 convs instead of ResNet's 7x7 conv +
    maxpool keep the stem cheap while still learning the first downsampling. With widths
    (16, 32, 64, 128) this is about 20 M multiply-adds (~40 MFLOPs) per 128x128 image.
    """
    widths = [int(w) for w in config.tiny_widths]
    norm = config.norm
    x = _conv_norm(images, max(widths[0] // 2, 8), 3, 2, "conv1", norm)
    x = _conv_norm(x, widths[0], 3, 2, "conv1_2", norm)
    features = []
    in_channels = widths[0]
    for stage, width in enumerate(widths, start=2):
        stride = 1 if stage == 2 else 2
        x = _basic_block(x, in_channels, width, stride, norm, name=f"conv{stage}_block1")
        in_channels = width
        features.append(x)
    return features


# -- freezing --------------------------------------------------------------------------------
_STAGE_RE = re.compile(r"^(?:conv|pool)(\d)_")


def layer_stage(layer_name: str) -> Optional[int]:
    """Stage of a backbone layer from its name: 1 for the stem (conv1_*, pool1_*), 2..5 for
    conv2_*..conv5_*, None for anything else (the input)."""
    match = _STAGE_RE.match(layer_name)
    return int(match.group(1)) if match else None


def freeze_stages(model: keras.Model, freeze_at: int) -> None:
    """Marks the stem (stage 1) and stages 2..`freeze_at` not trainable (Detectron2's
    FREEZE_AT; 0 trains everything). In Keras 3 a BatchNormalization with trainable=False also
    runs in inference mode (moving statistics), which is what a frozen stage wants."""
    for layer in model.layers:
        stage = layer_stage(layer.name)
        if stage is not None:
            layer.trainable = stage > freeze_at


# -- keras.applications weights --------------------------------------------------------------
def _check_weights_request(config) -> None:
    weights = config.backbone_weights
    if config.backbone not in RESNET_BLOCKS:
        raise ValueError(f"backbone_weights={weights!r}: pretrained weights exist only for "
                         f"backbone in {tuple(RESNET_BLOCKS)}; backbone={config.backbone!r} is "
                         f"trained from random init (backbone_weights=None)")
    if config.norm in ("gn", "none"):
        raise ValueError(f"backbone_weights={weights!r} with norm={config.norm!r}: "
                         f"keras.applications weights hold BatchNorm statistics, which only a "
                         f"BatchNorm can use; "
                         f"use norm='frozen_bn' or 'bn', or backbone_weights=None")
    if weights != "imagenet" and not os.path.isfile(weights):
        raise ValueError(f"backbone_weights={weights!r}: no such file; expected None, "
                         f"'imagenet' or the path to a keras.applications "
                         f"{config.backbone} weights file (.weights.h5 or .h5)")
    if not config.stride_in_1x1:
        logging.warning(
            "backbone_weights=%r with stride_in_1x1=False: keras.applications ResNets put the "
            "stride in the 1x1 conv; the weights load (same shapes) but the network differs "
            "from the one they were trained as, so fine-tune before trusting the features.",
            weights)
    if not np.allclose(config.pixel_std, 1.0):
        logging.warning(
            "backbone_weights=%r: keras.applications ResNet weights expect caffe-style input "
            "(x - mean on 0..255 pixels, no std). Use pixel_mean=%s and pixel_std=(1, 1, 1); "
            "got pixel_mean=%s pixel_std=%s.", weights, KERAS_RESNET_PIXEL_MEAN_RGB,
            tuple(config.pixel_mean), tuple(config.pixel_std))


def _keras_application_resnet(backbone: str, weights: str) -> keras.Model:
    """keras.applications ResNet50/101 with `weights` ("imagenet", which downloads, or a file).

    A file saved from an include_top=False model is tried first, then one from a full model.
    Keras reports a partial load (layers left at their random init) only with a warning; here
    that counts as a failed load, since a half-loaded backbone would train silently wrong.
    """
    constructor = {"resnet50": keras.applications.ResNet50,
                   "resnet101": keras.applications.ResNet101}[backbone]
    if weights == "imagenet":
        return constructor(weights="imagenet", include_top=False)
    errors = []
    for include_top in (False, True):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                model = constructor(weights=weights, include_top=include_top)
            except Exception as error:  # noqa: BLE001 - both attempts are reported below
                errors.append(f"include_top={include_top}: {type(error).__name__}: {error}")
                continue
        partial = [w for w in caught if "freshly-initialized" in str(w.message)]
        if partial:
            errors.append(f"include_top={include_top}: {len(partial)} parts not loaded, e.g. "
                          f"{partial[0].message}")
            continue
        for w in caught:  # anything else Keras said is still worth showing
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return model
    raise ValueError(f"backbone_weights={weights!r}: could not load it into "
                     f"keras.applications.{constructor.__name__} (expected a {backbone} weights "
                     f"file): " + " | ".join(errors))


def _copy_keras_resnet_weights(source: keras.Model, target: keras.Model) -> None:
    """Copies a keras.applications ResNet's weights into `target` by layer name.

    - conv kernels are copied as is, except `conv1_conv`, whose input-channel axis is reversed:
      keras.applications' weights were trained on BGR input, our images are RGB, and
      conv(rgb, K[:, :, ::-1]) == conv(bgr, K).
    - conv biases (keras.applications' convs have them, ours do not) fold into the following
      norm: BN(conv(x) + b) with moving mean m equals BN(conv(x)) with moving mean m - b.
    - BN epsilons differ (1.001e-5 there, 1e-5 here); the difference is added to the moving
      variance so that var + eps is unchanged and the outputs match exactly.

    Raises:
        ValueError: a conv or norm layer of `target` has no same-named, same-shaped source.
    """
    source_layers = {layer.name: layer for layer in source.layers}
    conv_biases = {}

    def source_weights(layer):
        src = source_layers.get(layer.name)
        if src is None:
            raise ValueError(f"weights copy: layer {layer.name!r} has no counterpart in "
                             f"{source.name}")
        return src, [np.asarray(w) for w in src.get_weights()]

    convs = [l for l in target.layers if isinstance(l, keras.layers.Conv2D)]
    norms = [l for l in target.layers if l.name.endswith("_bn")]
    for layer in convs:
        _, arrays = source_weights(layer)
        kernel = arrays[0]
        if layer.name == "conv1_conv":
            kernel = kernel[:, :, ::-1, :]  # BGR -> RGB input channels
        _assign(layer, [kernel])
        conv_biases[layer.name[: -len("_conv")]] = (
            arrays[1] if len(arrays) > 1 else np.zeros(kernel.shape[-1], np.float32))
    for layer in norms:
        if not isinstance(layer, (keras.layers.BatchNormalization, FrozenBatchNormalization)):
            raise ValueError(f"weights copy: cannot load BatchNorm statistics into "
                             f"{type(layer).__name__} layer {layer.name!r}")
        src, (gamma, beta, mean, var) = source_weights(layer)
        bias = conv_biases.get(layer.name[: -len("_bn")], 0.0)
        var = np.maximum(var + float(src.epsilon) - float(layer.epsilon), 0.0)
        _assign(layer, [gamma, beta, mean - bias, var])
    copied = len(convs) + len(norms)
    weighted_in_source = sum(1 for l in source.layers if l.weights and l.name.split("_")[0]
                             in ("conv1", "conv2", "conv3", "conv4", "conv5"))
    if copied != weighted_in_source:
        raise ValueError(f"weights copy: copied {copied} layers but {source.name} has "
                         f"{weighted_in_source} weighted backbone layers")


def _assign(layer, arrays: Sequence[np.ndarray]) -> None:
    expected = [tuple(w.shape) for w in layer.weights]
    got = [tuple(a.shape) for a in arrays]
    if expected != got:
        raise ValueError(f"weights copy: layer {layer.name!r} expects shapes {expected}, "
                         f"source has {got}")
    layer.set_weights([np.asarray(a, dtype=np.float32) for a in arrays])
