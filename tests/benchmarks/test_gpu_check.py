"""`python -m benchmarks gpu`, the GPU check: refuses to run without a GPU, and its parts work
(run tiny on the CPU with --smoke; on a GPU machine it runs the same code at COCO sizes)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def run(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "benchmarks", "gpu", *args], cwd=ROOT,
                          capture_output=True, text=True, env=ENV, timeout=timeout)


def test_without_a_gpu_it_stops_in_one_line(tmp_path):
    result = run("--out", str(tmp_path / "gpu"))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines()
             if line.startswith("python -m benchmarks gpu:")]
    assert len(lines) == 1 and "sees no GPU" in lines[0] and "--smoke" in lines[0]
    assert not (tmp_path / "gpu").exists()


def test_unknown_part_is_named(tmp_path):
    result = run("--parts", "train/xla,nope", "--out", str(tmp_path))
    assert result.returncode == 2 and "unknown parts ['nope']" in result.stderr


def test_smoke_parts_train_under_the_plan_and_time_inference(tmp_path):
    out = tmp_path / "gpu"
    result = run("--smoke", "--parts", "train/float32_deterministic,inference/float32",
                 "--steps", "4", "--out", str(out))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    with open(out / "gpu.json") as f:
        results = json.load(f)
    train = results["train"]["float32_deterministic"]
    assert train["finite"] and train["steps"] == results["steps"] and train["images_per_s"] > 0
    plan = train["device_plan"]  # what the run recorded in its run.json: a CPU's plan
    assert plan["device_type"] == "CPU" and plan["op_determinism"] and not plan["xla"]
    assert plan["static_shapes"] is False
    rows = results["inference"]["float32"]["rows"]
    assert [row["batch"] for row in rows] == [1, 2] and all(r["median_ms"] > 0 for r in rows)
    table = (out / "gpu.md").read_text()
    assert ("| float32_deterministic (1 x 2 images) | dynamic shapes, determinism on, "
            "XLA off | True |") in table
    assert "| float32 64x80 | 2 |" in table
