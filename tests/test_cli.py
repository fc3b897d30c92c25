"""The command line and the demo it runs."""

import json
import os
import subprocess
import sys

from mrcnn_tf import demo


def run_cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "mrcnn_tf.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_unknown_subcommand_exits_2_with_one_line():
    result = run_cli("nope")
    assert result.returncode == 2
    assert "unknown subcommand 'nope'" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_flag_value_exits_2_without_traceback(tmp_path):
    result = run_cli("demo", "--out", str(tmp_path), "--batch_size", "0")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "batch_size" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_writes_model_metrics_and_overlays(tmp_path):
    out = str(tmp_path / "demo")
    summary = demo.run(out, steps=2, train_images=8, eval_images=4, batch_size=2)
    for key in ("segm/AP", "segm/AP50", "bbox/AP", "bbox/AP50", "train_seconds"):
        assert key in summary
    with open(os.path.join(out, "metrics.json")) as f:
        assert json.load(f)["steps"] == 2
    assert os.path.getsize(os.path.join(out, "model.keras")) > 0
    assert os.path.exists(os.path.join(out, "predictions", "grid.png"))
    # Nothing half-written is left behind.
    assert not [name for name in os.listdir(out) if ".tmp" in name]
