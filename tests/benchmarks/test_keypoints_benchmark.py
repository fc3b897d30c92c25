"""`python -m benchmarks keypoints` runs end to end: `--smoke` (tiny Keypoint R-CNN at 64 px,
one timed run) in a subprocess, its JSON checked for structure and sanity: every configuration
measured (torchvision skipped, with its reason, when torch is absent), positive finite
latencies with p90 >= median, every detection through the keypoint head and counted, the
keypoint head's FLOPs equal to a hand calculation and to an independent count. How fast
anything runs is never asserted.
"""

import importlib.util
import json
import math
import os
import pathlib
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks import cli  # noqa: E402
from benchmarks.tasks import keypoints, keypoints_results  # noqa: E402 (neither TF nor torch)

TORCH_PRESENT = (importlib.util.find_spec("torch") is not None
                 and importlib.util.find_spec("torchvision") is not None)
TIME_KEYS = ("median_ms", "p90_ms", "min_ms", "mean_ms", "first_ms")

# By hand, 1 multiply-add = 2 FLOP, 14 x 14 RoIAlign output (196 pixels), 3 x 3 convs and a
# 4 x 4 transposed conv:
# R50-FPN head (Detectron2 / torchvision): conv 1 reads the FPN's 256 channels, convs 2-8 512;
# the transposed conv makes 17 maps from 512 channels.
R50_CONVS = 2 * 196 * 9 * 256 * 512 + 7 * (2 * 196 * 9 * 512 * 512)  # 6,936,330,240
R50_DECONV = 2 * 196 * 16 * 512 * 17  # 54,591,488
# shapes_keypoints_tiny: fpn_channels 64, 4 convs of 64, 6 keypoints.
TINY_CONVS = 4 * (2 * 196 * 9 * 64 * 64)  # 57,802,752
TINY_DECONV = 2 * 196 * 16 * 64 * 6  # 2,408,448


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Runs `keypoints --smoke` once; returns (completed process, results dict, seconds)."""
    out = tmp_path_factory.mktemp("keypoints") / "keypoints.json"
    command = [sys.executable, "-m", "benchmarks", "keypoints", "--smoke", "--out", str(out)]
    start = time.perf_counter()
    process = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    assert process.returncode == 0, (f"keypoints --smoke failed:\n{process.stdout}\n"
                                     f"{process.stderr}")
    return process, json.loads(out.read_text()), seconds


def _measured(results):
    """{framework: its one size result} of the runs that measured something."""
    return {row["framework"]: row for entry in results["runs"] if entry["status"] == "ok"
            for row in entry["results"]["rows"]}


def test_every_configuration_ran(smoke):
    _, results, seconds = smoke
    print(f"keypoints --smoke took {seconds:.0f} s")  # shown with -s; never asserted
    assert results["benchmark"] == "keypoints" and results["smoke"] is True
    assert results["settings"]["sizes"] == [64] and results["settings"]["repeats"] == 1
    status = {entry["framework"]: entry for entry in results["runs"]}
    assert sorted(status) == sorted(keypoints.FRAMEWORKS)
    assert status["mrcnn_tf"]["status"] == "ok", status["mrcnn_tf"]
    if TORCH_PRESENT:
        assert status["torchvision"]["status"] == "ok", status["torchvision"]
    else:
        assert status["torchvision"]["status"] == "skipped"
        assert "torch" in status["torchvision"]["reason"]
    for framework, row in _measured(results).items():
        assert row["size"] == 64 and row["batch"] == 1, framework
        assert sorted(row["parts"]) == sorted(keypoints_results.PARTS), framework
    assert len(results["rows"]) == len(_measured(results))


def test_latencies_and_memory_are_sane(smoke):
    _, results, _ = smoke
    for framework, row in _measured(results).items():
        for part, timed in row["parts"].items():
            assert timed["runs"] == results["settings"]["repeats"], (framework, part)
            for key in TIME_KEYS:
                value = timed[key]
                assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (
                    framework, part, key, value)
            assert timed["p90_ms"] >= timed["median_ms"] >= timed["min_ms"], (framework, part)
            assert timed["peak_rss_mb"] > 0, (framework, part)
        # The branch is part of the model, so its share is positive; noise on a shared CPU
        # can push it past 1, so no upper bound.
        assert row["keypoint_share"] > 0, framework
        assert math.isfinite(row["keypoint_share_by_difference"]), framework
        assert row["keypoint_achieved_gflops"] > 0 and row["achieved_gflops"] > 0, framework
    for entry in results["runs"]:
        if entry["status"] == "ok":
            assert entry["process_peak_rss_mb"] > 0, entry["framework"]


def test_every_detection_reaches_the_keypoint_head(smoke):
    """Score threshold 0 and sane random weights: all D slots are real detections, and the
    head runs on each of them (crop_and_resize RoIAlign: on the real ones only)."""
    _, results, _ = smoke
    measured = _measured(results)
    ours = measured["mrcnn_tf"]
    d = results["settings"]["model"]["overrides"]["detections_per_image"]
    assert ours["detections_per_image"] == d
    assert ours["min_detections"] == ours["keypoint_rows"] == d
    assert ours["keypoints_shape"] == [1, d, 6, 3]  # shapes_keypoints_tiny: 6 house keypoints
    if "torchvision" in measured:
        theirs = measured["torchvision"]
        d = results["settings"]["torchvision"]["kwargs"]["box_detections_per_img"]
        assert theirs["detections_per_image"] == d
        assert theirs["min_detections"] == theirs["keypoint_rows"] == d
        assert theirs["keypoints_shape"] == [1, d, 17, 3]
        assert theirs["threads"] == results["settings"]["threads"]


def test_keypoint_head_flops_formula():
    r50 = keypoints_results.keypoint_head_flops(14, 256, 512, 8, 17)
    assert r50 == {"convs": R50_CONVS, "transposed_conv": R50_DECONV,
                   "per_roi": R50_CONVS + R50_DECONV}
    assert r50["per_roi"] == 6_990_921_728
    tiny = keypoints_results.keypoint_head_flops(14, 64, 64, 4, 6)
    assert tiny["per_roi"] == TINY_CONVS + TINY_DECONV == 60_211_200
    # No 3x3 convs: the transposed conv reads the pooled features directly.
    assert keypoints_results.keypoint_head_flops(14, 256, 512, 0, 17) == {
        "convs": 0, "transposed_conv": 2 * 196 * 16 * 256 * 17,
        "per_roi": 2 * 196 * 16 * 256 * 17}


def test_keypoint_flops_in_the_results(smoke):
    """Each framework's head shape, read off its built model, gives the hand-calculated
    FLOPs; the independent count (benchmarks/flops.py on the Keras kernels, torch's
    FlopCounterMode) agrees exactly; GFLOP and GFLOP/s follow from them."""
    _, results, _ = smoke
    expected = {"mrcnn_tf": ({"pool_size": 14, "in_channels": 64, "conv_dim": 64,
                              "num_convs": 4, "num_keypoints": 6, "deconv_kernel": 4},
                             TINY_CONVS + TINY_DECONV),
                "torchvision": ({"pool_size": 14, "in_channels": 256, "conv_dim": 512,
                                 "num_convs": 8, "num_keypoints": 17, "deconv_kernel": 4},
                                R50_CONVS + R50_DECONV)}
    for framework, row in _measured(results).items():
        shape, per_roi = expected[framework]
        head = row["keypoint_head"]
        assert head["shape"] == shape, framework
        assert head["flops_per_roi"]["per_roi"] == per_roi, framework
        branch = per_roi * row["keypoint_rows"]
        assert row["keypoint_flops"] == branch, framework
        assert row["keypoint_flop_check"]["analytic"] == branch, framework
        assert row["keypoint_flop_check"]["counted"] == branch, (framework,
                                                                 row["keypoint_flop_check"])
        assert row["keypoint_gflop"] == pytest.approx(branch / 1e9, abs=1e-3)
        assert row["keypoint_achieved_gflops"] == pytest.approx(
            branch / 1e6 / row["parts"]["keypoint_branch"]["median_ms"], rel=1e-2)
        assert row["total_gflop"] > row["keypoint_gflop"], framework


def test_markdown_table_is_printed(smoke):
    process, results, _ = smoke
    assert "| framework | size | detections / head RoIs | median ms |" in process.stdout
    assert "SMOKE RUN" in process.stdout
    for framework in _measured(results):
        assert f"| {framework} | 64 |" in process.stdout, framework
    if "torchvision" in _measured(results):
        assert "64px: mrcnn_tf / torchvision end to end" in process.stdout


def test_torchvision_is_skipped_with_its_reason_without_torch(tmp_path):
    """Without torch the comparison is skipped, the reason printed, and the run still ok."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "torch.py").write_text("raise ImportError('No module named torch (test shim)')\n")
    out = tmp_path / "keypoints.json"
    process = subprocess.run(
        [sys.executable, "-m", "benchmarks", "keypoints", "--smoke", "--frameworks",
         "torchvision", "--out", str(out)], cwd=REPO, capture_output=True, text=True,
        timeout=120, env=dict(os.environ, PYTHONPATH=str(shim)))
    assert process.returncode == 0, process.stderr
    results = json.loads(out.read_text())
    [entry] = results["runs"]
    assert entry["framework"] == "torchvision" and entry["status"] == "skipped", entry
    assert "test shim" in entry["reason"]
    assert results["rows"] == []
    assert "torchvision 64px: skipped: torch / torchvision are not installed" in process.stdout


@pytest.mark.parametrize("flags", [["--repeats", "0"], ["--warmup", "-1"],
                                   ["--frameworks", "detectron2"], ["--sizes", "0"]])
def test_bad_flags_exit_with_a_usage_error(flags, capsys):
    with pytest.raises(SystemExit) as error:
        cli.parse(["keypoints", *flags])
    assert error.value.code == 2
    assert flags[0] in capsys.readouterr().err
