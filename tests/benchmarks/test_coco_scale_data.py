"""The coco_scale parts `tfrecords` and `predict` run end to end in quick mode: every key
present, every measured number positive and finite, kept JPEG shards within 1.1x the source
files' bytes (a property of the stored format, so it holds at any size), and batched
prediction giving the detections of one image at a time (to float rounding). How fast anything runs is never
asserted."""

import math
import pathlib
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks import coco_like_images, coco_scale_predict, coco_scale_tfrecords  # noqa: E402

THREAD_KEYS = ("usable_cpus", "tf_intra_op_threads", "tf_inter_op_threads")


def _positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_the_size_mix_is_weighted_and_small_counts_keep_it():
    assert math.isclose(sum(w for _, _, w in coco_like_images.COCO_LIKE_SIZES), 1.0)
    sizes = coco_like_images.coco_like_sizes(24, seed=0)
    assert len(sizes) == 24 and sizes == coco_like_images.coco_like_sizes(24, seed=0)
    # The two dominant sizes lead, as in COCO train2017.
    assert sizes.count((640, 480)) == 10 and sizes.count((480, 640)) == 5
    assert set(coco_like_images.coco_like_sizes(8, scale=0.2)) <= {
        (max(16, round(w * 0.2)), max(16, round(h * 0.2)))
        for w, h, _ in coco_like_images.COCO_LIKE_SIZES}


@pytest.fixture(scope="module")
def tfrecords_result():
    return coco_scale_tfrecords.run(quick=True)


@pytest.fixture(scope="module")
def predict_result():
    return coco_scale_predict.run(quick=True)


def test_tfrecords_rows_are_measured_and_kept_jpegs_stay_within_the_target(tfrecords_result):
    result = tfrecords_result
    kept, png = result["rows"]
    assert (kept["keep_originals"], png["keep_originals"]) == (True, False)
    for row in (kept, png):
        for key in ("write_s", "write_records_per_s", "shard_bytes", "kb_per_record",
                    "source_kb_per_image", "bytes_ratio", "train_stream_images_per_s"):
            assert _positive(row[key]), (row["images_stored_as"], key, row[key])
    assert result["kept_jpeg_ratio"] == kept["bytes_ratio"] <= 1.1
    assert result["kept_jpeg_within_target"] is True
    assert png["shard_bytes"] > 2 * kept["shard_bytes"]  # PNG re-encodes of photos are larger
    # Photo-like sources: JPEGs of realistic size, not flat colours.
    assert kept["source_kb_per_image"] > 50
    settings = result["settings"]
    assert settings["quick"] is True and settings["num_images"] == 24
    assert settings["preset"] == "coco_r50_fpn"
    assert sum(settings["sizes_drawn"].values()) == 24
    assert all(key in settings for key in THREAD_KEYS)


def test_predict_rows_are_measured_and_batched_detections_agree(predict_result):
    result = predict_result
    assert [row["batch_size"] for row in result["rows"]] == [1, 8]
    for row in result["rows"]:
        for key in ("seconds", "images_per_s", "detections_per_image"):
            assert _positive(row[key]), (row["batch_size"], key, row[key])
    assert _positive(result["batched_over_alone"])
    assert result["detections_agree"] is True
    assert coco_scale_predict.MIN_MATCHED_FRACTION <= result["matched_fraction_min"] <= 1.0
    assert 0 <= result["images_identical_in_order"] <= 8
    settings = result["settings"]
    assert settings["quick"] is True and settings["num_images"] == 8
    assert len(settings["sizes_drawn"]) > 1  # mixed sizes, several padded canvases
    assert all(key in settings for key in THREAD_KEYS)


def test_matching_ignores_order_and_counts_a_missing_detection():
    boxes = np.array([[0, 0, 10, 10], [5, 5, 20, 20], [1, 2, 3, 4]], np.float32)
    one = {"boxes": boxes, "class_ids": np.array([1, 2, 1])}
    swapped = {"boxes": boxes[[1, 0, 2]], "class_ids": np.array([2, 1, 1])}
    assert coco_scale_predict.matched_fraction(one, swapped) == 1.0
    assert not coco_scale_predict.identical_in_order(one, swapped)
    assert coco_scale_predict.identical_in_order(one, one)
    other = {"boxes": boxes + [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 2]],
             "class_ids": np.array([1, 2, 1])}
    assert coco_scale_predict.matched_fraction(one, other) == pytest.approx(2 / 3)
    relabelled = {"boxes": boxes, "class_ids": np.array([1, 2, 3])}
    assert coco_scale_predict.matched_fraction(one, relabelled) == pytest.approx(2 / 3)
    empty = {"boxes": np.zeros((0, 4), np.float32), "class_ids": np.zeros(0, int)}
    assert coco_scale_predict.matched_fraction(empty, empty) == 1.0
    assert coco_scale_predict.matched_fraction(one, empty) == 0.0
