"""The coco_eval_backends task runs end to end in smoke mode (every type and backend timed and
compared with pycocotools, a memory row per backend), its synthetic data looks like COCO val
and a detector's output, and a bad flag is one line, exit 2. How fast anything runs is never
asserted; that the backends agree is (the task's own exit status says so too)."""

import json
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from pycocotools import mask as mask_util

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks import coco_eval_data, coco_eval_timing  # noqa: E402


def _benchmarks(*args):
    return subprocess.run([sys.executable, "-m", "benchmarks", "coco_eval_backends", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def _positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("coco_eval_backends") / "result.json"
    process = _benchmarks("--smoke", "--out", str(out))
    assert process.returncode == 0, f"{process.stdout}\n{process.stderr}"
    return process.stdout, json.loads(out.read_text())


def test_every_type_and_backend_is_timed_and_agrees_with_pycocotools(smoke):
    printed, result = smoke
    rows = result["rows"]
    assert [(r["iou_type"], r["backend"]) for r in rows] == [
        (t, b) for t in coco_eval_timing.IOU_TYPES for b in coco_eval_timing.BACKENDS]
    for row in rows:
        for key in ("median_s", "min_s", "evaluate_s", "speedup_median", "instances",
                    "results"):
            assert _positive(row[key]), (row["iou_type"], row["backend"], key)
        assert len(row["runs_s"]) == result["settings"]["repeats"] == 1
        for key, value in row["max_abs_diff"].items():
            assert value is not None and value <= 1e-4, (row["iou_type"], row["backend"], key)
        assert row["agrees"] is True
        # [T IoU thresholds, R recall points, K categories, A area ranges, M maxDets]
        expected = [10, 101, 1, 3, 1] if row["iou_type"] == "keypoints" else [10, 101, 80, 4, 3]
        assert row["precision_shape"] == expected
    assert result["settings"]["versions"]["faster-coco-eval"]
    assert "| 20 | segm |" in printed and "JSON:" in printed


def test_each_backend_has_its_own_memory_row(smoke):
    _, result = smoke
    assert [m["backend"] for m in result["memory"]] == list(coco_eval_timing.BACKENDS)
    for row in result["memory"]:
        for key in ("start_rss_mb", "eval_peak_rss_mb", "child_maxrss_mb", "seconds"):
            assert _positive(row[key]), (row["backend"], key)
        assert row["eval_peak_rss_mb"] >= row["start_rss_mb"]


def test_the_synthetic_data_looks_like_coco_val_and_a_detector():
    gt = coco_eval_data.ground_truth(300, seed=1)
    annotations = gt["annotations"]
    per_image = len(annotations) / len(gt["images"])
    assert 5.5 < per_image < 9.5
    areas = np.array([a["area"] for a in annotations])
    small, large = np.mean(areas < 32 ** 2), np.mean(areas >= 96 ** 2)
    assert 0.3 < small < 0.5 and 0.15 < large < 0.35
    crowd = [a for a in annotations if a["iscrowd"]]
    assert crowd and all(isinstance(a["segmentation"]["counts"], list) for a in crowd)
    assert len({a["category_id"] for a in annotations}) > 40
    assert set(range(1, 301)) - {a["image_id"] for a in annotations}  # images without any
    images = {im["id"]: im for im in gt["images"]}
    for a in crowd[:3]:  # the crowd RLE covers its image exactly and is the polygon's area
        rle = mask_util.frPyObjects(a["segmentation"], images[a["image_id"]]["height"],
                                    images[a["image_id"]]["width"])
        assert abs(float(mask_util.area(rle)) - a["area"]) < 0.1 * a["area"] + 20

    results = coco_eval_data.detections(gt, seed=1)
    counts = np.bincount([r["image_id"] for r in results], minlength=301)[1:]
    assert (counts == coco_eval_data.DETECTIONS_PER_IMAGE).all()
    scores = np.array([r["score"] for r in results])
    assert 0 < scores.min() and scores.max() < 1 and np.median(scores) < 0.3  # mostly FPs
    first = results[0]
    height = images[first["image_id"]]["height"]
    assert first["segmentation"]["size"][0] == height
    assert isinstance(first["segmentation"]["counts"], str)


def test_keypoint_data_has_ignored_and_crowd_people():
    gt = coco_eval_data.keypoint_ground_truth(200, seed=2)
    annotations = gt["annotations"]
    k = len(coco_eval_data.KEYPOINT_NAMES)
    assert gt["categories"][0]["keypoints"] == list(coco_eval_data.KEYPOINT_NAMES)
    assert all(len(a["keypoints"]) == 3 * k for a in annotations)
    assert any(a["num_keypoints"] == 0 for a in annotations)
    assert any(a["iscrowd"] for a in annotations)
    results = coco_eval_data.keypoint_detections(gt, seed=2)
    assert len(results) == 200 * coco_eval_data.KEYPOINT_DETECTIONS_PER_IMAGE


def test_an_unknown_type_is_one_line_exit_2():
    process = _benchmarks("--types", "bbox,masks")
    assert process.returncode == 2
    assert "--types='bbox,masks': unknown iou types ['masks']" in process.stderr
