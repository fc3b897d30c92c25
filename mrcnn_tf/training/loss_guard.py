"""`LossGuard`: stops a run whose loss went non-finite or exploded, in one line that names the
step, the loss and what to do, instead of training on (and checkpointing) a broken model.

The guard raises from the batch callback, before the epoch ends, so the run folder's backup
and checkpoints keep the last good epoch: the same command resumes from there.
"""

from __future__ import annotations

import math
import os
from typing import Dict, Optional

import keras

from mrcnn_tf.training.checkpoints import epoch_checkpoints


class TrainingDiverged(RuntimeError):
    """The loss went non-finite or exploded; the message is one line for the user."""


class LossGuard(keras.callbacks.Callback):
    """Stops training on a non-finite loss, or on a loss `factor` times its first logged
    value for `patience` steps in a row.

    Keras logs each loss as its running mean over the epoch so far, so one non-finite step
    shows at once, and an explosion shows within a few steps.

    Args:
      run_dir: the run folder, whose newest checkpoint the message names (None: not named).
      steps_per_epoch: to turn (epoch, batch) into the global step.
      factor, patience: the explosion rule.
      check_finite: False under mixed_float16, whose dynamic loss scaling skips a step with a
        non-finite loss by design (the running mean would stay non-finite for the epoch).
    """

    def __init__(self, run_dir: Optional[str], steps_per_epoch: int, factor: float = 10.0,
                 patience: int = 3, check_finite: bool = True):
        super().__init__()
        self.run_dir = run_dir
        self.steps_per_epoch = int(steps_per_epoch)
        self.factor = float(factor)
        self.patience = int(patience)
        self.check_finite = bool(check_finite)
        self._epoch = 0
        self._first: Optional[float] = None
        self._above = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)

    def on_train_batch_end(self, batch, logs=None):
        losses = _losses(logs)
        if "loss" not in losses:
            return
        step = self._epoch * self.steps_per_epoch + int(batch) + 1
        bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
        if bad and self.check_finite:
            names = ", ".join(f"{k}={v}" for k, v in bad.items())
            self._stop(f"training stopped at step {step} (epoch {self._epoch + 1}): the loss "
                       f"went non-finite ({names})")
        loss = losses["loss"]
        if not math.isfinite(loss):
            return
        if self._first is None:
            self._first = loss
            return
        self._above = self._above + 1 if loss > self.factor * max(self._first, 1e-6) else 0
        if self._above >= self.patience:
            self._stop(f"training stopped at step {step} (epoch {self._epoch + 1}): the loss "
                       f"exploded, {loss:.4g} against {self._first:.4g} at the run's first "
                       f"step here (over {self.factor:g}x for {self.patience} steps)")

    def _stop(self, what: str):
        self.model.stop_training = True
        raise TrainingDiverged(
            f"{what}; last good state: {self._last_good()}. Likely causes: a learning rate "
            "too high for this batch size, no gradient clipping, or frozen random layers; "
            "lower --override learning_rate, set --override gradient_clip_norm=10, and start "
            "a new --run_dir with --init_weights from the last good checkpoint")

    def _last_good(self) -> str:
        if not self.run_dir:
            return "not kept"
        found = epoch_checkpoints(os.path.join(self.run_dir, "checkpoints"))
        if found:
            return f"{found[-1]} (the run's backup resumes there too)"
        return f"none, no epoch finished in {self.run_dir}"


def _losses(logs) -> Dict[str, float]:
    """The logged losses as floats ({} without logs)."""
    out = {}
    for key, value in (logs or {}).items():
        if key == "loss" or key.endswith("_loss"):
            try:
                out[key] = float(value)
            except (TypeError, ValueError):
                continue
    return out
