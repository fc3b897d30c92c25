"""Named moments where a test can kill the process, to prove a run survives a kill there.

`reached(name)` does nothing unless the environment variable MRCNN_TF_KILL_AT names that
moment: "NAME" (its first time) or "NAME@N" (its N-th time in this process). Then the process
sends itself SIGKILL, which nothing can catch or clean up after, as a lost machine would.
The kill chain of `tests/training/test_resume_and_distribute.py` kills training at each moment
listed in MOMENTS and resumes it with the same command.
"""

from __future__ import annotations

import collections
import os
import signal
import threading

ENV = "MRCNN_TF_KILL_AT"
MOMENTS = (
    "train_step",          # after a training step (a batch callback)
    "evaluation",          # in the COCO evaluation, predictions made, nothing written
    "best_model_written",  # best.keras written under its temporary name, not renamed
    "checkpoint_written",  # checkpoints/epoch-N.keras written, not renamed
    "tensorboard_written", # the epoch's TensorBoard summaries written
    "backup_written",      # the backup's weights renamed into place, state.json not yet
    "epoch_backed_up",     # the epoch's backup complete, the next epoch not started
    "model_written",       # the final model.keras written, not renamed
)
_counts: collections.Counter = collections.Counter()
_lock = threading.Lock()


def reached(name: str) -> None:
    """Kills this process with SIGKILL if MRCNN_TF_KILL_AT asks for this moment (see the
    module doc); otherwise returns at once."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    target, _, nth = wanted.partition("@")
    if target != name:
        return
    with _lock:
        _counts[name] += 1
        count = _counts[name]
    if count == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
