"""Random weights that behave like a trained network's, numerically, for timing.

A freshly initialized R50-FPN with frozen batch norm (identity statistics) fed 0..255 pixels
minus the mean has features around 4e5 at P2: the RPN's deltas throw every proposal off the
image, the ProposalLayer keeps none, and the model detects nothing, so NMS and the mask head
would be timed on empty input. Two standard fixes, applied in place, make the activations
O(1) without changing a shape or a FLOP:

- zero_init_residual (Goyal et al., 2017; torchvision's `zero_init_residual=True`): the scale
  (gamma) of the last norm of every residual block is 0, so each block starts as its shortcut
  and activations do not grow block after block;
- the stem norm's statistics (moving mean and variance) are set from one noise image, so the
  stem's output is standardized as a trained network's is.

On R50-FPN at 256 px this gives features of std ~3, 1000 valid proposals out of 1000 and 100
detections with scores around 1/81 (`benchmarks/torchvision_benchmark.py` treats
torchvision's model the same way).
"""

import re

import keras
import tensorflow as tf

from benchmarks import synthetic
from mrcnn_tf.ops import resize as resize_ops

# conv{stage}_block{block}_{index}_bn: index 0 is the projection shortcut, the highest index
# the block's last norm (3 in a bottleneck, 2 in the tiny backbone's basic block).
_BLOCK_NORM = re.compile(r"^(conv\d+_block\d+)_(\d+)_bn$")


def last_block_norms(backbone):
    """The last norm layer of each residual block of a mrcnn_tf backbone, in order."""
    last = {}
    for layer in backbone.layers:
        match = _BLOCK_NORM.match(layer.name)
        if match and int(match.group(2)) > 0:
            block, index = match.group(1), int(match.group(2))
            if block not in last or index > last[block][0]:
                last[block] = (index, layer)
    return [layer for _, layer in last.values()]


def zero_init_residual(backbone):
    """Sets gamma of each block's last norm to 0. Returns how many blocks were changed."""
    norms = [n for n in last_block_norms(backbone) if getattr(n, "gamma", None) is not None]
    for norm in norms:
        norm.gamma.assign(tf.zeros_like(norm.gamma))
    return len(norms)


def _stem_norm(backbone):
    """The backbone's first norm layer with moving statistics, or None (GroupNorm has none)."""
    return next((layer for layer in backbone.layers
                 if getattr(layer, "moving_variance", None) is not None), None)


def stem_statistics(model):
    """(moving_mean [C], moving_variance [C]) NumPy of the stem norm of a MaskRCNN, or None."""
    stem = _stem_norm(model.backbone)
    return None if stem is None else (stem.moving_mean.numpy(), stem.moving_variance.numpy())


def calibrate_stem(model, size, seed=1, statistics=None):
    """Sets the first norm's moving mean/variance to the statistics of its input on one
    [1, size, size, 3] noise image, normalized as the model normalizes its input.

    statistics: (mean [C], variance [C]) to set instead, e.g. `stem_statistics` of a float32
      model of the same config and seed: a mixed-precision model would compute its own
      through bfloat16 arithmetic, and differ from float32's in these weights alone.
    Norms without moving statistics (GroupNorm) need none and are left alone.
    Returns the calibrated layer's name, or None.
    """
    backbone = model.backbone
    stem = _stem_norm(backbone)
    if stem is None:
        return None
    if statistics is None:
        images = tf.constant(synthetic.random_images(1, size, seed=seed))
        resized, image_shape, _ = resize_ops.preprocess_for_inference(images, model.config)
        inputs = model.normalize_images(resized, image_shape)  # the model's own input normalization
        stem_input = keras.Model(backbone.inputs, stem.input)(inputs)  # [1, h, w, C]
        statistics = tf.nn.moments(tf.cast(stem_input, tf.float32), axes=[0, 1, 2])
    mean, variance = statistics
    stem.moving_mean.assign(mean)
    stem.moving_variance.assign(variance)
    return stem.name


def sane_random_init(model, size, stem_statistics=None):
    """Applies both fixes of the module docstring to a built MaskRCNN; returns a summary.

    stem_statistics: see `calibrate_stem` (default: calibrated on this model)."""
    return {"zero_init_residual_blocks": zero_init_residual(model.backbone),
            "calibrated_stem_norm": calibrate_stem(model, size, statistics=stem_statistics)}
