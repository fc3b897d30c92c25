"""Batched prediction (mrcnn_tf.modeling.predictor): images grouped by padded canvas give the
detections of one image at a time."""

import keras
import numpy as np
import pytest

from helpers import small_model_config  # noqa: E402
from mrcnn_tf.data.shapes import CLASS_NAMES
from mrcnn_tf.modeling import predictor
from mrcnn_tf.modeling.mask_rcnn import MaskRCNN

# 64 x 96 px images with min size 64 and max size 96 (detectron2 rule, divisibility 32):
# 48x64 -> 64x85 (canvas 64x96), 60x80 -> 64x85 (64x96), 64x64 -> 64x64 (64x64),
# 80x60 -> 85x64 (96x64).
CONFIG = small_model_config(64, image_max_size=96)
SIZES = [(48, 64), (64, 64), (60, 80), (80, 60), (48, 64), (60, 80), (64, 64)]


def test_images_are_grouped_by_padded_canvas_in_input_order():
    assert predictor.padded_canvas(48, 64, CONFIG) == (64, 96)
    assert predictor.padded_canvas(80, 60, CONFIG) == (96, 64)
    # Canvas 64x96: images 0, 2, 4, 5 (two batches of at most 3); 64x64: 1, 6; 96x64: 3.
    assert predictor.canvas_batches(SIZES, CONFIG, 3) == [[0, 2, 4], [5], [1, 6], [3]]
    assert predictor.canvas_batches(SIZES, CONFIG, 1) == [[0], [2], [4], [5], [1], [6], [3]]


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    model = MaskRCNN(CONFIG, class_names=list(CLASS_NAMES), category_ids=[7, 0, 42])
    model.build()
    return model


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]


def test_batched_prediction_equals_one_image_at_a_time(model, images):
    alone = model.predict_images(images, score_threshold=0.0)
    batched = model.predict_images(images, score_threshold=0.0, batch_size=4)
    assert len(batched) == len(images)
    for i, (one, many) in enumerate(zip(alone, batched)):
        assert len(one["scores"]) == len(many["scores"]) > 0, i
        np.testing.assert_allclose(many["boxes"], one["boxes"], atol=1e-3, err_msg=str(i))
        np.testing.assert_allclose(many["scores"], one["scores"], atol=1e-5, err_msg=str(i))
        np.testing.assert_array_equal(many["class_ids"], one["class_ids"], err_msg=str(i))
        np.testing.assert_array_equal(many["category_ids"], one["category_ids"])
        assert many["masks"].shape == one["masks"].shape == (len(one["scores"]),) + SIZES[i]
        assert np.mean(many["masks"] == one["masks"]) > 0.999, i


def test_batched_prediction_keeps_by_score_like_one_at_a_time(model, images):
    threshold = float(np.median(model.predict_images(images[:1])[0]["scores"]))
    alone = model.predict_images(images, score_threshold=threshold)
    batched = model.predict_images(images, score_threshold=threshold, batch_size=7)
    assert [len(r["scores"]) for r in batched] == [len(r["scores"]) for r in alone]
    assert all((r["scores"] >= threshold).all() for r in batched)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True])
def test_a_bad_batch_size_is_refused(model, images, batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        model.predict_images(images[:1], batch_size=batch_size)
