"""The coco_scale part `evaluate` runs end to end in quick mode: one row per count of images,
each from its own child process, with positive peaks and the settings recorded. How fast
anything runs, or how flat the memory is, is never asserted here (tests/evaluation/
test_evaluate_streaming.py checks that evaluation holds a few examples at a time)."""

import math
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks import coco_scale_evaluate  # noqa: E402 (imports no TensorFlow)

ROW_KEYS = {"num_images", "peak_rss_mib", "start_rss_mib", "growth_mib", "peak_is_reset",
            "seconds", "images_per_s", "detections", "instances",
            "listed_examples_mib_computed", "bbox_AP", "segm_AP", "process_peak_rss_mib"}


def _positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_quick_run_measures_each_count_in_its_own_process():
    result = coco_scale_evaluate.run(quick=True)
    assert set(result) == {"rows", "peak_ratio", "growth_ratio", "images_ratio", "settings"}
    settings = result["settings"]
    assert settings["quick"] is True and settings["preset"] == "shapes_tiny"
    assert settings["counts"] == list(coco_scale_evaluate.QUICK["counts"])
    for key in ("image_size", "usable_cpus", "tf_intra_op_threads", "tf_inter_op_threads"):
        assert _positive(settings[key]), key
    rows = result["rows"]
    assert [row["num_images"] for row in rows] == settings["counts"]
    for row in rows:
        assert set(row) == ROW_KEYS
        for key in ("peak_rss_mib", "start_rss_mib", "process_peak_rss_mib", "seconds",
                    "images_per_s", "instances", "listed_examples_mib_computed"):
            assert _positive(row[key]), (row["num_images"], key, row[key])
        assert row["peak_rss_mib"] >= row["start_rss_mib"]
        assert row["process_peak_rss_mib"] >= row["peak_rss_mib"] - 1  # rounding, kB vs MiB
        # Score threshold 0: detections reach COCOeval, at most the configured number an image.
        assert 0 < row["detections"] <= (row["num_images"]
                                         * coco_scale_evaluate.DETECTIONS_PER_IMAGE)
    assert _positive(result["peak_ratio"])
    assert result["images_ratio"] == 10.0
