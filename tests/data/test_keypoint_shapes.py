"""Tests for the synthetic keypoint shapes (houses) dataset."""

import contextlib
import io
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.data import keypoint_shapes as kps
from mrcnn_tf.data.keypoint_shapes import (
    CLASS_NAMES,
    KEYPOINT_NAMES,
    OKS_SIGMAS,
    SKELETON,
    generate_keypoint_example,
    keypoint_shapes_dataset,
    make_keypoint_arrays,
    write_keypoint_shapes_coco,
)
from mrcnn_tf.keypoint_spec import flip_permutation, skeleton_pairs

FIELDS = ("image", "boxes", "class_ids", "masks", "is_crowd", "image_id", "keypoints")
ROOF, LEFT_EAVE, RIGHT_EAVE, LEFT_BASE, RIGHT_BASE, CENTRE = range(6)
# The house outline through its keypoints, in order around the polygon.
OUTLINE = (ROOF, RIGHT_EAVE, RIGHT_BASE, LEFT_BASE, LEFT_EAVE)


@pytest.fixture(scope="module")
def generated():
    """50 examples with each house's full (unoccluded) mask."""
    return [kps._generate_with_full_masks(i, seed=5) for i in range(50)]


def _houses(generated):
    """(example, house index, full mask) for every house of every example."""
    for example, full_masks in generated:
        for i in range(len(example["class_ids"])):
            yield example, i, full_masks[i]


def _inside_distance(points, size):
    """Signed distance of every pixel centre from the edge lines of the convex house polygon
    through `points` [6, 2] (y, x): the distance to the boundary inside (> 0), and a lower
    bound on minus the distance outside. float [size, size]."""
    outline = points[list(OUTLINE)]
    centres = np.stack(np.mgrid[0:size, 0:size], axis=-1) + 0.5  # (y, x) of each pixel
    shoelace = sum(a[1] * b[0] - b[1] * a[0] for a, b in zip(outline, np.roll(outline, -1, 0)))
    sign = 1.0 if shoelace > 0 else -1.0
    distance = np.full((size, size), np.inf)
    for a, b in zip(outline, np.roll(outline, -1, axis=0)):
        edge, rel = b - a, centres - a
        cross = edge[1] * rel[..., 0] - edge[0] * rel[..., 1]
        distance = np.minimum(distance, sign * cross / np.linalg.norm(edge))
    return distance


def test_constants():
    assert CLASS_NAMES == ("house",)
    assert KEYPOINT_NAMES == ("roof", "left_eave", "right_eave", "left_base", "right_base",
                              "centre")
    named = {tuple(sorted((KEYPOINT_NAMES[a], KEYPOINT_NAMES[b])))
             for a, b in skeleton_pairs(SKELETON)}
    assert len(SKELETON) == 12 and named == {
        ("left_eave", "roof"), ("right_eave", "roof"), ("left_eave", "right_eave"),
        ("left_base", "left_eave"), ("right_base", "right_eave"), ("left_base", "right_base")}
    assert len(OKS_SIGMAS) == 6 and all(s > 0 for s in OKS_SIGMAS)


def test_same_index_and_seed_give_identical_arrays():
    a = generate_keypoint_example(9, seed=2)
    b = generate_keypoint_example(9, seed=2)
    for field in FIELDS:
        np.testing.assert_array_equal(a[field], b[field], err_msg=field)
    in_list = make_keypoint_arrays(10, seed=2)[9]
    np.testing.assert_array_equal(in_list["keypoints"], a["keypoints"])


def test_different_index_or_seed_give_different_examples():
    base = generate_keypoint_example(9, seed=2)
    for other in (generate_keypoint_example(10, seed=2), generate_keypoint_example(9, seed=3)):
        assert not np.array_equal(base["image"], other["image"])
        assert not np.array_equal(base["keypoints"], other["keypoints"])


def test_dtypes_shapes_and_counts(generated):
    counts = []
    for ex, _ in generated:
        n = ex["boxes"].shape[0]
        assert ex["image"].dtype == np.uint8 and ex["image"].shape == (128, 128, 3)
        assert ex["boxes"].dtype == np.float32 and ex["boxes"].shape == (n, 4)
        assert ex["class_ids"].dtype == np.int32 and ex["class_ids"].tolist() == [1] * n
        assert ex["masks"].dtype == np.uint8 and ex["masks"].shape == (n, 128, 128)
        assert ex["is_crowd"].dtype == bool and ex["is_crowd"].shape == (n,)
        assert not ex["is_crowd"].any()
        assert ex["image_id"].dtype == np.int64 and ex["image_id"].shape == ()
        assert ex["keypoints"].dtype == np.float32 and ex["keypoints"].shape == (n, 6, 3)
        counts.append(n)
    assert set(counts) == {1, 2, 3}
    assert [int(ex["image_id"]) for ex, _ in generated] == list(range(50))


def test_boxes_are_tight_boxes_of_disjoint_visible_masks(generated):
    for ex, full_masks in generated:
        assert ex["masks"].astype(np.int32).sum(axis=0).max() <= 1
        for box, mask, full in zip(ex["boxes"], ex["masks"], full_masks):
            ys, xs = np.nonzero(mask)
            np.testing.assert_array_equal(box, [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])
            assert not (mask.astype(bool) & ~full).any()  # visible part of the full mask
            assert mask.sum() >= 0.25 * full.sum() and mask.sum() >= 20


def test_mask_is_the_polygon_of_the_keypoints(generated):
    checked = 0
    for ex, i, full in _houses(generated):
        points = ex["keypoints"][i].astype(np.float64)
        if (points[:, 2] == 0).any():
            continue  # cut by the border: the polygon is not fully known
        distance = _inside_distance(points[:, :2], 128)
        # cv2 fills every pixel whose centre is inside plus some boundary pixels (the edge-line
        # distance is < 1 px outside for those); a half-pixel misregistration of the drawing
        # against the keypoints breaks one of these bounds.
        assert full[distance > 0.5].all()
        assert not full[distance < -1.25].any()
        checked += 1
    assert checked > 80


def test_house_shape_size_and_orientation(generated):
    for ex, i, _ in _houses(generated):
        row = ex["keypoints"][i].astype(np.float64)
        if (row[:, 2] == 0).any():
            continue
        p = row[:, :2]
        base, wall = p[RIGHT_BASE] - p[LEFT_BASE], p[LEFT_EAVE] - p[LEFT_BASE]
        # A rectangular body (eave line parallel to the base, right angles) of aspect 0.8..1.25.
        np.testing.assert_allclose(p[RIGHT_EAVE] - p[LEFT_EAVE], base, atol=1e-3)
        assert abs(base @ wall) < 1e-3 * (base @ base + wall @ wall)
        assert 0.79 < np.linalg.norm(base) / np.linalg.norm(wall) < 1.26
        np.testing.assert_allclose(p[CENTRE], (p[LEFT_BASE] + p[RIGHT_EAVE]) / 2, atol=1e-3)
        # Rotation within +-25 degrees; "left" is the smaller x.
        assert abs(math.degrees(math.atan2(base[0], base[1]))) <= 25.0 + 1e-3
        assert p[LEFT_BASE, 1] < p[RIGHT_BASE, 1] and p[LEFT_EAVE, 1] < p[RIGHT_EAVE, 1]
        # The roof apex is above the body, on the perpendicular through the centre.
        assert p[ROOF, 0] < min(p[LEFT_EAVE, 0], p[RIGHT_EAVE, 0])
        assert p[ROOF, 0] < min(p[LEFT_BASE, 0], p[RIGHT_BASE, 0])
        assert abs((p[ROOF] - p[CENTRE]) @ base) < 1e-3 * (base @ base)
        height = np.linalg.norm(p[ROOF] - (p[LEFT_BASE] + p[RIGHT_BASE]) / 2)
        assert 24.0 - 1e-3 <= height <= 56.0 + 1e-3


def test_centre_lies_inside_full_mask_and_box(generated):
    checked = 0
    for ex, i, full in _houses(generated):
        y, x, v = ex["keypoints"][i, CENTRE]
        if v == 0:
            continue
        assert full[int(y), int(x)]
        if v == 2:
            y1, x1, y2, x2 = ex["boxes"][i]
            assert y1 <= y < y2 and x1 <= x < x2
            checked += 1
    assert checked > 80


def test_visibility_flags_follow_the_visible_mask(generated):
    counts = np.zeros(3, int)
    for ex, i, _ in _houses(generated):
        mask = ex["masks"][i].astype(bool)
        for y, x, v in ex["keypoints"][i]:
            counts[int(v)] += 1
            if v == 0:
                assert y == 0 and x == 0
                continue
            assert 0 <= y < 128 and 0 <= x < 128
            r, c = int(y), int(x)
            if v == 2:
                assert mask[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].any()
            else:
                assert v == 1 and not mask[r, c]
    # Occluded and out-of-image keypoints both occur, but most are visible.
    assert counts[1] > 0 and counts[0] > 0 and counts[2] > 0.8 * counts.sum()


def test_distractors_occlude_houses(generated):
    # A keypoint occluded where no other house's full mask reaches was hidden by a distractor.
    by_distractor = 0
    for ex, full_masks in generated:
        for i, row in enumerate(ex["keypoints"]):
            for y, x, v in row:
                others = np.delete(full_masks, i, axis=0)[:, int(y), int(x)]
                by_distractor += int(v == 1 and not others.any())
    assert by_distractor > 0


def test_flip_permutation_swaps_left_and_right(generated):
    perm = flip_permutation(KEYPOINT_NAMES)
    assert perm == (ROOF, RIGHT_EAVE, LEFT_EAVE, RIGHT_BASE, LEFT_BASE, CENTRE)
    # Mirroring the image (x -> S - x) and reordering by `perm` gives a valid labelling again:
    # the new left corners have the smaller x.
    for ex, i, _ in _houses(generated):
        row = ex["keypoints"][i]
        if (row[:, 2] == 0).any():
            continue
        flipped = row[list(perm)]
        flipped[:, 1] = 128 - flipped[:, 1]
        assert flipped[LEFT_BASE, 1] < flipped[RIGHT_BASE, 1]
        assert flipped[LEFT_EAVE, 1] < flipped[RIGHT_EAVE, 1]


def test_image_size_scales_houses():
    small = generate_keypoint_example(3, image_size=64)
    assert small["image"].shape == (64, 64, 3) and small["masks"].shape[1:] == (64, 64)
    for row in small["keypoints"]:
        if (row[:, 2] > 0).all():
            height = np.linalg.norm(row[ROOF, :2] - (row[LEFT_BASE, :2] + row[RIGHT_BASE, :2]) / 2)
            assert 12.0 - 1e-3 <= height <= 28.0 + 1e-3


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="index"):
        generate_keypoint_example(-1)
    with pytest.raises(ValueError, match="seed"):
        generate_keypoint_example(0, seed=-2)
    with pytest.raises(ValueError, match="image_size"):
        generate_keypoint_example(0, image_size=16)
    with pytest.raises(ValueError, match="num_images"):
        keypoint_shapes_dataset(-1)
    with pytest.raises(ValueError, match="num_images"):
        make_keypoint_arrays(-1)


def test_dataset_element_spec_and_values():
    ds = keypoint_shapes_dataset(3, seed=4, image_size=96)
    spec = ds.element_spec
    assert spec["keypoints"] == tf.TensorSpec([None, 6, 3], tf.float32)
    assert spec["image"] == tf.TensorSpec([96, 96, 3], tf.uint8)
    assert spec["masks"] == tf.TensorSpec([None, 96, 96], tf.uint8)
    assert set(spec) == set(FIELDS)
    elements = list(ds.as_numpy_iterator())
    assert [int(e["image_id"]) for e in elements] == [0, 1, 2]
    for i, element in enumerate(elements):
        expected = generate_keypoint_example(i, seed=4, image_size=96)
        for field in FIELDS:
            np.testing.assert_array_equal(element[field], expected[field], err_msg=field)


def test_examples_pass_validation_unchanged(generated):
    from mrcnn_tf.data.validation import validate_example
    for ex, _ in generated[:5]:
        checked = validate_example(ex, num_classes=1, source="keypoint shapes",
                                   num_keypoints=len(KEYPOINT_NAMES))
        for field in FIELDS:
            np.testing.assert_array_equal(checked[field], ex[field], err_msg=field)


def test_coco_writer_round_trips_through_pycocotools(tmp_path):
    from pycocotools.coco import COCO

    from mrcnn_tf.data.images import read_image
    annotations_path, images_dir = write_keypoint_shapes_coco(str(tmp_path), 4, seed=6,
                                                              image_size=64)
    assert annotations_path == os.path.join(str(tmp_path), "annotations.json")
    # Atomic writes leave no temporary files behind.
    assert not [f for f in os.listdir(tmp_path) + os.listdir(images_dir) if f.startswith(".")]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(annotations_path)
    (category,) = coco.loadCats(coco.getCatIds())
    assert category["name"] == "house" and category["keypoints"] == list(KEYPOINT_NAMES)
    assert category["skeleton"] == [[a + 1, b + 1] for a, b in skeleton_pairs(SKELETON)]
    assert sorted(coco.getImgIds()) == [0, 1, 2, 3]
    for image_id in range(4):
        expected = generate_keypoint_example(image_id, seed=6, image_size=64)
        info = coco.loadImgs(image_id)[0]
        np.testing.assert_array_equal(read_image(os.path.join(images_dir, info["file_name"])),
                                      expected["image"])
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert len(anns) == len(expected["class_ids"])
        np.testing.assert_array_equal(np.stack([coco.annToMask(a) for a in anns]),
                                      expected["masks"])
        for ann, box, row in zip(anns, expected["boxes"], expected["keypoints"]):
            y1, x1, y2, x2 = box.tolist()
            assert ann["bbox"] == [x1, y1, x2 - x1, y2 - y1] and ann["iscrowd"] == 0
            stored = np.asarray(ann["keypoints"]).reshape(6, 3)  # (x, y, v)
            assert all(isinstance(v, int) for v in ann["keypoints"])
            np.testing.assert_array_equal(stored[:, 2], row[:, 2])
            np.testing.assert_array_equal(stored[:, 0], np.floor(row[:, 1]))
            np.testing.assert_array_equal(stored[:, 1], np.floor(row[:, 0]))
            assert ann["num_keypoints"] == int((row[:, 2] > 0).sum())
