"""A loaded model made again under other settings: another config (the static-shapes copy the
TFLite export converts), another Keras dtype policy (`--precision`), or the inference form
whose frozen BatchNorms are folded into the convs before them (`folded`), with the same weights.
"""

import keras
import numpy as np

from mrcnn_tf.modeling.mask_rcnn import MaskRCNN
from mrcnn_tf.modeling.norm import FrozenBatchNormalization


# Backbone norms that are a fixed affine map per channel at inference: frozen BatchNorm, and
# BatchNorm, which uses its moving statistics there. GroupNorm depends on the input.
FOLDABLE_NORMS = ("frozen_bn", "bn")


def _empty_copy(model: MaskRCNN, config) -> MaskRCNN:
    # backbone_weights=None: the copy takes `model`'s weights, so building it must not load
    # (or download) the ImageNet weights the training run started from.
    copy = MaskRCNN(config.replace(backbone_weights=None), class_names=model.class_names,
                    category_ids=model.category_ids, name=model.name)
    copy.build()
    return copy


def rebuilt(model: MaskRCNN, config=None) -> MaskRCNN:
    """A new, built MaskRCNN of `config` (default: `model.config`) with `model`'s class names,
    category ids, name and weights. Its layers take the Keras global dtype policy in effect
    during the call.

    The config may change anything but the weights' structure (static shapes, the RoIAlign
    form, decoding rules). Both models are built by the same code, so their weights come in
    the same order; names and shapes are checked anyway, so that a divergence fails loudly
    instead of loading weights into the wrong layers.

    Raises:
      RuntimeError: the weights differ in count, path or shape (the first mismatches named).
    """
    copy = _empty_copy(model, config or model.config)
    source, target = model.weights, copy.weights
    mismatch = [(s.path, t.path) for s, t in zip(source, target)
                if s.path != t.path or tuple(s.shape) != tuple(t.shape)]
    if len(source) != len(target) or mismatch:
        raise RuntimeError(f"rebuilt {model.name}: the new model has different weights "
                           f"({len(source)} vs {len(target)}; first mismatches {mismatch[:3]})")
    for s, t in zip(source, target):
        t.assign(s)
    return copy


def folded(model: MaskRCNN, config=None) -> MaskRCNN:
    """`rebuilt(model, config)` with each backbone conv + BatchNorm made one biased conv.

    A frozen BatchNorm, and a BatchNorm at inference (moving statistics), is an affine map per
    output channel, y = s x + t with
    s = gamma / sqrt(moving_variance + epsilon) and t = beta - moving_mean s, so the conv before
    it equals a conv with kernel W s (s scaling each output channel) and bias t. The copy is
    built with `norm="none"` (biased convs, no norm layers) and given those weights; every other
    weight is copied by path. Only for inference: the result trains differently (the bias is
    trainable where the norm was frozen).

    Why: TensorFlow's graph optimizer fuses conv + FusedBatchNorm into one oneDNN call in
    float32 only; in bfloat16 the frozen norm ran as its own pass over each feature map, and
    Keras' BatchNormalization always does (element-wise ops). Conv + bias (+ ReLU) fuses in
    both. R50 backbone at 512 px on a 2-core AMX CPU: 155 -> 117 ms in
    mixed_bfloat16, 235 -> 207 ms in float32 (measured with `benchmarks op_profile`).

    A model whose backbone norm is not in FOLDABLE_NORMS ("gn", "none") is `rebuilt` as is.

    Raises:
      RuntimeError: a weight of the copy has no source (a path or shape that differs).
    """
    config = config or model.config
    if config.norm not in FOLDABLE_NORMS:
        return rebuilt(model, config)
    copy = _empty_copy(model, config.replace(norm="none"))
    norms = {layer.name: layer for layer in model.backbone.layers
             if isinstance(layer, (FrozenBatchNormalization, keras.layers.BatchNormalization))}
    source = {w.path: w for w in model.weights}
    used = set()
    for weight in copy.weights:
        layer, _, name = weight.path.rpartition("/")
        norm = norms.get(layer[:-len("_conv")] + "_bn") if layer.endswith("_conv") else None
        if norm is not None:
            scale, shift = _affine(norm)
            used.update(w.path for w in norm.weights)
            value = shift if name == "bias" else _value(source, weight, model) * scale
        else:
            value = _value(source, weight, model)
        used.add(weight.path)
        weight.assign(value.astype(np.float32))
    unused = sorted(set(source) - used)
    if unused:
        raise RuntimeError(f"folded {model.name}: weights of the model have no place in the "
                           f"folded copy: {unused[:3]}")
    return copy


def _affine(norm):
    """(scale, shift) [C] float64 of a frozen or inference-mode BatchNorm: y = x scale + shift."""
    channels = norm.moving_mean.shape[0]
    read = lambda w, default: (np.full(channels, default) if w is None  # noqa: E731
                               else w.numpy().astype(np.float64))
    gamma = read(getattr(norm, "gamma", None), 1.0)  # None: BatchNormalization(scale=False)
    beta = read(getattr(norm, "beta", None), 0.0)
    mean, variance = read(norm.moving_mean, 0.0), read(norm.moving_variance, 1.0)
    scale = gamma / np.sqrt(variance + norm.epsilon)
    return scale, beta - mean * scale


def _value(source, weight, model) -> np.ndarray:
    """The value [weight.shape] float64 of `weight`'s same-path, same-shape source weight."""
    if weight.path not in source:
        raise RuntimeError(f"folded {model.name}: the folded copy's weight {weight.path} has "
                           f"no source weight")
    value = source[weight.path].numpy().astype(np.float64)
    if tuple(value.shape) != tuple(weight.shape):
        raise RuntimeError(f"folded {model.name}: weight {weight.path} has shape "
                           f"{tuple(weight.shape)}, its source {tuple(value.shape)}")
    return value
