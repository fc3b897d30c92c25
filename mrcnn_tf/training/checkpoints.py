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

from mrcnn_tf import failpoints
from mrcnn_tf.io_utils import read_json_or_warn, write_json_atomic

BACKUP_STATE = "state.json"


def _fsync(path: str) -> None:
    """Flushes a finished file to disk before it is renamed into place."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _save_atomic(save, path: str, moment: Optional[str] = None) -> None:
    """Calls save(tmp_path) then renames tmp_path to `path`. The temporary name keeps the
    suffix Keras checks (.keras, .weights.h5) and starts with a dot, so no glob of finished
    checkpoints matches it. `moment`: the `failpoints` name of the instant before the
    rename."""
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".tmp-{name}")
    try:
        save(tmp)
        _fsync(tmp)
        if moment:
            failpoints.reached(moment)
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


def save_model_atomic(model: keras.Model, path: str, moment: Optional[str] = None) -> None:
    """model.save(path) (a `.keras` file) through a temporary name (`moment`: see
    `_save_atomic`)."""
    _save_atomic(model.save, path, moment)


def read_backup_state(backup_dir: str) -> Optional[dict]:
    """{"epoch": completed epochs, "weights": file name} of a backup, or None if none.

    Raises:
      ValueError: state.json is not what `AtomicBackupAndRestore` writes (garbage,
        truncated, wrong fields) or names a weights file that is missing (the message names
        the file and what was expected).
    """
    path = os.path.join(backup_dir, BACKUP_STATE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            state = json.load(f)
        epoch, weights = int(state["epoch"]), str(state["weights"])
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{path} is not a backup state ({type(error).__name__}: {error}); "
                         "expected {\"epoch\": int, \"weights\": file name}") from None
    if epoch < 0 or os.path.basename(weights) != weights or not os.path.exists(
            os.path.join(backup_dir, weights)):
        raise ValueError(f"{path} names epoch {epoch} in {weights!r}, which is not a file of "
                         f"{backup_dir}")
    return {"epoch": epoch, "weights": weights}


def epoch_checkpoints(folder: str) -> list:
    """The finished `folder/epoch-NNNN.keras` paths (`KeepLastCheckpoints`), oldest first."""
    if not os.path.isdir(folder):
        return []
    found = sorted((int(m.group(1)), name) for name in os.listdir(folder)
                   if (m := _EPOCH_FILE.match(name)))
    return [os.path.join(folder, name) for _, name in found]


def has_saved_state(run_dir: str) -> bool:
    """Whether `run_dir` holds a backup state or an epoch checkpoint (readable or not)."""
    return (os.path.exists(os.path.join(run_dir, "backup", BACKUP_STATE))
            or bool(epoch_checkpoints(os.path.join(run_dir, "checkpoints"))))


def restore_newest_intact(model: keras.Model, backup_dir: str,
                          checkpoint_dir: Optional[str] = None) -> int:
    """Loads the newest intact saved state of a run into `model` (built, compiled); returns
    the epochs it completed (0: none, `model` untouched).

    Tried newest first: the backup (`AtomicBackupAndRestore`: weights and optimizer state),
    then each `checkpoint_dir/epoch-NNNN.keras` (`KeepLastCheckpoints`, which hold the
    optimizer state too). A state that cannot be read (truncated, garbage, missing files) is
    skipped with a warning naming the file; when states existed but none could be read, the
    run starts from step 0 with a warning that says so, never silently. A failed load can
    leave some variables written, so `model`'s variables are put back before the next try.
    """
    optimizer = model.optimizer
    if optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)
    variables = list(model.variables) + (list(optimizer.variables) if optimizer else [])
    start = [v.numpy() for v in variables]
    bad = []

    def attempt(path, epoch, what):
        try:
            model.load_weights(path)
        except Exception as error:  # h5py, zipfile and Keras raise many kinds
            for variable, value in zip(variables, start):
                variable.assign(value)
            bad.append(path)
            logging.warning("cannot resume from %s %s (%s: %s); trying an older state", what,
                            path, type(error).__name__, str(error).splitlines()[0][:200])
            return False
        logging.info("resumed from %s %s after epoch %d", what, path, epoch)
        return True

    try:
        state = read_backup_state(backup_dir)
    except ValueError as error:
        bad.append(os.path.join(backup_dir, BACKUP_STATE))
        logging.warning("cannot resume from the backup: %s; trying an older state", error)
        state = None
    if state and attempt(os.path.join(backup_dir, state["weights"]), state["epoch"],
                         "the backup"):
        return state["epoch"]
    for path in reversed(epoch_checkpoints(checkpoint_dir) if checkpoint_dir else []):
        epoch = int(_EPOCH_FILE.match(os.path.basename(path)).group(1))
        if (state is None or epoch <= state["epoch"]) and attempt(path, epoch, "checkpoint"):
            if bad:
                logging.warning("resuming after epoch %d from %s instead of the unreadable %s",
                                epoch, path, ", ".join(bad))
            return epoch
    if bad:
        logging.warning("no intact state to resume from (unreadable: %s): training starts "
                        "from step 0", ", ".join(bad))
    return 0


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore whose backup survives a kill in the middle of writing it.

    At each epoch end it writes `epoch-NNNNNN.weights.h5` (model and optimizer variables)
    atomically, then `state.json` naming it (the commit point), then deletes older backups.
    At the start of `fit` it restores the state and makes `fit` continue after the last
    completed epoch. The backup is kept after training, so running a finished command again
    does nothing instead of starting over.
    """

    def __init__(self, backup_dir: str, restore: bool = True):
        """restore=False: only write backups (the caller restored the newest intact state
        itself, `restore_newest_intact`, and passes its epoch to `fit`)."""
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=False)
        self.restore = restore

    def _load_model(self):
        if not self.restore:
            return
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
        failpoints.reached("backup_written")
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
        return epoch_checkpoints(self.folder)

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.folder, exist_ok=True)
        save_model_atomic(self.model, os.path.join(self.folder, f"epoch-{epoch + 1:04d}.keras"),
                          "checkpoint_written")
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
        # Unreadable: only the comparison is lost, the next evaluation is saved as the best.
        self.best = read_json_or_warn(self.info_path, lambda d: float(d[monitor]),
                                      f"the next evaluation replaces {self.path}")

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
        save_model_atomic(self.model, self.path, "best_model_written")
        write_json_atomic(self.info_path, {"epoch": epoch + 1, self.monitor: self.best})
        logging.info("epoch %d: best %s so far (%.4f), saved %s", epoch + 1, self.monitor,
                     self.best, self.path)
