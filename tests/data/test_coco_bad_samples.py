"""Tests for how mrcnn_tf.data.coco.CocoDataset skips, warns about and counts bad images and
annotations (mrcnn_tf.data.coco_checks, coco_problems), on COCO files written by the tests."""

import json
import logging
import pathlib
import sys

import numpy as np
import pytest

# The fixture helpers sit next to this file; tests/ has no package for tests/data.
sys.path.insert(0, str(pathlib.Path(__file__).parent))
from coco_fixtures import (box_mask, compressed_rle, encode, pattern_image,  # noqa: E402
                           rect_polygon, write_bytes, write_image, write_json)
from mrcnn_tf.data import coco_problems  # noqa: E402
from mrcnn_tf.data.coco import CocoDataset  # noqa: E402
from mrcnn_tf.data.coco_problems import BadSampleError  # noqa: E402

H, W = 40, 60
FIELDS = ("image", "boxes", "class_ids", "masks", "is_crowd", "image_id")


GOOD_POLY = rect_polygon(10, 10, 20, 20)

# (annotation id or None, image file or None, skipped reason, annotation fields)
BAD_ANNOTATIONS = {
    201: (coco_problems.ANN_SHORT_POLYGON, {"segmentation": [[1, 1, 5, 1]]}),
    203: (coco_problems.ANN_NEGATIVE_BOX, {"bbox": [5, 5, -3, 4]}),
    204: (coco_problems.ANN_UNKNOWN_CATEGORY, {"category_id": 99}),
    205: (coco_problems.ANN_OUTSIDE, {"bbox": [100, 100, 10, 10],
                                    "segmentation": [rect_polygon(100, 100, 110, 110)]}),
    206: (coco_problems.ANN_EMPTY_MASK, {"bbox": [5, 5, 10, 1],
                                       "segmentation": [[5, 5, 10, 5, 15, 5]]}),
    207: (coco_problems.ANN_RLE_SIZE, {"segmentation": compressed_rle(np.ones((10, 10)))}),
    208: (coco_problems.ANN_BAD_SEGMENTATION, {"segmentation": {"size": [H, W],
                                                              "counts": [5, 10, 7]}}),
    209: (coco_problems.ANN_ZERO_BOX, {"bbox": [5, 5, 0, 3]}),
    210: (coco_problems.ANN_UNKNOWN_IMAGE, {"image_id": 999}),
    211: (coco_problems.FIX_POLYGON_PART, {"segmentation": [GOOD_POLY, [1, 2, 3, 4]]}),
}
BAD_IMAGES = {
    100: ("missing.png", coco_problems.IMAGE_UNREADABLE),
    101: ("truncated.jpg", coco_problems.IMAGE_UNREADABLE),
    102: ("small.png", coco_problems.IMAGE_SIZE_MISMATCH),
    104: ("nosize.png", coco_problems.IMAGE_NO_SIZE),
    # A readable image, but outside the images folder: never opened.
    105: ("../outside.png", coco_problems.IMAGE_OUTSIDE_FOLDER),
}


def _annotation(ann_id, **fields):
    ann = {"id": ann_id, "image_id": 103, "category_id": 1, "iscrowd": 0, "area": 100.0,
           "bbox": [10, 10, 10, 10], "segmentation": [GOOD_POLY]}
    ann.update(fields)
    return ann


def write_bad(tmp_path, ann_ids=tuple(BAD_ANNOTATIONS), image_ids=tuple(BAD_IMAGES)):
    """Image 103 ('ok.png') with good annotation 200 plus the chosen bad items."""
    images_dir = tmp_path / "images"
    write_image(images_dir / "ok.png", pattern_image())
    jpeg = encode(pattern_image(), ".jpg")
    write_bytes(images_dir / "truncated.jpg", jpeg[: len(jpeg) // 2])
    write_image(images_dir / "small.png", pattern_image(30, W))
    write_image(images_dir / "nosize.png", pattern_image())
    write_image(tmp_path / "outside.png", pattern_image())
    image_entries = [{"id": 103, "file_name": "ok.png", "width": W, "height": H}]
    annotations = [_annotation(200)]
    for image_id in image_ids:
        file_name = BAD_IMAGES[image_id][0]
        entry = {"id": image_id, "file_name": file_name, "width": W, "height": H}
        if image_id == 104:
            del entry["width"]
        image_entries.append(entry)
        annotations.append(_annotation(300 + image_id, image_id=image_id))
    annotations += [_annotation(i, **BAD_ANNOTATIONS[i][1]) for i in ann_ids]
    data = {"categories": [{"id": 1, "name": "thing"}], "images": image_entries,
            "annotations": annotations}
    return write_json(tmp_path / "bad.json", data), images_dir


def test_bad_samples_are_skipped_warned_and_counted_once(tmp_path, caplog):
    path, images = write_bad(tmp_path)
    with caplog.at_level(logging.WARNING):
        ds = CocoDataset(path, images)
        examples = list(ds)
    assert [int(ex["image_id"]) for ex in examples] == [103]
    ex = examples[0]
    # Good annotation 200 and annotation 211 (its bad second part dropped) remain.
    assert ex["masks"].shape == (2, H, W)
    np.testing.assert_array_equal(ex["masks"][0], box_mask(10, 10, 20, 20))
    np.testing.assert_array_equal(ex["masks"][1], box_mask(10, 10, 20, 20))
    expected = {}
    for reason, _ in BAD_ANNOTATIONS.values():
        expected[reason] = expected.get(reason, 0) + 1
    for _, reason in BAD_IMAGES.values():
        expected[reason] = expected.get(reason, 0) + 1
    assert dict(ds.skipped) == expected

    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for ann_id in BAD_ANNOTATIONS:
        hits = [m for m in messages if f"annotation {ann_id}" in m]
        assert len(hits) == 1, (ann_id, messages)
        assert "bad.json" in hits[0]
        if ann_id != 210:  # an unknown image id has no file to name
            assert "ok.png" in hits[0]
    for image_id, (file_name, _) in BAD_IMAGES.items():
        hits = [m for m in messages if f"image {image_id} " in m and "annotation" not in m]
        assert len(hits) == 1 and file_name in hits[0], (image_id, messages)
    size_message = next(m for m in messages if "small.png" in m)
    assert "60x40" in size_message and "60x30" in size_message

    # A second epoch neither re-warns nor re-counts.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert len(list(ds)) == 1
    assert not caplog.records and dict(ds.skipped) == expected
    report = ds.report()
    assert "\n" not in report and "bad.json" in report
    assert "5 images skipped" in report and "9 annotations skipped" in report
    assert f"{coco_problems.ANN_EMPTY_MASK}: 1" in report and "1 annotations repaired" in report


def test_tf_dataset_skips_bad_samples_like_iteration(tmp_path):
    path, images = write_bad(tmp_path)
    ds = CocoDataset(path, images)
    expected = list(ds)
    counts = dict(ds.skipped)
    got = list(ds.as_tf_dataset().as_numpy_iterator())
    assert len(got) == len(expected) == 1
    for field in FIELDS:
        np.testing.assert_array_equal(got[0][field], expected[0][field], err_msg=field)
    assert dict(ds.skipped) == counts


def test_keep_empty_false_skips_image_whose_annotations_all_turned_out_bad(tmp_path):
    path, images = write_bad(tmp_path, ann_ids=(205,), image_ids=())
    data = json.loads(path.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["id"] != 200]
    write_json(path, data)
    ds = CocoDataset(path, images, keep_empty_images=False)
    assert ds.image_ids == [103]  # the JSON has an annotation; only its pixels show it is bad
    assert list(ds) == []
    assert ds.skipped == {coco_problems.ANN_OUTSIDE: 1, coco_problems.IMAGE_NO_ANNOTATIONS: 1}


@pytest.mark.parametrize("ann_id", sorted(BAD_ANNOTATIONS))
def test_strict_raises_for_each_bad_annotation(tmp_path, ann_id):
    path, images = write_bad(tmp_path, ann_ids=(ann_id,), image_ids=())
    with pytest.raises(BadSampleError, match=f"bad.json: annotation {ann_id}\\b") as info:
        list(CocoDataset(path, images, strict=True))
    assert info.value.reason == BAD_ANNOTATIONS[ann_id][0]
    assert info.value.annotation_id == ann_id


@pytest.mark.parametrize("image_id", sorted(BAD_IMAGES))
def test_strict_raises_for_each_bad_image(tmp_path, image_id):
    path, images = write_bad(tmp_path, ann_ids=(), image_ids=(image_id,))
    file_name, reason = BAD_IMAGES[image_id]
    with pytest.raises(BadSampleError, match=file_name) as info:
        list(CocoDataset(path, images, strict=True))
    assert info.value.reason == reason and info.value.image_id == image_id


@pytest.mark.parametrize("file_name, leaves", [
    ("a.jpg", False), ("train/a.jpg", False), ("train\\a.jpg", False), ("./a.jpg", False),
    ("train/../a.jpg", False), ("../a.jpg", True), ("train/../../a.jpg", True),
    ("..\\..\\etc\\passwd", True), ("/etc/passwd", True), ("\\\\server\\share\\a.jpg", True),
    ("C:\\images\\a.jpg", True), ("c:/a.jpg", True), ("", True), (".", True),
    ("train/..", True)])
def test_file_names_that_leave_the_images_folder(file_name, leaves):
    from mrcnn_tf.data.coco_json import leaves_folder  # noqa: PLC0415
    assert leaves_folder(file_name) is leaves


def test_an_absolute_file_name_is_refused_even_when_the_file_exists(tmp_path):
    path, images = write_bad(tmp_path, ann_ids=(), image_ids=())
    data = json.loads(path.read_text())
    outside = tmp_path / "outside.png"
    write_image(outside, pattern_image())
    data["images"].append({"id": 107, "file_name": str(outside), "width": W, "height": H})
    write_json(path, data)
    ds = CocoDataset(path, images)
    assert ds.image_ids == [103]
    assert dict(ds.skipped) == {coco_problems.IMAGE_OUTSIDE_FOLDER: 1}
    with pytest.raises(BadSampleError, match="leaves the images folder"):
        CocoDataset(path, images, strict=True)


def test_load_example_raises_for_a_bad_image_and_keyerror_for_unknown_id(tmp_path):
    path, images = write_bad(tmp_path, ann_ids=(), image_ids=(100,))
    ds = CocoDataset(path, images)
    with pytest.raises(BadSampleError, match="missing.png"):
        ds.load_example(100)
    with pytest.raises(KeyError):
        ds.load_example(12345)
