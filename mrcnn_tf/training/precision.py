"""Mixed precision and XLA for training and inference (`--mixed_precision`, `--jit_compile`).

Mixed precision. `set_precision("mixed_float16" | "mixed_bfloat16")` sets the Keras global
dtype policy, which every layer built afterwards takes as its own: variables stay float32, the
convolutions and dense layers of the backbone, FPN and heads compute in float16 / bfloat16.
What must stay float32 does so whatever the global policy:

- the layers that handle box coordinates (ProposalLayer: box decoding, clipping and NMS;
  PyramidRoIAlign: level assignment and the bilinear arithmetic of both RoIAlign
  implementations; DetectionTargetLayer; DetectionLayer) have the "float32" policy, so Keras
  casts their floating inputs to float32 (pixel coordinates up to ~1333 are off by up to 4 px
  in bfloat16, 0.5 px in float16);
- anchors are float32 constants, and the heads' last layers (RPN objectness and deltas, class
  logits and box deltas) are float32; the mask head's logits are cast to float32;
- batch / group normalization compute their statistics in float32 (Keras does this for
  mixed policies; FrozenBatchNormalization reads its arrays in float32);
- the losses cast their inputs to float32, and the mask sigmoid runs on float32 logits;
- the loss trackers (keras.metrics.Mean) are float32.

float16 needs dynamic loss scaling (its smallest normal number is 6e-5, so small gradients
underflow); bfloat16 has float32's exponent range and does not. `wrap_optimizer` gives a
`keras.optimizers.LossScaleOptimizer` for mixed_float16. Note that `Model.compile` already wraps
the optimizer itself when the *model's* dtype policy is mixed_float16 (Keras 3,
`auto_scale_loss=True`), and it never wraps a LossScaleOptimizer twice; `wrap_optimizer` makes
the wrapping explicit (e.g. for a custom loop or a model built before the policy was set) and
is a no-op on an already wrapped optimizer. MaskRCNN.train_step calls
`optimizer.scale_loss(loss)` and `apply_gradients`, which unscales the gradients and skips a
step (halving the scale) when any gradient is not finite.

XLA. A model compiled with `model.compile(jit_compile=True)` needs static shapes
(`Config.static_shapes`: the gather-only RoIAlign), since tf.image.crop_and_resize has no XLA
kernel; `training.device_plan` picks it
for every XLA run (`DevicePlan.model_config`). What compiles (TF 2.21, XLA_CPU_JIT, fixed image
sizes, so every top-k count and padded length is static):

- inference, whole: resize and pad, backbone, FPN, RPN, ProposalLayer (top-k, the map_fn of
  NonMaxSuppressionV4, which has an XLA kernel), gather-only RoIAlign, heads, DetectionLayer;
- training: the same plus anchor / RoI sampling (stateless random + top-k), the mask
  targets (`ops.masks.sample_masks` with static_shapes gathers its bilinear
  samples, as XLA has no CropAndResize kernel), the losses, the gradients and the optimizer
  update.

The keypoint branch (targets, loss, the default "detectron2" heatmap decoding) has static
shapes and compiles too, training and inference, with and without the mask head;
`keypoint_decode_rule="torchvision"` (a per-RoI resize to each box's own size) does not.

Inference (`--precision float32|bfloat16|auto` of predict and export). `inference_policy`
turns the flag into a policy (auto: bfloat16 where the CPU has bfloat16 instructions, no GPU
and no oneDNN cap) and `with_policy` rebuilds a loaded model under it with the same weights:
a model computes in the policy its layers were built with, whatever the file it came from.
`inference_model` does the same and also folds the backbone's frozen BatchNorms into its convs,
which is what the CLI's predict, evaluate and export run.

Two things to know: XLA's stateless random ops return other numbers than TensorFlow's kernels
for the same seed (even with alg="philox"), so a jit-compiled run samples other anchors and
RoIs than an uncompiled one from the same seeds; and Keras silently turns `jit_compile` off
(with a warning) while `tf.config.experimental.enable_op_determinism()` is in effect.
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

from mrcnn_tf.modeling import rebuild
from mrcnn_tf.training import cpu_support

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def set_precision(policy: str) -> keras.DTypePolicy:
    """Sets the Keras global dtype policy for `--mixed_precision`.

    Must be called *before* the model is built: each layer takes the global policy when it is
    constructed, so a model built earlier keeps computing in its old dtype. Call
    `set_precision("float32")` to go back to full precision.

    Args:
      policy: "float32", "mixed_float16" or "mixed_bfloat16".
    Returns:
      the new global `keras.DTypePolicy`.
    Raises:
      ValueError: any other value, or a mixed policy this process's CPU kernels cannot run
        (oneDNN capped by ONEDNN_MAX_CPU_ISA below what TensorFlow routes to it; see
        `cpu_support`), where the first step would otherwise abort or crash.
    """
    if policy not in POLICIES:
        raise ValueError(f"--mixed_precision={policy!r}: expected one of {POLICIES}")
    reason = unsupported_reason(policy)
    if reason:
        raise ValueError(f"--mixed_precision={policy}: {reason}")
    keras.mixed_precision.set_global_policy(policy)
    return keras.mixed_precision.global_policy()


def unsupported_reason(policy: str) -> str | None:
    """Why this process cannot compute `policy` (one sentence naming what to do), or None.
    None at once in an uncapped process (`cpu_support.unsupported_reason`); a GPU computes
    the model's 16-bit ops itself."""
    reason = cpu_support.unsupported_reason(policy)
    return reason if reason and not tf.config.list_physical_devices("GPU") else None


def wrap_optimizer(optimizer: keras.optimizers.Optimizer, policy: str):
    """The optimizer to train with under `policy` (see `set_precision`).

    mixed_float16: `keras.optimizers.LossScaleOptimizer(optimizer)` (dynamic loss scaling,
    initial scale 2^15, doubled after 2000 finite steps, halved and the step skipped on a
    non-finite gradient), unless `optimizer` already is one. Other policies: `optimizer`
    itself. `Model.compile` leaves a LossScaleOptimizer as it is, so there is no double
    wrapping when the model is mixed_float16 too.
    """
    if policy not in POLICIES:
        raise ValueError(f"--mixed_precision={policy!r}: expected one of {POLICIES}")
    if policy == "mixed_float16" and not isinstance(optimizer,
                                                    keras.optimizers.LossScaleOptimizer):
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


@contextlib.contextmanager
def global_policy(policy: str):
    """The Keras global dtype policy is `policy` (checked by `set_precision`) inside the block
    and what it was before after it, even when the block raises: a later model must not
    silently inherit a mixed policy."""
    before = keras.mixed_precision.global_policy().name
    set_precision(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


INFERENCE_PRECISIONS = ("float32", "bfloat16", "auto")


def inference_policy(precision: str, config=None) -> str:
    """The Keras dtype policy of `--precision` for predict, evaluate and export.

    "float32" -> "float32"; "bfloat16" -> "mixed_bfloat16" (refused by `set_precision` where
    this process cannot compute it); "auto" -> "mixed_bfloat16" where it pays and is safe,
    else "float32". It pays for a ResNet backbone (`config`'s; None counts as one), whose
    wide convolutions run about 2x faster in bfloat16, not for the "tiny" one, whose narrow
    convolutions gain less than the casts cost (the demo model: 7% slower, measured with
    `python -m benchmarks precision_agreement`). It is safe where the CPU has bfloat16
    instructions (AVX512_BF16 or AMX-BF16; elsewhere oneDNN converts in software, slower than
    float32), oneDNN is not capped by ONEDNN_MAX_CPU_ISA, and no GPU is visible (this rule is
    for CPU inference).
    """
    if precision not in INFERENCE_PRECISIONS:
        raise ValueError(f"--precision={precision!r}: expected one of {INFERENCE_PRECISIONS}")
    if precision == "auto":
        pays = config is None or config.backbone != "tiny"
        safe = (cpu_support.has_bf16_instructions() and cpu_support.isa_cap() is None
                and not tf.config.list_physical_devices("GPU"))
        return "mixed_bfloat16" if pays and safe else "float32"
    return {"float32": "float32", "bfloat16": "mixed_bfloat16"}[precision]


def compute_policy(model: keras.Model) -> str:
    """The dtype policy `model`'s layers compute in (its backbone's: every layer of one model
    is built under one global policy, the coordinate layers kept float32 by their own)."""
    return model.backbone.dtype_policy.name


def with_policy(model: keras.Model, policy: str) -> keras.Model:
    """`model` computing under Keras dtype policy `policy`, with its weights.

    `model` itself when it already does; otherwise `modeling.rebuild.rebuilt(model)` built
    under `policy` (the global policy is restored after): the same config, labels and weights
    (variables are float32 under every policy, so the values carry over unrounded).
    """
    if compute_policy(model) == policy:
        return model
    with global_policy(policy):
        return rebuild.rebuilt(model)


def inference_model(model: keras.Model, policy: str) -> keras.Model:
    """The copy of `model` that predict, evaluate and export run: built under `policy` with
    its backbone's BatchNorms (frozen or not) folded into the convs before them (`modeling.rebuild.folded`: one
    fused conv + bias per layer in float32 and bfloat16 alike), the same labels and weights.
    The global policy is restored after."""
    with global_policy(policy):
        return rebuild.folded(model)
