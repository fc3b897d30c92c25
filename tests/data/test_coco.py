"""Tests for mrcnn_tf.data.coco.CocoDataset on COCO files written by the tests themselves:
valid data, EXIF orientation and unusable files (bad samples: test_coco_bad_samples.py)."""

import copy
import logging
import pathlib
import sys
import types

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_util

# The fixture helpers sit next to this file; tests/ has no package for tests/data.
sys.path.insert(0, str(pathlib.Path(__file__).parent))
from coco_fixtures import (box_mask, compressed_rle, encode, jpeg_with_exif,  # noqa: E402
                           pattern_image, rect_polygon, uncompressed_rle, write_bytes,
                           write_image, write_json)
from mrcnn_tf.data import coco_problems  # noqa: E402
from mrcnn_tf.data.coco import CocoDataset  # noqa: E402
from mrcnn_tf.data.coco_problems import DatasetError  # noqa: E402
from mrcnn_tf.evaluation.coco_eval import evaluate_coco, predictions_to_coco_results  # noqa

H, W = 40, 60
FIELDS = ("image", "boxes", "class_ids", "masks", "is_crowd", "image_id")


def _dog_mask():
    """A ring: a mask with a hole, which a polygon could not express."""
    mask = box_mask(20, 30, 30, 50)
    mask[23:27, 36:42] = 0
    return mask


def _bird_crowd_mask():
    mask = np.zeros((H, W), np.uint8)
    mask[0:40:2, 52:60] = 1  # striped: a crowd region of many small people
    return mask


TRIANGLE = [30.0, 2.0, 45.5, 14.0, 28.0, 16.5]


def good_coco(with_outside=True):
    """A COCO dict exercising everything valid; see the comments per annotation."""
    anns = [
        # Annotation id 0 on image id 0 with category id 0: zeros everywhere are legal.
        {"id": 0, "image_id": 0, "category_id": 0, "iscrowd": 0, "area": 1.0,
         "bbox": [2, 3, 24, 12],
         "segmentation": [rect_polygon(2, 3, 12, 9), rect_polygon(20, 5, 26, 15)]},
        {"id": 10, "image_id": 0, "category_id": 7, "iscrowd": 0, "area": 1.0,
         "bbox": [30, 20, 20, 10], "segmentation": uncompressed_rle(_dog_mask())},
        {"id": 11, "image_id": 0, "category_id": 3, "iscrowd": 1, "area": 1.0,
         "bbox": [52, 0, 8, 39], "segmentation": compressed_rle(_bird_crowd_mask())},
        {"id": 16, "image_id": 0, "category_id": 3, "iscrowd": 0, "area": 1.0,
         "bbox": [28, 2, 17.5, 14.5], "segmentation": [TRIANGLE]},
        # CVAT rectangle: empty segmentation, the box is the mask.
        {"id": 13, "image_id": 5, "category_id": 7, "iscrowd": 0, "area": 60.0,
         "bbox": [2, 3, 10, 6], "segmentation": []},
        # No segmentation, area or iscrowd keys at all, fractional box.
        {"id": 14, "image_id": 5, "category_id": 3, "bbox": [10.5, 20.25, 5, 4]},
        {"id": 15, "image_id": 11, "category_id": 7, "iscrowd": 1, "area": 1.0,
         "bbox": [0, 0, 10, 10], "segmentation": compressed_rle(box_mask(0, 0, 10, 10))},
    ]
    if with_outside:
        # Sticks out of the image at the bottom right: box and mask are clipped.
        anns.append({"id": 12, "image_id": 5, "category_id": 0, "iscrowd": 0, "area": 1.0,
                     "bbox": [50, 30, 20, 15], "segmentation": [rect_polygon(50, 30, 70, 45)]})
    return {
        "info": {"description": "test"},
        # Not sorted by id: the label map must sort, and accept id 0.
        "categories": [{"id": 7, "name": "dog"}, {"id": 0, "name": "cat"},
                       {"id": 3, "name": "bird"}],
        "images": [
            {"id": 0, "file_name": "a.png", "width": W, "height": H},
            {"id": 5, "file_name": "sub/b.jpg", "width": W, "height": H},
            {"id": 9, "file_name": "empty.png", "width": W, "height": H},
            {"id": 11, "file_name": "crowd_only.bmp", "width": W, "height": H},
        ],
        "annotations": anns,
    }


def write_good(tmp_path, with_outside=True, data=None):
    images = tmp_path / "images"
    write_image(images / "a.png", pattern_image(seed=0))
    write_image(images / "sub" / "b.jpg", pattern_image(seed=1))
    write_image(images / "empty.png", pattern_image(seed=2))
    write_image(images / "crowd_only.bmp", pattern_image(seed=3))
    path = write_json(tmp_path / "instances.json", data or good_coco(with_outside))
    return path, images


@pytest.fixture
def good(tmp_path):
    path, images = write_good(tmp_path)
    return CocoDataset(path, images)


def _by_id(dataset):
    return {int(ex["image_id"]): ex for ex in dataset}


# -- valid data --------------------------------------------------------------------------------

def test_label_map_sorts_dataset_ids_and_keeps_category_zero(good):
    assert good.label_map.dataset_ids == (0, 3, 7)
    assert good.label_map.names == ("cat", "bird", "dog")
    assert good.label_map.num_classes == 3
    assert good.image_ids == [0, 5, 9, 11] and len(good) == 4
    assert sorted(good.coco.getCatIds()) == [0, 3, 7]
    assert not good.skipped


def test_polygons_rle_and_crowd_of_one_image(good, tmp_path):
    ex = good.load_example(0)
    assert ex["image_id"] == 0 and ex["image_id"].dtype == np.int64
    np.testing.assert_array_equal(ex["image"], pattern_image(seed=0))
    # Instances in annotation order: 0 (cat, two parts), 10 (dog RLE), 11 (bird crowd), 16.
    np.testing.assert_array_equal(ex["class_ids"], [1, 3, 2, 2])
    np.testing.assert_array_equal(ex["is_crowd"], [False, False, True, False])
    assert ex["masks"].dtype == np.uint8 and ex["masks"].shape == (4, H, W)
    two_parts = box_mask(3, 2, 9, 12) | box_mask(5, 20, 15, 26)
    np.testing.assert_array_equal(ex["masks"][0], two_parts)
    np.testing.assert_array_equal(ex["masks"][1], _dog_mask())
    np.testing.assert_array_equal(ex["masks"][2], _bird_crowd_mask())
    triangle = mask_util.decode(mask_util.frPyObjects([TRIANGLE], H, W))[:, :, 0]
    assert triangle.sum() > 50
    np.testing.assert_array_equal(ex["masks"][3], triangle)
    # COCO [x, y, w, h] -> (y, x, y + h, x + w).
    np.testing.assert_allclose(ex["boxes"], [[3, 2, 15, 26], [20, 30, 30, 50], [0, 52, 39, 60],
                                             [2, 28, 16.5, 45.5]])
    assert ex["boxes"].dtype == np.float32


def test_box_only_annotations_and_clipping(good):
    ex = good.load_example(5)
    assert ex["image"].shape == (H, W, 3)
    np.testing.assert_array_equal(ex["class_ids"], [3, 2, 1])  # ids 13 (dog), 14, 12 (cat)
    # Empty segmentation: the box [2, 3, 10, 6] is the mask (columns 2..11, rows 3..8).
    np.testing.assert_array_equal(ex["masks"][0], box_mask(3, 2, 9, 12))
    # Fractional box, no segmentation key: rasterized as pycocotools rasterizes boxes.
    expected = mask_util.decode(mask_util.frPyObjects(np.array([[10.5, 20.25, 5.0, 4.0]]),
                                                      H, W))[:, :, 0]
    np.testing.assert_array_equal(ex["masks"][1], expected)
    np.testing.assert_allclose(ex["boxes"][1], [20.25, 10.5, 24.25, 15.5])
    # Partly outside: box clipped to the image, mask is the inside part.
    np.testing.assert_allclose(ex["boxes"][2], [30, 50, 40, 60])
    np.testing.assert_array_equal(ex["masks"][2], box_mask(30, 50, 40, 60))
    np.testing.assert_array_equal(ex["is_crowd"], [False, False, False])
    assert not good.skipped


def test_iteration_streams_all_images_including_empty_ones(good):
    iterator = iter(good)
    assert isinstance(iterator, types.GeneratorType)  # nothing is loaded up front
    examples = list(iterator)
    assert [int(ex["image_id"]) for ex in examples] == [0, 5, 9, 11]
    empty = examples[2]
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, H, W)
    assert empty["class_ids"].shape == (0,) and empty["is_crowd"].shape == (0,)
    np.testing.assert_array_equal(examples[3]["is_crowd"], [True])


def test_keep_empty_images_false_drops_empty_and_crowd_only_images(tmp_path):
    path, images = write_good(tmp_path)
    ds = CocoDataset(path, images, keep_empty_images=False)
    assert ds.image_ids == [0, 5]
    assert [int(ex["image_id"]) for ex in ds] == [0, 5]
    assert not ds.skipped


def test_category_names_select_and_order_classes(tmp_path):
    path, images = write_good(tmp_path)
    ds = CocoDataset(path, images, category_names=["dog", "cat"])
    assert ds.label_map.dataset_ids == (7, 0) and ds.label_map.names == ("dog", "cat")
    ex = ds.load_example(0)
    np.testing.assert_array_equal(ex["class_ids"], [2, 1])  # cat (ann 0), dog (ann 10)
    np.testing.assert_array_equal(ex["masks"][1], _dog_mask())
    assert sorted(ds.coco.getCatIds()) == [0, 7]
    assert all(a["category_id"] in (0, 7) for a in ds.coco.anns.values())
    assert not ds.skipped  # other categories are ignored, not "bad"


def test_unknown_category_name_raises_dataset_error(tmp_path):
    path, images = write_good(tmp_path)
    with pytest.raises(DatasetError, match="'horse'.*instances.json|instances.json.*'horse'"):
        CocoDataset(path, images, category_names=["dog", "horse"])


@pytest.mark.parametrize("name", ["_background_", "Background"])
def test_unannotated_background_category_is_dropped_with_a_log_line(tmp_path, caplog, name):
    data = good_coco()
    for cat in data["categories"]:  # make room for id 0 = background
        if cat["id"] == 0:
            cat["id"] = 1
    for ann in data["annotations"]:
        if ann["category_id"] == 0:
            ann["category_id"] = 1
    data["categories"].append({"id": 0, "name": name})
    path, images = write_good(tmp_path, data=data)
    with caplog.at_level(logging.INFO):
        ds = CocoDataset(path, images)
    assert ds.label_map.dataset_ids == (1, 3, 7)
    assert any(name in r.getMessage() and "background" in r.getMessage()
               for r in caplog.records)


def test_annotated_background_named_category_stays_a_class(tmp_path):
    data = good_coco()
    data["categories"][1]["name"] = "_background_"  # id 0, used by annotations 0 and 12
    path, images = write_good(tmp_path, data=data)
    ds = CocoDataset(path, images)
    assert ds.label_map.dataset_ids == (0, 3, 7)
    assert ds.label_map.names[0] == "_background_"


def test_coco_ground_truth_scores_perfect_predictions_as_ap_1(tmp_path):
    # Box-only annotations (segmentation filled in), missing area/iscrowd, a crowd region and
    # annotation id 0 (renumbered) must all work with COCOeval.
    path, images = write_good(tmp_path, with_outside=False)
    ds = CocoDataset(path, images)
    assert 0 not in ds.coco.anns and len(ds.coco.anns) == 7
    results = []
    for ex in ds:
        keep = ~ex["is_crowd"]
        prediction = {"boxes": ex["boxes"][keep], "class_ids": ex["class_ids"][keep],
                      "scores": np.ones(int(keep.sum())), "masks": ex["masks"][keep]}
        results += predictions_to_coco_results(int(ex["image_id"]), prediction, ds.label_map)
    metrics = evaluate_coco(ds.coco, results, print_summary=False)
    assert metrics["bbox/AP"] == pytest.approx(1.0)
    assert metrics["segm/AP"] == pytest.approx(1.0)


def test_as_tf_dataset_yields_the_same_examples_as_iteration(good):
    expected = list(good)
    ds = good.as_tf_dataset()
    assert ds.element_spec["image"].shape.as_list() == [None, None, 3]
    assert ds.element_spec["masks"].shape.as_list() == [None, None, None]
    got = [{k: v.numpy() for k, v in ex.items()} for ex in ds]
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        for field in FIELDS:
            assert a[field].dtype == b[field].dtype, field
            np.testing.assert_array_equal(a[field], b[field], err_msg=field)
    shuffled = [int(ex["image_id"]) for ex in good.as_tf_dataset(shuffle=True, seed=1)]
    assert sorted(shuffled) == [0, 5, 9, 11]


def test_windows_separators_in_file_name_are_accepted(tmp_path):
    data = good_coco()
    data["images"][1]["file_name"] = "sub\\b.jpg"
    path, images = write_good(tmp_path, data=data)
    ds = CocoDataset(path, images)
    assert ds.load_example(5)["image"].shape == (H, W, 3)


# -- EXIF orientation --------------------------------------------------------------------------

def _write_rotated(tmp_path, json_size):
    """An upright 40x60 scene stored as 60x40 pixels with EXIF orientation 6, twice."""
    upright = pattern_image(H, W, seed=4)
    stored = np.ascontiguousarray(np.rot90(upright, k=1))
    data = jpeg_with_exif(encode(stored, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95]), 6)
    images = tmp_path / "images"
    write_bytes(images / "rot1.jpg", data)
    write_bytes(images / "rot2.jpg", data)
    width, height = json_size
    coco = {
        "categories": [{"id": 1, "name": "thing"}],
        "images": [{"id": i, "file_name": f"rot{i}.jpg", "width": width, "height": height}
                   for i in (1, 2)],
        "annotations": [
            # Drawn on the upright image, as annotation tools show it.
            {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 1.0,
             "bbox": [40, 5, 15, 10], "segmentation": [rect_polygon(40, 5, 55, 15)]},
            {"id": 2, "image_id": 2, "category_id": 1, "iscrowd": 0, "area": 1.0,
             "bbox": [0, 0, 5, 5], "segmentation": compressed_rle(np.ones((height, width)))},
        ],
    }
    return write_json(tmp_path / "rot.json", coco), images, upright


def test_exif_rotated_image_is_upright_and_matches_upright_json_size(tmp_path, caplog):
    path, images, upright = _write_rotated(tmp_path, json_size=(W, H))
    ds = CocoDataset(path, images)
    with caplog.at_level(logging.WARNING):
        examples = list(ds)
    assert not caplog.records and not ds.skipped
    ex = examples[0]
    assert ex["image"].shape == (H, W, 3)
    assert np.mean(np.abs(ex["image"].astype(int) - upright.astype(int))) < 4
    np.testing.assert_array_equal(ex["masks"][0], box_mask(5, 40, 15, 55))
    np.testing.assert_array_equal(examples[1]["masks"][0], np.ones((H, W), np.uint8))


def test_exif_json_with_stored_size_is_accepted_and_logged_once(tmp_path, caplog):
    path, images, upright = _write_rotated(tmp_path, json_size=(H, W))  # 40 wide, 60 high
    ds = CocoDataset(path, images)
    with caplog.at_level(logging.WARNING):
        examples = list(ds)
    stored_size_logs = [r for r in caplog.records if "stored size" in r.getMessage()]
    assert len(stored_size_logs) == 1 and "rot1.jpg" in stored_size_logs[0].getMessage()
    assert [ex["image"].shape for ex in examples] == [(H, W, 3), (H, W, 3)]
    np.testing.assert_array_equal(examples[0]["masks"][0], box_mask(5, 40, 15, 55))
    # The RLE has the stored 60x40 size, which does not fit the upright image.
    assert examples[1]["masks"].shape == (0, H, W)
    assert ds.skipped == {coco_problems.ANN_RLE_SIZE: 1}


# -- unusable files ----------------------------------------------------------------------------

@pytest.mark.parametrize("content, expected", [
    ('{"images": [], "annotations": [', "not valid JSON"),
    ('[1, 2]', "JSON is a list"),
    ('{"annotations": [], "categories": []}', "'images' is missing"),
    ('{"images": {}, "annotations": [], "categories": []}', "'images' is a dict"),
    ('{"images": [{"file_name": "a.png"}], "annotations": [], "categories": []}',
     r"images\[0\]"),
    ('{"images": [], "annotations": [], "categories": [{"id": "x", "name": "a"}]}',
     r"categories\[0\]"),
    ('{"images": [], "annotations": [], "categories": []}', "no object categories"),
])
def test_malformed_json_raises_one_line_dataset_error_naming_the_file(tmp_path, content,
                                                                      expected):
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(DatasetError, match=expected) as info:
        CocoDataset(path, tmp_path)
    assert "broken.json" in str(info.value) and "\n" not in str(info.value)


def test_duplicate_ids_raise_dataset_error(tmp_path):
    data = good_coco()
    data["annotations"][1]["id"] = 0
    path, images = write_good(tmp_path, data=data)
    with pytest.raises(DatasetError, match="annotation id 0 appears more than once"):
        CocoDataset(path, images)
    data = good_coco()
    data["images"][1]["id"] = 0
    write_json(path, data)
    with pytest.raises(DatasetError, match="image id 0 appears more than once"):
        CocoDataset(path, images)


def test_missing_paths_raise_dataset_error(tmp_path):
    path, images = write_good(tmp_path)
    with pytest.raises(DatasetError, match="nope.json: no such file"):
        CocoDataset(tmp_path / "nope.json", images)
    with pytest.raises(DatasetError, match="no_dir: no such folder"):
        CocoDataset(path, tmp_path / "no_dir")


def test_input_dicts_are_not_required_to_have_optional_keys(tmp_path):
    # A labelme2coco-style file: no iscrowd, area or bbox; polygons only.
    data = copy.deepcopy(good_coco(with_outside=False))
    for ann in data["annotations"]:
        if isinstance(ann.get("segmentation"), list) and ann["segmentation"]:
            for key in ("iscrowd", "area", "bbox"):
                ann.pop(key, None)
    path, images = write_good(tmp_path, data=data)
    ds = CocoDataset(path, images)
    ex = ds.load_example(0)
    # Without a bbox the box comes from the mask (pycocotools' toBbox of the polygon).
    np.testing.assert_allclose(ex["boxes"][0], [3, 2, 15, 26])
    assert ds.coco.anns[16]["area"] == pytest.approx(float(ex["masks"][3].sum()))
    assert not ds.skipped
