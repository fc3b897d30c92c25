"""Training that survives kills and scales out gives the same weights as one unbroken run.

Each run is a real `mrcnn-tf train` process on a COCO folder of synthetic shapes in three
sizes (landscape, portrait, square), so the batches are grouped by aspect ratio and padded to
canvases of their own (`Config.batch_padding="batch"`), and 9 steps of 2 images cross a pass
of the 12 images; the preset clips gradients by norm (`gradient_clip_norm`), which is active
in these steps. The reference is one unbroken single-replica run; against it:
- one run killed again and again (SIGKILL at each failpoint moment, SIGTERM from outside, its
  saved state damaged once) and started again with the same command after each kill;
- MirroredStrategy over 2 logical CPU devices (each replica gets half of the global batch);
- MultiWorkerMirroredStrategy with 2 worker processes on 127.0.0.1.
Weights and optimizer state are compared array by array from the runs' final backups.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
import pytest

EPOCHS = 3
STEPS = 3
TRAIN_ARGS = ["train", "--config", "shapes_tiny", "--override", "image_min_size=64",
              "--override", "image_max_size=128", "--override", "mini_mask_size=0",
              "--epochs", str(EPOCHS), "--steps_per_epoch", str(STEPS), "--batch_size", "2",
              "--seed", "3"]
# (height, width): 5 landscape, 4 portrait, 3 square images.
IMAGE_SIZES = [(64, 128)] * 5 + [(128, 64)] * 4 + [(96, 96)] * 3
# Float summation order differs between one replica and an all-reduce over two; everything
# else is identical, so the weights agree to float32 rounding amplified by 9 SGD steps.
DISTRIBUTED_RTOL = 2e-4
DISTRIBUTED_ATOL = 2e-5

# Runs the CLI after giving TensorFlow two logical CPU devices (must precede TF's start-up).
TWO_CPUS = """
import sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from mrcnn_tf.cli.main import run
run(["mrcnn-tf"] + sys.argv[1:])
"""


def _env(**extra):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **extra)


@pytest.fixture(scope="module")
def train_args(tmp_path_factory):
    """TRAIN_ARGS with the mixed-size COCO folder as the training set."""
    from mrcnn_tf.data import shapes  # noqa: PLC0415
    annotations, images = shapes.write_shapes_coco(
        str(tmp_path_factory.mktemp("mixed")), len(IMAGE_SIZES), seed=2, image_size=128,
        min_shapes=2, max_shapes=4, sizes=IMAGE_SIZES)
    return TRAIN_ARGS + ["--train_annotations", annotations, "--train_image_dir", images]


@pytest.fixture(scope="module")
def val_args(tmp_path_factory):
    """--val_annotations and --val_image_dir of 2 square images (the same classes): what the
    evaluation moments need, at one predict trace per process instead of one per size."""
    from mrcnn_tf.data import shapes  # noqa: PLC0415
    annotations, images = shapes.write_shapes_coco(
        str(tmp_path_factory.mktemp("val")), 2, seed=5, image_size=96, min_shapes=2,
        max_shapes=4, sizes=[(96, 96)] * 2)
    return ["--val_annotations", annotations, "--val_image_dir", images]


def _train_command(train_args, run_dir, *extra):
    return [sys.executable, "-m", "mrcnn_tf.cli", *train_args, "--run_dir", str(run_dir),
            *extra]


def _run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _backup_arrays(run_dir, worker=None):
    """{array path: value} of the final backup (model and optimizer variables)."""
    folder = os.path.join(run_dir, "backup", *([worker] if worker else []))
    with open(os.path.join(folder, "state.json")) as f:
        state = json.load(f)
    assert state["epoch"] == EPOCHS
    arrays = {}
    with h5py.File(os.path.join(folder, state["weights"]), "r") as f:
        f.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                     if isinstance(item, h5py.Dataset) else None)
    return arrays


def _assert_same_arrays(got, want, rtol=0.0, atol=0.0):
    assert sorted(got) == sorted(want)
    assert len(want) > 50  # the whole model and the optimizer's momenta
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=atol, err_msg=name)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, train_args):
    """The run folder of one unbroken run (backup at epoch 3, checkpoints of epochs 1..3)."""
    run_dir = tmp_path_factory.mktemp("reference")
    result = _run(_train_command(train_args, run_dir), env=_env())
    assert "batches grouped by aspect ratio" in result.stderr
    assert "batches padded by batch" in result.stderr
    return run_dir


@pytest.fixture(scope="module")
def reference(reference_run):
    return _backup_arrays(reference_run)


# One run killed again and again, and started again with the same command after each kill.
# Each step: (what ends it, the epoch the backup holds afterwards). A `failpoints.MOMENTS` name
# (MRCNN_TF_KILL_AT: the process SIGKILLs itself there), SIGTERM (sent from outside as soon as
# the run's backup first exists) or DAMAGE (no run: the saved state is damaged before the next
# one). Until epoch 1's backup is complete each run starts again from step 0 (its first
# evaluation is always the best so far, so best.keras is written); a run killed after a
# checkpoint was renamed into place resumes from that checkpoint when the backup has no state.
# The steps share one chain of processes instead of one fresh run (and one resumed run) each:
# a training process costs about 20 s of CPU, most of it TensorFlow's start-up and tracing.
DAMAGE = "damage"
KILL_CHAIN = [
    ("train_step@2", 0),          # during epoch 1
    ("evaluation", 0),            # epoch 1's COCO evaluation, nothing written
    ("best_model_written", 0),    # best.keras complete under its temporary name
    ("checkpoint_written", 0),    # checkpoints/epoch-0001.keras under its temporary name
    ("backup_written", 0),        # epoch-0001.keras in place, the backup's state.json not
    (signal.SIGTERM, 2),          # resumed from epoch-0001.keras; once epoch 2 is backed up
    ("tensorboard_written", 2),   # resumed from the backup: epoch 3's summaries (and its
                                  # checkpoint) written, no backup
    ("epoch_backed_up", 3),       # right after epoch 3's backup, model.keras not written
    (DAMAGE, 3),                  # backup truncated, epoch-0003.keras and run.json garbage
    ("model_written", 3),         # resumed from epoch-0002.keras: epoch 3 again, then the
                                  # final model.keras under its temporary name
]


def _kill_on_first_backup(command, state_path, sig, env):
    """Runs `command` and sends it `sig` as soon as `state_path` exists: in the epoch after
    that backup, or while that epoch's end is still being written (also a case that must
    resume cleanly). Returns (its return code, its stderr)."""
    # stderr goes to a file: a pipe nobody reads while polling could fill and stall the run.
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log,
                                   text=True)
        deadline = time.time() + 240
        try:
            while not state_path.exists() and process.poll() is None:
                assert time.time() < deadline, "no epoch was backed up"
                time.sleep(0.02)
            if process.poll() is None:
                process.send_signal(sig)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
        log.seek(0)
        stderr = log.read()
    assert state_path.exists(), stderr[-3000:]  # it ended before any epoch was backed up
    return process.returncode, stderr


def _damage(run_dir):
    """Truncates the backup's weights and garbles the newest checkpoint and run.json; returns
    the names of the three files."""
    with open(run_dir / "backup" / "state.json") as f:
        weights = run_dir / "backup" / json.load(f)["weights"]
    weights.write_bytes(weights.read_bytes()[:1000])
    (run_dir / "checkpoints" / "epoch-0003.keras").write_bytes(b"PK\x03\x04 not a zip")
    (run_dir / "run.json").write_text('{"schedule": ')
    return [weights.name, "epoch-0003.keras", "run.json"]


@pytest.fixture(scope="module")
def kill_chain(tmp_path_factory, train_args, val_args):
    """Runs KILL_CHAIN on one run folder, then the same command once more without a kill.

    Returns {"run_dir", "steps": [(step, return code, backup epoch after it, stderr)],
    "damaged": the files `_damage` broke, "final": the last run's CompletedProcess}. What
    the steps prove is asserted by the tests below, each on its part of the chain."""
    from mrcnn_tf import failpoints  # noqa: PLC0415
    run_dir = tmp_path_factory.mktemp("chain") / "run"
    command = _train_command(train_args, run_dir, *val_args, "--tensorboard_images", "1")
    state = run_dir / "backup" / "state.json"
    chain = {"run_dir": run_dir, "steps": []}
    for step, _ in KILL_CHAIN:
        code, stderr = None, ""
        if step == DAMAGE:
            chain["damaged"] = _damage(run_dir)
        elif isinstance(step, signal.Signals):
            code, stderr = _kill_on_first_backup(command, state, step, _env())
        else:
            result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                                    env=_env(**{failpoints.ENV: step}))
            code, stderr = result.returncode, result.stderr
        epoch = json.loads(state.read_text())["epoch"] if state.exists() else 0
        chain["steps"].append((step, code, epoch, stderr))
    chain["final"] = _run(command, env=_env())
    return chain


def _assert_finished_like_the_reference(chain, reference):
    run_dir = chain["run_dir"]
    assert "resumed from" in chain["final"].stderr
    _assert_same_arrays(_backup_arrays(run_dir), reference)
    # The finished run folder is complete, and a file a kill cut short is gone.
    for name in ("config.json", "label_map.json", "run.json", "model.keras", "metrics.json",
                 "best.keras", "best.json"):
        assert (run_dir / name).exists(), name
    assert not list(run_dir.rglob(".tmp-*")) + list(run_dir.rglob(".*.tmp"))


def _step(chain, wanted):
    (found,) = [s for s in chain["steps"] if s[0] == wanted]
    return found


def test_killed_at_every_moment_resumes_to_the_same_weights(kill_chain, reference):
    """One run killed with SIGKILL at each `failpoints.MOMENTS` moment in turn (during a step,
    in the evaluation, while best.keras, a checkpoint or the backup is written, after the
    TensorBoard writes, right after an epoch's backup, while the final model is written),
    started again with the same command after each kill, ends with the unbroken run's
    weights and optimizer state and a complete run folder."""
    from mrcnn_tf import failpoints  # noqa: PLC0415
    moments = [m for m, _ in KILL_CHAIN if isinstance(m, str) and m != DAMAGE]
    assert {m.split("@")[0] for m in moments} == set(failpoints.MOMENTS)
    for (step, want_epoch), (_, code, epoch, stderr) in zip(KILL_CHAIN, kill_chain["steps"]):
        if step in moments:
            assert code == -signal.SIGKILL, (step, stderr[-3000:])
        assert epoch == want_epoch, (step, epoch)
    _assert_finished_like_the_reference(kill_chain, reference)


def test_killed_run_resumes_to_the_same_weights(kill_chain, reference):
    """A run killed from outside (SIGTERM) in the epoch after a backup, or while that
    backup's epoch end is still being written, is resumed by the same command to the
    unbroken run's weights. (SIGKILL at that instant is the chain's epoch_backed_up kill, and
    during a step its train_step kill.)"""
    _, _, epoch, _ = _step(kill_chain, signal.SIGTERM)
    assert epoch < EPOCHS, "the run finished before it was killed"
    # The next run resumed from the backup the killed one left.
    _, _, _, stderr = kill_chain["steps"][KILL_CHAIN.index((signal.SIGTERM, 2)) + 1]
    assert "resumed from the backup" in stderr
    _assert_finished_like_the_reference(kill_chain, reference)


def test_a_damaged_backup_resumes_from_the_newest_intact_checkpoint(kill_chain, reference):
    """The backup's weights (after epoch 3) truncated, the newest checkpoint garbage and
    run.json garbage: the same command warns naming each, resumes after epoch 2 from
    checkpoints/epoch-0002 (weights and optimizer state) and ends with the unbroken run's
    weights."""
    _, _, _, stderr = kill_chain["steps"][[s for s, _ in KILL_CHAIN].index(DAMAGE) + 1]
    for name in kill_chain["damaged"]:
        assert name in stderr, name
    assert "resuming after epoch 2 from" in stderr
    assert "Traceback" not in stderr
    _assert_finished_like_the_reference(kill_chain, reference)


def test_mirrored_strategy_over_two_cpus_matches_one_replica(tmp_path, train_args, reference):
    run_dir = tmp_path / "mirrored"
    result = _run([sys.executable, "-c", TWO_CPUS, *train_args, "--run_dir", str(run_dir),
                   "--strategy", "mirrored"], env=_env())
    assert "on 2 replica(s)" in result.stderr
    assert "device plan: CPU (--strategy=mirrored), float32, dynamic shapes" \
        in result.stderr
    _assert_same_arrays(_backup_arrays(run_dir), reference, DISTRIBUTED_RTOL, DISTRIBUTED_ATOL)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_strategy_two_processes_matches_one_replica(tmp_path, train_args,
                                                                 reference):
    run_dir = tmp_path / "multi_worker"
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers},
                                "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(
            _train_command(train_args, run_dir, "--strategy", "multi_worker"),
            env=_env(TF_CONFIG=tf_config), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True))
    try:
        errors = [p.communicate(timeout=300)[1] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    for p, err in zip(processes, errors):
        assert p.returncode == 0, err[-3000:]
    assert "on 2 replica(s)" in errors[0]
    chief = _backup_arrays(run_dir)
    _assert_same_arrays(chief, reference, DISTRIBUTED_RTOL, DISTRIBUTED_ATOL)
    # The second worker kept its own backup, in step with the chief's.
    _assert_same_arrays(_backup_arrays(run_dir, "worker-1"), chief, 1e-6, 1e-7)
