"""Tests for input validation and the tf.data pipeline."""

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.config import get_config
from mrcnn_tf.data.pipeline import make_training_dataset, preprocess_for_training
from mrcnn_tf.data.shapes import generate_shapes_example, shapes_dataset
from mrcnn_tf.data.validation import to_rgb, validate_example
from mrcnn_tf.ops.resize import preprocess_for_inference

TINY = get_config("shapes_tiny")


def _tight_box(mask):
    ys, xs = np.nonzero(mask)
    return np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1], np.float32)


def _rect_example(height, width, rects, image_id=0):
    """An example with axis-aligned rectangle instances (y1, x1, y2, x2), exclusive ends."""
    rng = np.random.default_rng(image_id)
    masks = np.zeros((len(rects), height, width), np.uint8)
    for i, (y1, x1, y2, x2) in enumerate(rects):
        masks[i, y1:y2, x1:x2] = 1
    return {
        "image": rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        "boxes": np.array(rects, np.float32).reshape(-1, 4),
        "class_ids": (np.arange(len(rects)) % 3 + 1).astype(np.int32),
        "masks": masks,
        "is_crowd": np.zeros(len(rects), bool),
        "image_id": np.int64(image_id),
    }


def _run(example, config, **kwargs):
    out = preprocess_for_training({k: tf.constant(v) for k, v in example.items()}, config,
                                  **kwargs)
    return {k: v.numpy() for k, v in out.items()}


# -- validation ------------------------------------------------------------------------------

def _good_example():
    return _rect_example(20, 30, [(2, 3, 10, 8), (5, 5, 15, 25)], image_id=4)


def test_validate_accepts_and_normalizes_types():
    ex = _good_example()
    ex["boxes"] = ex["boxes"].astype(np.float64)
    ex["class_ids"] = ex["class_ids"].astype(np.int64)
    ex["masks"] = ex["masks"].astype(bool)
    del ex["is_crowd"]
    out = validate_example(ex, num_classes=3, source="unit")
    assert out["boxes"].dtype == np.float32 and out["class_ids"].dtype == np.int32
    assert out["masks"].dtype == np.uint8 and out["is_crowd"].tolist() == [False, False]
    assert out["image_id"] == 4 and out["image_id"].dtype == np.int64


def test_validate_zero_instances():
    ex = _good_example()
    ex.update(boxes=np.zeros((0,)), class_ids=[], masks=np.zeros((0, 20, 30), np.uint8),
              is_crowd=[])
    out = validate_example(ex, 3, "empty")
    assert out["boxes"].shape == (0, 4) and out["masks"].shape == (0, 20, 30)


def test_grayscale_and_rgba_are_converted():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = to_rgb(gray)
    assert rgb.shape == (3, 4, 3) and np.array_equal(rgb[..., 2], gray)
    rgba = np.random.default_rng(0).integers(0, 256, (3, 4, 4), dtype=np.uint8)
    assert np.array_equal(to_rgb(rgba), rgba[..., :3])
    ex = _good_example()
    ex["image"] = ex["image"][..., 0]
    assert validate_example(ex, 3)["image"].shape == (20, 30, 3)
    ex["image"] = np.zeros((20, 30, 4), np.uint8)
    assert validate_example(ex, 3)["image"].shape == (20, 30, 3)


def _bad(field, value):
    ex = _good_example()
    ex[field] = value
    return ex


BAD_CASES = {
    "two-channel image": ("image", _bad("image", np.zeros((20, 30, 2), np.uint8))),
    "4-d image": ("image", _bad("image", np.zeros((1, 20, 30, 3), np.uint8))),
    "float image": ("image", _bad("image", np.zeros((20, 30, 3), np.float32))),
    "empty image": ("image", {**_rect_example(20, 30, []),
                              "image": np.zeros((0, 30, 3), np.uint8)}),
    "boxes not Nx4": ("boxes", _bad("boxes", np.zeros((2, 5), np.float32))),
    "x2 < x1": ("boxes", _bad("boxes", np.array([[2, 8, 10, 3], [5, 5, 15, 25]], np.float32))),
    "y2 < y1": ("boxes", _bad("boxes", np.array([[2, 3, 10, 8], [15, 5, 5, 25]], np.float32))),
    "nan box": ("boxes", _bad("boxes", np.array([[2, 3, np.nan, 8], [5, 5, 15, 25]]))),
    "mask size": ("masks", _bad("masks", np.zeros((2, 20, 31), np.uint8))),
    "mask count": ("masks", _bad("masks", np.zeros((3, 20, 30), np.uint8))),
    "mask values": ("masks", _bad("masks", np.full((2, 20, 30), 255, np.uint8))),
    "class 0": ("class_ids", _bad("class_ids", np.array([0, 1], np.int32))),
    "class > K": ("class_ids", _bad("class_ids", np.array([1, 4], np.int32))),
    "class count": ("class_ids", _bad("class_ids", np.array([1], np.int32))),
    "crowd count": ("is_crowd", _bad("is_crowd", np.zeros(3, bool))),
    "missing masks": ("masks", {k: v for k, v in _good_example().items() if k != "masks"}),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_examples_raise_naming_source_and_field(case):
    field, example = BAD_CASES[case]
    with pytest.raises(ValueError) as info:
        validate_example(example, num_classes=3, source="train.json image 42")
    message = str(info.value)
    assert message.startswith("train.json image 42:")
    assert f"'{field}'" in message and "expected" in message


# -- preprocess_for_training -----------------------------------------------------------------

def _check_boxes_match_masks(out, num):
    for box, mask in zip(out["gt_boxes"][:num], out["gt_masks"][:num]):
        np.testing.assert_allclose(box, _tight_box(mask), atol=1.0)


@pytest.mark.parametrize("min_size, max_size", [(200, 320), (80, 80), (128, 128)])
def test_boxes_scale_with_masks_shapes(min_size, max_size):
    config = TINY.replace(image_min_size=min_size, image_max_size=max_size)
    ex = generate_shapes_example(5, seed=0)
    out = _run(ex, config)
    n = len(ex["class_ids"])
    s = min_size
    assert out["image_shape"].tolist() == [s, s] and out["original_shape"].tolist() == [128, 128]
    np.testing.assert_allclose(out["scale"], [s / 128, s / 128], rtol=1e-6)
    np.testing.assert_allclose(out["gt_boxes"][:n], ex["boxes"] * s / 128, rtol=1e-6)
    _check_boxes_match_masks(out, n)


def test_non_square_image_per_axis_scale_and_padding():
    # 92 x 150 -> shorter side 64 would make the longer 104.3, capped at 100: scale 2/3 gives
    # 61.33 x 100, rounded to 61 x 100, so the exact y ratio is 61/92, not 2/3.
    config = TINY.replace(image_min_size=64, image_max_size=100)
    ex = _rect_example(92, 150, [(0, 0, 92, 150), (10, 20, 40, 149), (45, 3, 91, 7)])
    out = _run(ex, config)
    assert out["image_shape"].tolist() == [61, 100]
    np.testing.assert_allclose(out["scale"], [61 / 92, 100 / 150], rtol=1e-6)
    np.testing.assert_allclose(out["gt_boxes"][0], [0, 0, 61, 100], atol=1e-4)
    _check_boxes_match_masks(out, 3)
    p = config.max_padded_size
    assert p == 128 and out["images"].shape == (p, p, 3)
    # Padding is zero below and right of the valid region; the valid region is the image.
    assert not out["images"][61:].any() and not out["images"][:, 100:].any()
    assert not out["gt_masks"][:, 61:].any() and not out["gt_masks"][:, :, 100:].any()
    assert out["gt_masks"][0, :61, :100].all()
    assert out["images"][:61, :100].std() > 20  # random pixels, not zeros
    assert out["images"].min() >= 0 and out["images"].max() <= 255


@pytest.mark.parametrize("h, w, min_size, max_size", [(128, 128, 64, 64), (90, 150, 64, 100),
                                                     (37, 53, 100, 200)])
def test_masks_resize_like_tf_nearest(h, w, min_size, max_size):
    # Same sampling as tf.image.resize(method="nearest") (half-pixel centres), which the
    # pipeline avoids only because it cannot take N = 0 masks as channels.
    config = TINY.replace(image_min_size=min_size, image_max_size=max_size)
    ex = _rect_example(h, w, [(0, 0, 1, 1)] * 3)
    ex["masks"] = (np.random.default_rng(1).random((3, h, w)) > 0.5).astype(np.uint8)
    out = _run(ex, config)
    nh, nw = out["image_shape"]
    expected = tf.image.resize(ex["masks"].transpose(1, 2, 0), [nh, nw], method="nearest")
    np.testing.assert_array_equal(out["gt_masks"][:3, :nh, :nw],
                                  expected.numpy().transpose(2, 0, 1))


def test_image_resize_is_bilinear_and_unnormalized():
    ex = _rect_example(64, 64, [(1, 1, 5, 5)])
    out = _run(ex, TINY)  # 64 -> 128
    expected = tf.image.resize(ex["image"].astype(np.float32), [128, 128]).numpy()
    np.testing.assert_allclose(out["images"], expected, atol=1e-3)


def test_instance_padding_and_static_shapes():
    ex = _rect_example(128, 128, [(0, 0, 10, 10), (20, 20, 40, 50)])
    ex["is_crowd"][1] = True
    out = _run(ex, TINY)
    m, p = TINY.max_instances, TINY.max_padded_size
    assert out["gt_boxes"].shape == (m, 4) and out["gt_masks"].shape == (m, p, p)
    assert out["gt_classes"].tolist() == [1, 2] + [0] * (m - 2)
    assert out["gt_is_crowd"].tolist() == [False, True] + [False] * (m - 2)
    assert not out["gt_boxes"][2:].any() and not out["gt_masks"][2:].any()
    assert out["gt_masks"].dtype == np.uint8 and out["image_id"].dtype == np.int64

    # Shapes are static when traced with dynamic input sizes, as in Dataset.map.
    spec = {"image": tf.TensorSpec([None, None, 3], tf.uint8),
            "boxes": tf.TensorSpec([None, 4], tf.float32),
            "class_ids": tf.TensorSpec([None], tf.int32),
            "masks": tf.TensorSpec([None, None, None], tf.uint8),
            "is_crowd": tf.TensorSpec([None], tf.bool),
            "image_id": tf.TensorSpec([], tf.int64)}
    concrete = tf.function(lambda e: preprocess_for_training(e, TINY, augment=True)
                           ).get_concrete_function(spec)
    shapes = {k: v.shape.as_list() for k, v in concrete.structured_outputs.items()}
    assert shapes == {"images": [p, p, 3], "image_shape": [2], "gt_boxes": [m, 4],
                      "gt_classes": [m], "gt_masks": [m, p, p], "gt_is_crowd": [m],
                      "image_id": [], "scale": [2], "original_shape": [2]}


def test_instances_beyond_max_are_dropped_keeping_first():
    rects = [(i, i, i + 5, i + 7) for i in range(12)]
    out = _run(_rect_example(128, 128, rects), TINY)  # max_instances = 8
    np.testing.assert_allclose(out["gt_boxes"], np.array(rects[:8], np.float32))
    assert (out["gt_classes"] > 0).all()
    assert out["gt_masks"].reshape(8, -1).sum(axis=1).tolist() == [35] * 8
    _check_boxes_match_masks(out, 8)  # the kept masks are the first 8 too, not any 8


def test_zero_instances():
    out = _run(_rect_example(100, 60, []), TINY)
    assert not out["gt_boxes"].any() and not out["gt_classes"].any()
    assert not out["gt_masks"].any()
    assert out["image_shape"].tolist() == [128, 77]  # capped: 60 * 128 / 100 = 76.8


def test_flip_moves_boxes_and_masks_together():
    config = TINY.replace(image_min_size=96, image_max_size=120)  # 80 x 100 -> 96 x 120
    ex = _rect_example(80, 100, [(3, 2, 20, 11), (30, 60, 79, 100), (40, 10, 55, 50)])
    plain = _run(ex, config)
    w = int(plain["image_shape"][1])
    assert w == 120
    flipped_seen = unflipped_seen = False
    for k in range(20):
        out = _run(ex, config, augment=True, seed=tf.constant([7, k], tf.int64))
        if np.array_equal(out["gt_masks"], plain["gt_masks"]):
            unflipped_seen = True
            np.testing.assert_array_equal(out["gt_boxes"], plain["gt_boxes"])
            continue
        flipped_seen = True
        np.testing.assert_array_equal(out["gt_masks"][:, :, :w], plain["gt_masks"][:, :, w - 1::-1])
        np.testing.assert_allclose(out["images"][:, :w], plain["images"][:, w - 1::-1])
        y1, x1, y2, x2 = plain["gt_boxes"][:3].T
        np.testing.assert_allclose(out["gt_boxes"][:3], np.stack([y1, w - x2, y2, w - x1], 1))
        _check_boxes_match_masks(out, 3)
        assert not out["images"][:, w:].any()  # still padded on the right
    assert flipped_seen and unflipped_seen


def test_flip_with_int_seed_is_reproducible():
    ex = {k: tf.constant(v) for k, v in generate_shapes_example(3).items()}
    a = preprocess_for_training(ex, TINY, augment=True, seed=5)
    b = preprocess_for_training(ex, TINY, augment=True, seed=5)
    np.testing.assert_array_equal(a["gt_masks"].numpy(), b["gt_masks"].numpy())


# -- datasets --------------------------------------------------------------------------------

def test_training_dataset_batches_with_shapes_tiny():
    ds = make_training_dataset(shapes_dataset(12, seed=1), TINY, batch_size=4, seed=3)
    p, m = TINY.max_padded_size, TINY.max_instances
    spec = ds.element_spec
    assert spec["images"].shape.as_list() == [4, p, p, 3]
    assert spec["gt_masks"].shape.as_list() == [4, m, p, p]
    assert spec["gt_boxes"].shape.as_list() == [4, m, 4]
    batches = list(ds.take(4).as_numpy_iterator())  # 16 images from 12: repeats
    ids = np.concatenate([b["image_id"] for b in batches])
    assert sorted(ids[:12].tolist()) == list(range(12))  # one full shuffled epoch first
    assert ids[:12].tolist() != list(range(12))
    for batch in batches:
        assert batch["images"].shape == (4, p, p, 3) and batch["images"].dtype == np.float32
        valid = batch["gt_classes"] > 0
        assert valid.any(axis=1).all()  # every shapes image has an instance
        assert set(batch["gt_classes"][valid].tolist()) <= {1, 2, 3}
    # The same pipeline built again with the same seed gives the same batches (order, flips).
    rebuilt = make_training_dataset(shapes_dataset(12, seed=1), TINY, batch_size=4, seed=3)
    again = list(rebuilt.take(4).as_numpy_iterator())
    for a, b in zip(batches, again):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_training_dataset_flips_some_images():
    def images(augment):
        ds = make_training_dataset(shapes_dataset(16), TINY, batch_size=16, shuffle=False,
                                   augment=augment, seed=0, repeat=False)
        return next(iter(ds))["images"].numpy()

    plain, augmented = images(False), images(True)
    same = [np.array_equal(a, b) for a, b in zip(plain, augmented)]
    mirrored = [np.array_equal(a[:, ::-1], b) for a, b in zip(plain, augmented)]
    assert all(s or m for s, m in zip(same, mirrored))
    assert 2 <= sum(mirrored) <= 14  # a fair coin, not always or never


def test_training_dataset_without_repeat_or_shuffle():
    ds = make_training_dataset(shapes_dataset(5), TINY, batch_size=2, shuffle=False,
                               augment=False, drop_remainder=False, repeat=False)
    ids = [b["image_id"].tolist() for b in ds.as_numpy_iterator()]
    assert ids == [[0, 1], [2, 3], [4]]


# -- preprocess_for_inference ----------------------------------------------------------------

def test_preprocess_for_inference_batch():
    config = TINY.replace(image_min_size=100, image_max_size=160)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 60, 90, 3), dtype=np.uint8)
    padded, image_shape, scale = preprocess_for_inference(tf.constant(images), config)
    # 60 x 90 -> 100 x 150, padded to multiples of 32: 128 x 160.
    assert padded.shape == (3, 128, 160, 3) and padded.dtype == tf.float32
    assert image_shape.numpy().tolist() == [[100, 150]] * 3
    np.testing.assert_allclose(scale.numpy(), [[100 / 60, 150 / 90]] * 3, rtol=1e-6)
    assert not padded.numpy()[:, 100:].any() and not padded.numpy()[:, :, 150:].any()
    # The valid region equals what the training path produces for the same image.
    train = _run({**_rect_example(60, 90, []), "image": images[1]}, config)
    np.testing.assert_allclose(padded.numpy()[1, :100, :150], train["images"][:100, :150],
                               atol=1e-4)

    # Dynamic sizes in a traced function give the same result.
    fn = tf.function(lambda x: preprocess_for_inference(x, config),
                     input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    dyn_padded, dyn_shape, dyn_scale = fn(tf.constant(images))
    np.testing.assert_allclose(dyn_padded.numpy(), padded.numpy())
    np.testing.assert_array_equal(dyn_shape.numpy(), image_shape.numpy())
    np.testing.assert_allclose(dyn_scale.numpy(), scale.numpy())



def test_mini_masks_and_scale_jitter_in_the_training_pipeline():
    config = get_config("shapes_tiny", mini_mask_size=28, train_min_sizes=(64, 96, 128))
    example = generate_shapes_example(1, seed=2, image_size=128, min_shapes=2)
    sizes = set()
    for k in range(12):
        out = preprocess_for_training(example, config, augment=True, seed=k)
        n = len(example["boxes"])
        assert out["gt_masks"].shape == (config.max_instances, 28, 28)
        assert int(tf.reduce_sum(tf.cast(out["gt_masks"][n:], tf.int32))) == 0
        assert int(tf.reduce_min(tf.reduce_max(out["gt_masks"][:n], axis=[1, 2]))) == 1
        sizes.add(int(out["image_shape"][0]))
    # The shorter side is drawn from train_min_sizes, and more than one size comes up.
    assert sizes <= {64, 96, 128} and len(sizes) >= 2
    # Without augmentation the configured image_min_size is used.
    out = preprocess_for_training(example, config, augment=False)
    assert int(out["image_shape"][0]) == config.image_min_size


def test_flipped_mini_masks_are_mirror_images():
    config = get_config("shapes_tiny", mini_mask_size=28)
    example = generate_shapes_example(4, seed=2, image_size=128, min_shapes=2)
    plain = preprocess_for_training(example, config, augment=False)
    flipped = None
    for k in range(20):
        out = preprocess_for_training(example, config, augment=True, seed=k)
        if not np.allclose(out["images"].numpy(), plain["images"].numpy()):
            flipped = out
            break
    assert flipped is not None
    np.testing.assert_array_equal(flipped["gt_masks"].numpy(),
                                  plain["gt_masks"].numpy()[:, :, ::-1])
