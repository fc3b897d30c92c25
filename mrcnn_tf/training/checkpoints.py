"""Checkpoints that a kill can never corrupt.

Every file is written under a hidden temporary name in its final folder, flushed to disk and
renamed (atomic on POSIX file systems), and a small JSON "pointer" naming the finished file is
replaced the same way last. A run killed at any instant (SIGKILL included) leaves either the
previous complete state or the new one, never half a file.

- `AtomicBackupAndRestore`: Keras' BackupAndRestore (resume from the last completed epoch:
  weights, optimizer state with its step counter, epoch number), made atomic.
- `KeepLastCheckpoints`: the model (`.keras`, loadable by every subcommand) after each epoch,
  the last N kept.
- `BestCheckpoint`: the model with the best value of a logged metric (e.g. segm_AP, the mask
  AP that COCOEvalCallback adds to the epoch logs).
"""

from __future__ import annotations

import json
import os
import re
from typing import Optional

import keras
from absl import logging

from mrcnn_tf.io_utils import write_json_atomic

BACKUP_STATE = "state.json"


def _fsync(path: str) -> None:
    """Flushes a finished file to disk before it is renamed into place."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _save_atomic(save, path: str) -> None:
    """Calls save(tmp_path) then renames tmp_path to `path`. The temporary name keeps the
    suffix Keras checks (.keras, .weights.h5) and starts with a dot, so no glob of finished
    checkpoints matches it."""
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".tmp-{name}")
    try:
        save(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def remove_unfinished(folder: str) -> int:
    """Deletes the temporary files a kill left mid-write under `folder`; returns how many."""
    removed = 0
    for root, _, names in os.walk(folder):
        for name in names:
            # ".tmp-NAME" from _save_atomic, ".NAME.XXXX.tmp" from io_utils.atomic_write.
            if name.startswith(".tmp-") or (name.startswith(".") and name.endswith(".tmp")):
                os.remove(os.path.join(root, name))
                removed += 1
    return removed


def save_model_atomic(model: keras.Model, path: str) -> None:
    """model.save(path) (a `.keras` file) through a temporary name."""
    _save_atomic(model.save, path)


def read_backup_state(backup_dir: str) -> Optional[dict]:
    """{"epoch": completed epochs, "weights": file name} of a backup, or None if none."""
    path = os.path.join(backup_dir, BACKUP_STATE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        state = json.load(f)
    if not os.path.exists(os.path.join(backup_dir, state["weights"])):
        raise ValueError(f"{path} names {state['weights']}, which is missing from {backup_dir}; "
                         "the backup was edited by hand: delete the folder to start over")
    return state


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore whose backup survives a kill in the middle of writing it.

    At each epoch end it writes `epoch-NNNNNN.weights.h5` (model and optimizer variables)
    atomically, then `state.json` naming it (the commit point), then deletes older backups.
    At the start of `fit` it restores the state and makes `fit` continue after the last
    completed epoch. The backup is kept after training, so running a finished command again
    does nothing instead of starting over.
    """

    def __init__(self, backup_dir: str):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=False)

    def _load_model(self):
        state = read_backup_state(self.backup_dir)
        if state is None:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self.backup_dir, state["weights"]))
        self.model._initial_epoch = int(state["epoch"])
        logging.info("resumed from %s after epoch %d", self.backup_dir, state["epoch"])

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"epoch-{self._current_epoch:06d}.weights.h5"
        _save_atomic(lambda p: self.model.save_weights(p, overwrite=True),
                     os.path.join(self.backup_dir, name))
        write_json_atomic(os.path.join(self.backup_dir, BACKUP_STATE),
                          {"epoch": self._current_epoch, "weights": name})
        for old in os.listdir(self.backup_dir):
            if old.endswith(".weights.h5") and old != name and not old.startswith("."):
                os.remove(os.path.join(self.backup_dir, old))


_EPOCH_FILE = re.compile(r"^epoch-(\d+)\.keras$")


class KeepLastCheckpoints(keras.callbacks.Callback):
    """Saves `folder/epoch-NNNN.keras` after every epoch and keeps the `keep` newest."""

    def __init__(self, folder: str, keep: int = 3):
        super().__init__()
        if keep < 1:
            raise ValueError(f"--keep_checkpoints={keep}: expected an integer >= 1")
        self.folder = folder
        self.keep = int(keep)

    def checkpoints(self):
        """Finished checkpoint paths, oldest first."""
        if not os.path.isdir(self.folder):
            return []
        found = sorted((int(m.group(1)), name) for name in os.listdir(self.folder)
                       if (m := _EPOCH_FILE.match(name)))
        return [os.path.join(self.folder, name) for _, name in found]

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.folder, exist_ok=True)
        save_model_atomic(self.model, os.path.join(self.folder, f"epoch-{epoch + 1:04d}.keras"))
        for old in self.checkpoints()[:-self.keep]:
            os.remove(old)


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the model to `path` whenever `monitor` in the epoch logs beats the best so far.

    The best value and its epoch are kept in `path` with ".json" appended to the stem
    (e.g. best.json), read back on resume so a restarted run keeps comparing against it.
    Epochs whose logs lack `monitor` (no evaluation that epoch) are skipped. Put it after the
    callback that adds `monitor` to the logs.
    """

    def __init__(self, path: str, monitor: str = "segm_AP", mode: str = "max"):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"BestCheckpoint mode={mode!r}: expected 'max' or 'min'")
        self.path = path
        self.info_path = os.path.splitext(path)[0] + ".json"
        self.monitor = monitor
        self.mode = mode
        self.best = None
        if os.path.exists(self.info_path):
            with open(self.info_path) as f:
                self.best = json.load(f)[monitor]

    def _better(self, value):
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not self._better(float(value)):
            return
        self.best = float(value)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        save_model_atomic(self.model, self.path)
        write_json_atomic(self.info_path, {"epoch": epoch + 1, self.monitor: self.best})
        logging.info("epoch %d: best %s so far (%.4f), saved %s", epoch + 1, self.monitor,
                     self.best, self.path)
