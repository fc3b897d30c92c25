"""The ablations' synthetic set: small objects and thin bars on a 256 px canvas."""

import numpy as np
import pytest

from mrcnn_tf.data import small_shapes
from mrcnn_tf.data.validation import validate_example


@pytest.fixture(scope="module")
def examples():
    return [small_shapes.generate_small_shapes_example(i, seed=2) for i in range(30)]


def test_examples_are_valid_and_reproducible(examples):
    for example in examples[:5]:
        validate_example(example, num_classes=4, source="small shapes")
    again = small_shapes.generate_small_shapes_example(3, seed=2)
    for key, value in examples[3].items():
        np.testing.assert_array_equal(again[key], value, err_msg=key)
    other = small_shapes.generate_small_shapes_example(3, seed=3)
    assert not np.array_equal(other["image"], examples[3]["image"])


def test_objects_are_small_and_bars_are_thin(examples):
    classes = np.concatenate([e["class_ids"] for e in examples])
    assert set(classes) == {1, 2, 3, 4}
    assert all(e["image"].shape == (256, 256, 3) for e in examples)
    counts = [len(e["class_ids"]) for e in examples]
    assert min(counts) >= 2 and max(counts) <= small_shapes.SHAPE_COUNTS[1]
    for example in examples:
        boxes = example["boxes"]
        sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        for side, class_id, mask in zip(sides, example["class_ids"], example["masks"]):
            if class_id == 4:  # a bar: long and thin (area / length is its width)
                assert 8 <= side <= 41 and mask.sum() / side <= 6.5
            else:  # visible part of a shape of 8-32 px (a rotated square spans up to 46)
                assert 3 <= side <= 46
    # Mostly "small" by COCO's definition (area < 32^2), the regime the study is about.
    areas = np.concatenate([e["masks"].sum(axis=(1, 2)) for e in examples])
    assert (areas < 32 ** 2).mean() > 0.95


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match="index=-1"):
        small_shapes.generate_small_shapes_example(-1)
    with pytest.raises(ValueError, match="image_size=40: expected >= 80"):
        small_shapes.generate_small_shapes_example(0, image_size=40)


def test_dataset_yields_the_examples():
    first = next(iter(small_shapes.small_shapes_dataset(2, seed=2)))
    want = small_shapes.generate_small_shapes_example(0, seed=2)
    np.testing.assert_array_equal(first["masks"].numpy(), want["masks"])
