"""SGD with momentum, linear warmup and step decay, as in the Mask R-CNN paper's schedule."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class WarmupStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = base * warmup(step) * decay_factor ** (number of decay steps passed).

    warmup rises linearly from warmup_factor to 1 over warmup_steps (Detectron2's
    WarmupMultiStepLR with the linear method).
    """

    def __init__(self, base_lr, warmup_steps, warmup_factor, decay_steps, decay_factor):
        self.base_lr = float(base_lr)
        self.warmup_steps = int(warmup_steps)
        self.warmup_factor = float(warmup_factor)
        self.decay_steps = [int(s) for s in decay_steps]
        self.decay_factor = float(decay_factor)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        if self.warmup_steps > 0:
            alpha = tf.minimum(step / self.warmup_steps, 1.0)
            warmup = self.warmup_factor * (1.0 - alpha) + alpha
        else:
            warmup = 1.0
        passed = tf.add_n([tf.cast(step >= s, tf.float32) for s in self.decay_steps] or
                          [tf.constant(0.0)])
        return self.base_lr * warmup * tf.pow(self.decay_factor, passed)

    def get_config(self):
        return {"base_lr": self.base_lr, "warmup_steps": self.warmup_steps,
                "warmup_factor": self.warmup_factor, "decay_steps": self.decay_steps,
                "decay_factor": self.decay_factor}


def clip_by_global_norm_across_replicas(gradients, clip_norm, loss_scale=None):
    """Gradients scaled so that the *global* batch's gradient has norm at most `clip_norm`.

    Keras' `global_clipnorm` clips each replica's own gradient before the replicas' gradients
    are summed, so under tf.distribute it clips something else than one replica would (each
    replica holds a part of the sum) and N replicas train differently from one. Here the
    replicas first sum their gradients (one extra all-reduce, only with several replicas), take
    the norm of the sum, and each scales its own part by the same factor: summed, they give
    the clipped global gradient.

    Args:
      gradients: this replica's gradients (None entries are left alone), of a loss already
        divided by the number of replicas.
      clip_norm: the largest global norm.
      loss_scale: the loss scale the gradients carry (mixed_float16), or None.
    Returns:
      the gradients times min(1, clip_norm / norm): NaN everywhere when the norm is not finite,
      so a loss-scale optimizer still sees the overflow and skips the step.
    """
    present = [g for g in gradients if g is not None]
    totals = present
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        totals = context.all_reduce(tf.distribute.ReduceOp.SUM, present)
    norm = tf.linalg.global_norm(totals)
    if loss_scale is not None:
        norm = norm / tf.cast(loss_scale, norm.dtype)
    factor = tf.minimum(1.0, clip_norm / norm) + (norm - norm)  # NaN unless the norm is finite
    return [None if g is None else g * tf.cast(factor, g.dtype) for g in gradients]


def make_optimizer(config, batch_size=None):
    """The config's SGD optimizer.

    The learning rate is scaled linearly when `batch_size` differs from `config.batch_size`
    (Goyal et al.'s linear scaling rule). Weight decay skips normalization scales and offsets
    (Detectron2's WEIGHT_DECAY_NORM = 0). Gradient clipping (`config.gradient_clip_norm`) is
    not the optimizer's: `MaskRCNN.train_step` clips the global batch's gradient
    (`clip_by_global_norm_across_replicas`).
    """
    scale = 1.0 if batch_size is None else batch_size / config.batch_size
    schedule = WarmupStepDecay(config.learning_rate * scale, config.warmup_steps,
                               config.warmup_factor, config.decay_steps, config.decay_factor)
    optimizer = keras.optimizers.SGD(
        learning_rate=schedule, momentum=config.momentum,
        weight_decay=config.weight_decay or None)
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta"])
    return optimizer
