"""A full disk while writing TFRecords, a checkpoint or an export: one line naming the file,
exit code 1, and no file that looks complete.

The disk is simulated with a per-file size limit (RLIMIT_FSIZE, SIGXFSZ ignored) in the CLI's
process: every write past the limit fails with EFBIG ("File too large"), through Python's
file objects, h5py and TensorFlow's file system layer alike, as ENOSPC would on a full disk.
Training runs as a real process (it switches on TensorFlow's global op determinism); the
exports and make-tfrecords run in this process under the limit, lifted again after the
command (a fresh process each would spend TensorFlow's start-up, about 5 s of CPU).
"""

import contextlib
import errno
import os
import resource
import signal
import subprocess
import sys

import pytest

from helpers import run_inprocess
from mrcnn_tf.io_utils import storage_full_message

LIMIT = 200_000  # bytes per file: the JSON records fit, no model, shard or export does


def _limited():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # inherited: writes fail instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def _cli(*args):
    """Runs the CLI in a fresh process under the limit; (exit code, stderr)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-m", "mrcnn_tf.cli", *args], capture_output=True,
                            text=True, env=env, timeout=300, preexec_fn=_limited)
    return result.returncode, result.stderr


def _cli_here(capsys, *args):
    """Runs the CLI in this process under the limit (the soft limit only, so that it can be
    raised back); (exit code, stderr)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    with contextlib.ExitStack() as restore:
        previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        restore.callback(signal.signal, signal.SIGXFSZ, previous)
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, hard))
        restore.callback(resource.setrlimit, resource.RLIMIT_FSIZE, (soft, hard))
        code, _, err = run_inprocess(capsys, *args)
    return code, err


def _assert_one_line(code, stderr, *needles):
    assert code == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [l for l in stderr.splitlines() if l.startswith("mrcnn-tf")]
    assert len(lines) == 1, stderr[-3000:]
    for needle in ("could not write", "File too large", "nothing half-written") + needles:
        assert needle in lines[0], lines[0]


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from helpers import save_small_model  # noqa: PLC0415
    path = save_small_model(tmp_path_factory.mktemp("model") / "model.keras")
    assert os.path.getsize(path) > LIMIT
    return path


@pytest.mark.parametrize("fmt", ["saved_model", "tflite"])
def test_an_export_on_a_full_disk(tmp_path, capsys, weights, fmt):
    out = tmp_path / "out"
    target = out / "model.tflite" if fmt == "tflite" else out
    _assert_one_line(*_cli_here(capsys, "export", "--weights", weights, "--format", fmt,
                                "--out", str(target)))
    assert not out.exists() or _files(out) == [], _files(out)


def test_tfrecords_on_a_full_disk(tmp_path, capsys):
    from mrcnn_tf.data import shapes  # noqa: PLC0415
    annotations, images = shapes.write_shapes_coco(str(tmp_path / "data"), 60, seed=1,
                                                   image_size=128)
    out = tmp_path / "records"
    _assert_one_line(*_cli_here(capsys, "make-tfrecords", "--annotations", annotations,
                                "--images", images, "--out", str(out / "train"), "--shards",
                                "2", "--nokeep_originals"), ".tmp")
    assert not [f for f in _files(out) if "shard" in f or f.endswith(".tfrecord")], _files(out)


def test_a_checkpoint_on_a_full_disk_keeps_no_partial_state(tmp_path):
    run_dir = tmp_path / "run"
    _assert_one_line(*_cli("train", "--config", "shapes_tiny", "--override",
                           "image_min_size=64", "--override", "image_max_size=64",
                           "--synthetic_train_images", "4", "--epochs", "2",
                           "--steps_per_epoch", "1", "--batch_size", "2",
                           "--run_dir", str(run_dir)))
    files = _files(run_dir)
    assert "config.json" in files  # the run folder's records were written
    assert not [f for f in files if f.endswith((".keras", ".weights.h5"))
                or f.startswith("backup/state")], files
    assert not [f for f in files if os.path.basename(f).startswith(".tmp-")], files


def test_storage_full_message_reads_oserrors_and_tensorflow_errors():
    full = storage_full_message(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/d/x.keras"))
    assert full.startswith("could not write /d/x.keras: No space left on device;")
    tf_text = ("{{function_node __wrapped__SaveV2}} /d/export/.tmp-1-a/variables/part; "
               "File too large [Op:SaveV2]")
    error = RuntimeError(tf_text)
    assert storage_full_message(error).startswith(
        "could not write /d/export/.tmp-1-a/variables/part: File too large;")
    assert storage_full_message(ValueError("bad flag")) is None
    assert storage_full_message(OSError(errno.ENOENT, "No such file", "/x")) is None
