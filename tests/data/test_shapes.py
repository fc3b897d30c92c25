"""Tests for the synthetic shapes dataset."""

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.data import shapes
from mrcnn_tf.data.shapes import CLASS_NAMES, generate_shapes_example, shapes_dataset
from mrcnn_tf.data.validation import validate_example

FIELDS = ("image", "boxes", "class_ids", "masks", "is_crowd", "image_id")


@pytest.fixture(scope="module")
def examples():
    return shapes.make_shapes_arrays(60, seed=3)


def _reference_tight_box(mask):
    ys, xs = np.nonzero(mask)
    return [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]


def test_same_index_and_seed_give_identical_arrays():
    a = generate_shapes_example(7, seed=11)
    b = generate_shapes_example(7, seed=11)
    for field in FIELDS:
        np.testing.assert_array_equal(a[field], b[field], err_msg=field)


def test_different_index_or_seed_give_different_images():
    base = generate_shapes_example(7, seed=11)["image"]
    assert not np.array_equal(base, generate_shapes_example(8, seed=11)["image"])
    assert not np.array_equal(base, generate_shapes_example(7, seed=12)["image"])


def test_example_does_not_depend_on_generation_order():
    in_list = shapes.make_shapes_arrays(3, seed=5, start=10)[2]
    alone = generate_shapes_example(12, seed=5)
    np.testing.assert_array_equal(in_list["image"], alone["image"])
    assert in_list["image_id"] == 12


def test_dtypes_and_shapes(examples):
    for ex in examples:
        n = ex["boxes"].shape[0]
        assert ex["image"].dtype == np.uint8 and ex["image"].shape == (128, 128, 3)
        assert ex["boxes"].dtype == np.float32 and ex["boxes"].shape == (n, 4)
        assert ex["class_ids"].dtype == np.int32 and ex["class_ids"].shape == (n,)
        assert ex["masks"].dtype == np.uint8 and ex["masks"].shape == (n, 128, 128)
        assert ex["is_crowd"].dtype == bool and ex["is_crowd"].shape == (n,)
        assert ex["image_id"].dtype == np.int64 and ex["image_id"].shape == ()


def test_boxes_are_tight_boxes_of_masks(examples):
    for ex in examples:
        for box, mask in zip(ex["boxes"], ex["masks"]):
            assert mask.any()
            np.testing.assert_array_equal(box, _reference_tight_box(mask))


def test_class_ids_and_instance_counts(examples):
    counts = []
    for ex in examples:
        n = len(ex["class_ids"])
        assert 1 <= n <= 4
        assert set(ex["class_ids"].tolist()) <= {1, 2, 3}
        assert not ex["is_crowd"].any()
        counts.append(n)
    # All counts and all classes occur in 60 images (a generator stuck on one would fail).
    assert set(counts) == {1, 2, 3, 4}
    all_ids = np.concatenate([ex["class_ids"] for ex in examples])
    assert set(all_ids.tolist()) == {1, 2, 3}
    assert len(CLASS_NAMES) == 3


def test_custom_instance_bounds_including_zero():
    for i in range(20):
        ex = generate_shapes_example(i, seed=1, min_shapes=0, max_shapes=2)
        assert 0 <= len(ex["class_ids"]) <= 2
        assert ex["masks"].shape[0] == ex["boxes"].shape[0] == len(ex["class_ids"])
    many = [len(generate_shapes_example(i, min_shapes=6, max_shapes=6)["class_ids"])
            for i in range(10)]
    assert min(many) >= 5  # placement may rarely give up on one, never on most


def test_visible_masks_are_disjoint_and_big_enough(examples):
    for ex in examples:
        masks = ex["masks"].astype(np.int32)
        assert masks.sum(axis=0).max(initial=0) <= 1
        for mask in masks:
            assert mask.sum() >= 20


def test_object_pixels_differ_from_background(examples):
    # Mean colour inside each mask is far from the mean background colour: the task is
    # learnable from colour alone, and a shape is never painted "invisibly".
    for ex in examples:
        image = ex["image"].astype(np.float32)
        background = ex["masks"].sum(axis=0) == 0
        bg_mean = image[background].mean(axis=0)
        for mask in ex["masks"].astype(bool):
            assert np.linalg.norm(image[mask].mean(axis=0) - bg_mean) > 50


def test_image_size_scales_shapes():
    small = generate_shapes_example(0, image_size=64)
    big = generate_shapes_example(0, image_size=256)
    assert small["image"].shape == (64, 64, 3) and big["masks"].shape[1:] == (256, 256)
    areas_big = np.concatenate([generate_shapes_example(i, image_size=256)["masks"].sum((1, 2))
                                for i in range(10)])
    areas_small = np.concatenate([generate_shapes_example(i, image_size=64)["masks"].sum((1, 2))
                                  for i in range(10)])
    assert np.median(areas_big) > 8 * np.median(areas_small)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="min_shapes"):
        generate_shapes_example(0, min_shapes=3, max_shapes=2)
    with pytest.raises(ValueError, match="index"):
        generate_shapes_example(-1)


def test_dataset_element_spec_and_values():
    ds = shapes_dataset(4, seed=2, image_size=96)
    spec = ds.element_spec
    assert spec["image"] == tf.TensorSpec([96, 96, 3], tf.uint8)
    assert spec["boxes"] == tf.TensorSpec([None, 4], tf.float32)
    assert spec["class_ids"] == tf.TensorSpec([None], tf.int32)
    assert spec["masks"] == tf.TensorSpec([None, 96, 96], tf.uint8)
    assert spec["is_crowd"] == tf.TensorSpec([None], tf.bool)
    assert spec["image_id"] == tf.TensorSpec([], tf.int64)
    elements = list(ds.as_numpy_iterator())
    assert [int(e["image_id"]) for e in elements] == [0, 1, 2, 3]
    for i, element in enumerate(elements):
        expected = generate_shapes_example(i, seed=2, image_size=96)
        for field in FIELDS:
            np.testing.assert_array_equal(element[field], expected[field], err_msg=field)


def test_examples_pass_validation_unchanged(examples):
    for ex in examples[:10]:
        checked = validate_example(ex, num_classes=len(CLASS_NAMES), source="shapes")
        for field in FIELDS:
            np.testing.assert_array_equal(checked[field], ex[field], err_msg=field)
            assert checked[field].dtype == ex[field].dtype, field


def test_write_shapes_coco_round_trips_through_pycocotools(tmp_path):
    from pycocotools.coco import COCO

    from mrcnn_tf.data.shapes import write_shapes_coco
    from mrcnn_tf.data.images import read_image
    annotations, images_dir = write_shapes_coco(str(tmp_path), 3, seed=4, image_size=64)
    coco = COCO(annotations)
    assert sorted(coco.getImgIds()) == [0, 1, 2]
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASS_NAMES)
    for image_id in range(3):
        expected = generate_shapes_example(image_id, seed=4, image_size=64)
        info = coco.loadImgs(image_id)[0]
        np.testing.assert_array_equal(
            read_image(f"{images_dir}/{info['file_name']}"), expected["image"])
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        masks = np.stack([coco.annToMask(a) for a in anns])
        np.testing.assert_array_equal(masks, expected["masks"])
