"""Keypoints in the data layer: COCO person_keypoints reading, example validation, TFRecords.

The COCO files are written by the tests themselves (see coco_fixtures.py); keypoint
conventions are those of mrcnn_tf.keypoint_spec: (y, x, v), pixel centres at i + 0.5.
"""

import json
import logging
import pathlib
import sys

import numpy as np
import pytest
import tensorflow as tf
from pycocotools.cocoeval import COCOeval

# The fixture helpers sit next to this file; tests/ has no package for tests/data.
sys.path.insert(0, str(pathlib.Path(__file__).parent))
from coco_fixtures import (compressed_rle, coco_keypoints, pattern_image,  # noqa: E402
                           person_category, rect_polygon, write_image, write_json)
from mrcnn_tf.data import coco_problems  # noqa: E402
from mrcnn_tf.data import (tfrecord_codec, tfrecord_files, tfrecord_reader,  # noqa: E402
                           tfrecord_writer)
from mrcnn_tf.data.coco import CocoDataset  # noqa: E402
from mrcnn_tf.data.coco_problems import BadSampleError, DatasetError  # noqa: E402
from mrcnn_tf.data.schema import example_signature  # noqa: E402
from mrcnn_tf.data.validation import validate_example  # noqa: E402
from mrcnn_tf.evaluation.coco_eval import LabelMap  # noqa: E402
from mrcnn_tf.keypoint_spec import COCO_PERSON_KEYPOINT_NAMES, COCO_PERSON_SKELETON  # noqa

H, W = 40, 60
K = 17
NOSE, LEFT_EYE, RIGHT_EYE, LEFT_ANKLE = 0, 1, 2, 15
FIELDS = ("image", "boxes", "class_ids", "masks", "is_crowd", "image_id", "keypoints")


def _person(ann_id, image_id, bbox, **fields):
    x, y, w, h = bbox
    ann = {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
           "bbox": bbox, "segmentation": [rect_polygon(x, y, x + w, y + h)]}
    ann.update(fields)
    return ann


def keypoints_coco(extra_annotations=()):
    """Two images: 1 with every kind of person annotation and a ball, 2 with corner points."""
    crowd_mask = np.zeros((H, W), np.uint8)
    crowd_mask[30:40, 40:60] = 1
    annotations = [
        # Labelled visible and occluded keypoints; num_keypoints missing (filled in for COCOeval).
        _person(1, 1, [5, 2, 30, 37], keypoints=coco_keypoints(
            {NOSE: (10, 5, 2), LEFT_EYE: (12, 4, 1), LEFT_ANKLE: (30, 38, 2)})),
        # num_keypoints 0: no keypoint trains, whatever the list holds.
        _person(2, 1, [40, 2, 10, 10], num_keypoints=0,
                keypoints=coco_keypoints({NOSE: (45, 5, 2)})),
        # No "keypoints" at all (a person drawn as a box only).
        _person(3, 1, [20, 20, 5, 5]),
        # A crowd region: never keypoint targets, even with labelled entries in the file.
        {"id": 4, "image_id": 1, "category_id": 1, "iscrowd": 1, "bbox": [40, 30, 20, 10],
         "segmentation": compressed_rle(crowd_mask), "num_keypoints": 1,
         "keypoints": coco_keypoints({NOSE: (50, 35, 2)})},
        # A category without keypoints.
        {"id": 5, "image_id": 1, "category_id": 2, "iscrowd": 0, "bbox": [50, 20, 6, 6]},
        # Keypoints on the first and last pixel of the image, an unlabelled one with a
        # position (some tools write one; it must not survive).
        _person(6, 2, [0, 0, 60, 40], num_keypoints=2, keypoints=coco_keypoints(
            {NOSE: (0, 0, 2), RIGHT_EYE: (59, 39, 2), LEFT_EYE: (7, 8, 0)})),
    ]
    return {
        "categories": [person_category(1), {"id": 2, "name": "ball"}],
        "images": [{"id": 1, "file_name": "a.png", "width": W, "height": H},
                   {"id": 2, "file_name": "b.png", "width": W, "height": H}],
        "annotations": annotations + list(extra_annotations),
    }


def write_keypoints(tmp_path, data=None):
    images = tmp_path / "images"
    write_image(images / "a.png", pattern_image(seed=0))
    write_image(images / "b.png", pattern_image(seed=1))
    path = write_json(tmp_path / "person_keypoints.json", data or keypoints_coco())
    return path, images


@pytest.fixture
def dataset(tmp_path):
    return CocoDataset(*write_keypoints(tmp_path))


# -- CocoDataset ---------------------------------------------------------------------------------

def test_keypoint_spec_comes_from_the_categories(dataset):
    assert dataset.keypoint_names == COCO_PERSON_KEYPOINT_NAMES
    assert dataset.keypoint_skeleton == COCO_PERSON_SKELETON  # 1-based pairs -> flat 0-based
    assert dataset.num_keypoints == K
    assert not dataset.skipped


def test_keypoints_are_pixel_centres_and_unused_annotations_get_zero_rows(dataset):
    ex = dataset.load_example(1)
    assert ex["keypoints"].dtype == np.float32 and ex["keypoints"].shape == (5, K, 3)
    np.testing.assert_array_equal(ex["class_ids"], [1, 1, 1, 1, 2])
    np.testing.assert_array_equal(ex["is_crowd"], [False, False, False, True, False])
    want = np.zeros((K, 3), np.float32)
    want[NOSE] = (5.5, 10.5, 2)  # COCO (x, y, v) = (10, 5, 2) -> (y + 0.5, x + 0.5, v)
    want[LEFT_EYE] = (4.5, 12.5, 1)
    want[LEFT_ANKLE] = (38.5, 30.5, 2)
    np.testing.assert_array_equal(ex["keypoints"][0], want)
    # num_keypoints 0, no keypoints, crowd, a category without keypoints: all zero.
    np.testing.assert_array_equal(ex["keypoints"][1:], np.zeros((4, K, 3), np.float32))

    corner = dataset.load_example(2)["keypoints"]
    assert corner.shape == (1, K, 3)
    np.testing.assert_array_equal(corner[0, NOSE], [0.5, 0.5, 2])
    np.testing.assert_array_equal(corner[0, RIGHT_EYE], [39.5, 59.5, 2])
    np.testing.assert_array_equal(corner[0, LEFT_EYE], [0, 0, 0])  # v = 0: no position


def test_image_without_annotations_has_an_empty_keypoints_array(tmp_path):
    data = keypoints_coco()
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] == 1]
    ds = CocoDataset(*write_keypoints(tmp_path, data))
    ex = ds.load_example(2)
    assert ex["keypoints"].shape == (0, K, 3) and ex["keypoints"].dtype == np.float32


def test_dataset_without_keypoint_categories_has_no_keypoints_field(tmp_path):
    data = keypoints_coco()
    for category in data["categories"]:
        category.pop("keypoints", None)
        category.pop("skeleton", None)
    ds = CocoDataset(*write_keypoints(tmp_path, data))
    assert ds.keypoint_names == () and ds.keypoint_skeleton == () and ds.num_keypoints == 0
    assert all("keypoints" not in ex for ex in ds)
    assert "keypoints" not in example_signature()
    assert "keypoints" not in next(iter(ds.as_tf_dataset()))


def test_coco_ground_truth_scores_perfect_keypoints_as_ap_1(dataset):
    gt = dataset.coco
    assert gt.anns[1]["num_keypoints"] == 3  # filled in: COCOeval ignores 0
    assert gt.anns[3]["keypoints"] == [0] * (3 * K) and gt.anns[3]["num_keypoints"] == 0
    assert gt.cats[1]["keypoints"] == list(COCO_PERSON_KEYPOINT_NAMES)
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"],
                "score": 1.0} for a in gt.dataset["annotations"]
               if a["category_id"] == 1 and not a["iscrowd"] and a.get("num_keypoints")]
    assert len(results) == 2
    evaluator = COCOeval(gt, gt.loadRes(results), "keypoints")
    evaluator.params.catIds = [1]  # the ball has no keypoints to score
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)


def test_as_tf_dataset_carries_keypoints(dataset):
    signature = example_signature(K)
    assert signature["keypoints"].shape.as_list() == [None, K, 3]
    assert signature["keypoints"].dtype == tf.float32
    expected = list(dataset)
    got = list(dataset.as_tf_dataset().as_numpy_iterator())
    assert len(got) == len(expected) == 2
    for g, e in zip(got, expected):
        assert set(g) == set(FIELDS)
        np.testing.assert_array_equal(g["keypoints"], e["keypoints"])


def test_different_keypoint_names_raise_naming_the_category(tmp_path):
    data = keypoints_coco()
    names = list(COCO_PERSON_KEYPOINT_NAMES)
    names[0] = "head"
    data["categories"].append(person_category(7, "rider", keypoint_names=names))
    with pytest.raises(DatasetError, match=r"person_keypoints.json: category 7 'rider'.*"
                                           r"differ from category 1 'person'"):
        CocoDataset(*write_keypoints(tmp_path, data))
    # Only the label map's categories must agree: selecting one category is fine.
    ds = CocoDataset(*write_keypoints(tmp_path, data), category_names=["person", "ball"])
    assert ds.keypoint_names == COCO_PERSON_KEYPOINT_NAMES


@pytest.mark.parametrize("field, value, expected", [
    ("keypoints", ["nose", 3], "list of distinct keypoint names"),
    ("keypoints", ["nose", "nose"], "list of distinct keypoint names"),
    ("skeleton", [[1, 18]], r"'skeleton': limb \[1, 18\]"),
])
def test_malformed_keypoint_declaration_raises(tmp_path, field, value, expected):
    data = keypoints_coco()
    data["categories"][0][field] = value
    with pytest.raises(DatasetError, match=f"category 1 'person'.*{expected}"):
        CocoDataset(*write_keypoints(tmp_path, data))


# annotation id -> malformed "keypoints" value
BAD_KEYPOINTS = {
    20: [1, 2, 2] * (K - 1),                        # 48 values, not 3K
    21: coco_keypoints({NOSE: ("10", 5, 2)}),       # a string
    22: coco_keypoints({NOSE: (10, 5, 3)}),         # v = 3
    23: {"x": [1], "y": [2]},                       # not a list
}


def _with_bad_keypoints(ann_ids=tuple(BAD_KEYPOINTS)):
    return keypoints_coco([_person(i, 2, [10, 10, 10, 10], keypoints=BAD_KEYPOINTS[i])
                           for i in ann_ids])


def test_malformed_keypoints_skip_the_annotation_with_a_counted_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        ds = CocoDataset(*write_keypoints(tmp_path, _with_bad_keypoints()))
    assert ds.skipped == {coco_problems.ANN_BAD_KEYPOINTS: len(BAD_KEYPOINTS)}
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for ann_id in BAD_KEYPOINTS:
        hits = [m for m in messages if f"annotation {ann_id} " in m]
        assert len(hits) == 1, (ann_id, messages)
        assert "person_keypoints.json" in hits[0] and "b.png" in hits[0]
        assert "keypoint" in hits[0] and "annotation skipped" in hits[0]
    assert "v = 3" in next(m for m in messages if "annotation 22 " in m)
    # Only the good annotation 6 of image 2 is left.
    assert ds.load_example(2)["keypoints"].shape == (1, K, 3)
    assert "4 annotations skipped" in ds.report()


@pytest.mark.parametrize("ann_id", sorted(BAD_KEYPOINTS))
def test_malformed_keypoints_raise_when_strict(tmp_path, ann_id):
    with pytest.raises(BadSampleError, match=f"annotation {ann_id} .*keypoint") as info:
        CocoDataset(*write_keypoints(tmp_path, _with_bad_keypoints((ann_id,))), strict=True)
    assert info.value.reason == coco_problems.ANN_BAD_KEYPOINTS
    assert info.value.annotation_id == ann_id


def test_malformed_keypoints_of_unused_annotations_are_not_errors(tmp_path):
    # Crowd, num_keypoints 0 and keypoint-less categories never use their keypoints list.
    data = keypoints_coco()
    for ann in data["annotations"]:
        if ann["id"] in (2, 4, 5):
            ann["keypoints"] = [1, 2]
    ds = CocoDataset(*write_keypoints(tmp_path, data), strict=True)
    assert len(list(ds)) == 2 and not ds.skipped


# -- validate_example ----------------------------------------------------------------------------

def _example(num=2, keypoints=None):
    ex = {"image": np.zeros((8, 10, 3), np.uint8), "boxes": np.tile([[1, 1, 5, 5]], (num, 1)),
          "class_ids": np.ones(num, np.int32), "masks": np.ones((num, 8, 10), np.uint8),
          "image_id": np.int64(3)}
    if keypoints is not None:
        ex["keypoints"] = keypoints
    return ex


def test_validate_normalizes_keypoints_and_zeroes_unlabelled_positions():
    keypoints = np.array([[[1.5, 2.5, 2], [7, 9, 0]], [[0, 0, 0], [3.5, 4.5, 1]]], np.float64)
    out = validate_example(_example(keypoints=keypoints), 1, num_keypoints=2)
    assert out["keypoints"].dtype == np.float32
    np.testing.assert_array_equal(out["keypoints"],
                                  [[[1.5, 2.5, 2], [0, 0, 0]], [[0, 0, 0], [3.5, 4.5, 1]]])
    assert keypoints[0, 1, 0] == 7  # the input is not modified
    # No keypoints in, no keypoints out, whatever num_keypoints says.
    assert "keypoints" not in validate_example(_example(), 1, num_keypoints=2)
    assert "keypoints" not in validate_example(_example(keypoints=None), 1)


@pytest.mark.parametrize("keypoints, num_keypoints, expected", [
    (np.zeros((3, 2, 3)), None, r"shape \[N, K, 3\] = \(2, K, 3\).*got shape \(3, 2, 3\)"),
    (np.zeros((2, 2, 2)), None, r"shape \[N, K, 3\].*got shape \(2, 2, 2\)"),
    (np.zeros((2, 0, 3)), None, r"K >= 1"),
    (np.zeros((2, 4, 3)), 17, r"\(2, 17, 3\).*got shape \(2, 4, 3\)"),
    (np.array([[[1, np.nan, 2]], [[0, 0, 0]]]), None, r"finite.*instance 0 keypoint 0"),
    (np.array([[[1, 1, 0]], [[2, 2, 3]]]), None, r"v in \{0, 1, 2\}.*v = 3.0 at instance 1"),
    (np.array([[[1, 1, 0.5]], [[2, 2, 2]]]), None, r"v in \{0, 1, 2\}.*instance 0 keypoint 0"),
    (np.array([[["a", "b", "c"]], [["a", "b", "c"]]]), None, r"numbers"),
])
def test_validate_rejects_bad_keypoints_naming_the_field(keypoints, num_keypoints, expected):
    with pytest.raises(ValueError, match=f"^img 3: field 'keypoints': expected .*{expected}"):
        validate_example(_example(keypoints=keypoints), 1, source="img 3",
                         num_keypoints=num_keypoints)


def test_validate_accepts_an_empty_keypoints_list_without_instances():
    out = validate_example(_example(num=0, keypoints=[]), 1, num_keypoints=5)
    assert out["keypoints"].shape == (0, 5, 3) and out["keypoints"].dtype == np.float32


# -- TFRecords -----------------------------------------------------------------------------------

def _assert_equal_examples(got, want):
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def _parse(record, **kwargs):
    return {k: v.numpy() for k, v in tfrecord_codec.parse_example(tf.constant(record),
                                                                  **kwargs).items()}


def test_record_round_trip_with_keypoints_is_exact(dataset):
    for want in dataset:
        record = tfrecord_codec.serialize_example(want)
        feature = tf.train.Example.FromString(record).features.feature
        assert feature["object/num_keypoints"].int64_list.value == [K]
        assert len(feature["object/keypoints"].float_list.value) == want["keypoints"].size
        _assert_equal_examples(_parse(record, num_keypoints=K), want)
        # A reader that does not ask for keypoints sees the example it always saw.
        got = _parse(record)
        assert "keypoints" not in got
        np.testing.assert_array_equal(got["masks"], want["masks"])


def test_record_round_trip_of_fractional_keypoints_and_no_instances():
    keypoints = np.array([[[1.25, 2.75, 2], [3.1, 0.3, 1]]] * 2, np.float32)
    with_points = validate_example(_example(keypoints=keypoints), 1)
    empty = validate_example(_example(num=0, keypoints=np.zeros((0, 2, 3))), 1)
    assert empty["keypoints"].shape == (0, 2, 3)
    for want in (with_points, empty):
        _assert_equal_examples(_parse(tfrecord_codec.serialize_example(want),
                                      num_keypoints=2), want)


def test_record_without_keypoints_parses_as_before_or_as_unlabelled():
    want = validate_example(_example(), 1)
    record = tfrecord_codec.serialize_example(want)
    feature = tf.train.Example.FromString(record).features.feature
    assert "object/keypoints" not in feature and "object/num_keypoints" not in feature
    _assert_equal_examples(_parse(record), want)
    zeros = _parse(record, num_keypoints=4)["keypoints"]
    assert zeros.dtype == np.float32
    np.testing.assert_array_equal(zeros, np.zeros((2, 4, 3), np.float32))


def test_record_with_other_keypoint_count_is_refused():
    record = tfrecord_codec.serialize_example(_example(keypoints=np.zeros((2, 3, 3))))
    with pytest.raises(tf.errors.InvalidArgumentError, match="object/keypoints of 5 keypoints"):
        _parse(record, num_keypoints=5)


def test_shards_and_label_map_carry_keypoints_from_a_coco_dataset(tmp_path, dataset):
    prefix = str(tmp_path / "out" / "kp")
    paths = tfrecord_writer.make_tfrecords(dataset, prefix, 2, progress=False)
    assert tfrecord_reader.read_label_map(prefix) == dataset.label_map
    names, skeleton = tfrecord_reader.read_keypoint_spec(prefix)
    assert names == COCO_PERSON_KEYPOINT_NAMES and skeleton == COCO_PERSON_SKELETON
    stored = json.loads(pathlib.Path(tfrecord_files.label_map_path(prefix)).read_text())
    assert stored["keypoint_names"] == list(COCO_PERSON_KEYPOINT_NAMES)

    got = {int(ex["image_id"]): ex for ex in tfrecord_reader.tfrecord_dataset(
        paths, shuffle_files=False, num_keypoints=len(names)).as_numpy_iterator()}
    expected = {int(ex["image_id"]): ex for ex in dataset}
    assert set(got) == set(expected) == {1, 2}
    for image_id, want in expected.items():
        _assert_equal_examples(got[image_id], want)


def test_label_map_without_keypoints_reads_as_no_keypoints(tmp_path):
    label_map = LabelMap.from_names(["thing"])
    prefix = str(tmp_path / "plain")
    tfrecord_writer.write_tfrecords([_example()], prefix, 1, label_map=label_map, progress=False)
    assert set(json.loads(pathlib.Path(tfrecord_files.label_map_path(prefix)).read_text())) == {
        "categories"}  # files look exactly as before
    assert tfrecord_reader.read_keypoint_spec(prefix) == ((), ())
    assert tfrecord_reader.read_label_map(prefix) == label_map


def test_write_checks_keypoints_against_the_names(tmp_path):
    label_map = LabelMap.from_names(["thing"])
    names = ("nose", "tail")
    with pytest.raises(ValueError, match=r"example #0.*field 'keypoints'.*\(2, 2, 3\)"):
        tfrecord_writer.write_tfrecords([_example(keypoints=np.zeros((2, 5, 3)))],
                                        str(tmp_path / "a"), 1, label_map=label_map,
                                        keypoint_names=names, progress=False)
    with pytest.raises(ValueError, match="expected a label_map"):
        tfrecord_writer.write_tfrecords([], str(tmp_path / "b"), 1, keypoint_names=names)
    with pytest.raises(ValueError, match="keypoint_skeleton.*0..1"):
        tfrecord_writer.write_tfrecords([], str(tmp_path / "c"), 1, label_map=label_map,
                                        keypoint_names=names, keypoint_skeleton=(0, 2))
    assert not list(tmp_path.iterdir())  # nothing written by any of them


def test_malformed_keypoint_entries_in_the_label_map_raise_naming_the_file(tmp_path):
    prefix = str(tmp_path / "bad")
    write_json(pathlib.Path(tfrecord_files.label_map_path(prefix)),
               {"categories": [{"id": 1, "dataset_id": 1, "name": "x"}],
                "keypoint_names": ["a", "b"], "keypoint_skeleton": [0, 1, 2]})
    with pytest.raises(ValueError, match="bad-label_map.json.*keypoint_skeleton"):
        tfrecord_reader.read_keypoint_spec(prefix)
