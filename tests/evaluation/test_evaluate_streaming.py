"""evaluate_model and COCOEvalCallback stream: with coco_gt=None a tiny real model is scored
over examples made afresh on each pass, and weak references count how many example dicts and
full-image mask arrays (ground truth's and predictions') are alive at once."""

import weakref

import numpy as np
import pytest
from helpers import small_model_config

from mrcnn_tf.data import shapes
from mrcnn_tf.evaluation import coco_eval, evaluator
from mrcnn_tf.modeling.mask_rcnn import MaskRCNN

SIZE = 64
NUM_IMAGES = 8
# At most: the example being encoded or predicted, the one a loop variable still holds, and
# the one just made; the same for the masks. Holding all NUM_IMAGES would break it.
MOST_ALIVE = 3


class AliveCounter:
    """How many of the objects handed to `track` are alive now, and the most ever at once."""

    def __init__(self):
        self.alive = 0
        self.most = 0

    def track(self, obj):
        self.alive += 1
        self.most = max(self.most, self.alive)
        weakref.finalize(obj, self._gone)

    def _gone(self):
        self.alive -= 1


class TrackedExample(dict):
    """An example dict that can be weakly referenced (a plain dict cannot)."""


class FreshShapes:
    """Re-iterable shapes examples: each pass generates examples 0..n-1 anew (the same ones,
    `generate_shapes_example` being a pure function of index and seed) and keeps none."""

    def __init__(self, num_images, size=SIZE, seed=5):
        self.num_images, self.size, self.seed = num_images, size, seed
        self.examples = AliveCounter()
        self.masks = AliveCounter()  # the examples' [N, S, S] ground-truth masks
        self.passes = 0

    def __iter__(self):
        self.passes += 1
        for index in range(self.num_images):
            example = TrackedExample(shapes.generate_shapes_example(index, self.seed, self.size))
            self.examples.track(example)
            self.masks.track(example["masks"])
            yield example


class TrackingModel:
    """A model whose predictions' full-image masks [D, S, S] are counted while alive."""

    def __init__(self, model):
        self.model = model
        self.config = model.config
        self.masks = AliveCounter()

    def predict_images(self, images):
        predictions = self.model.predict_images(images)
        for prediction in predictions:
            self.masks.track(prediction["masks"])
        return predictions


class ForegroundModel:
    """Answers each image from its pixels alone (holding no example): the pixels far from the
    image's median colour as one mask, once per class with decreasing scores, so that the
    images with a single shape score and the metrics are not all zero."""

    config = None

    def predict_images(self, images):
        predictions = []
        for image in images:
            pixels = image.astype(np.float32)
            far = np.abs(pixels - np.median(pixels.reshape(-1, 3), axis=0)).sum(axis=-1) > 60
            masks = np.repeat(far[None], len(shapes.CLASS_NAMES), axis=0)
            predictions.append({"boxes": shapes.tight_boxes(masks),
                                "class_ids": np.arange(1, len(shapes.CLASS_NAMES) + 1),
                                "scores": np.linspace(0.9, 0.3, len(shapes.CLASS_NAMES)),
                                "masks": masks})
        return predictions


@pytest.fixture(scope="module")
def model():
    model = MaskRCNN(small_model_config(SIZE), class_names=list(shapes.CLASS_NAMES))
    model.build()
    return model


def test_evaluate_model_holds_a_few_examples_and_masks_at_a_time(model):
    examples = FreshShapes(NUM_IMAGES)
    tracking = TrackingModel(model)
    streamed = evaluator.evaluate_model(tracking, examples, model.label_map,
                                        print_summary=False)
    assert examples.passes == 2  # the ground truth's pass, then the predictions'
    assert examples.examples.most <= MOST_ALIVE
    assert examples.masks.most <= MOST_ALIVE
    assert tracking.masks.most <= MOST_ALIVE
    assert streamed["num_images"] == NUM_IMAGES

    # The same examples as a list (every one alive at once, as the old path held them), with
    # the ground truth built from that list: the same numbers.
    listed = list(FreshShapes(NUM_IMAGES))
    coco_gt = coco_eval.build_coco_ground_truth(listed, model.label_map)
    from_list = evaluator.evaluate_model(model, listed, model.label_map, coco_gt=coco_gt,
                                         print_summary=False)
    assert from_list == streamed


def test_streamed_and_listed_examples_score_the_same():
    labels = coco_eval.LabelMap.from_names(shapes.CLASS_NAMES)
    examples = FreshShapes(NUM_IMAGES)
    streamed = evaluator.evaluate_model(ForegroundModel(), examples, labels,
                                        print_summary=False)
    assert examples.examples.most <= MOST_ALIVE
    listed = list(FreshShapes(NUM_IMAGES))
    from_list = evaluator.evaluate_model(
        ForegroundModel(), listed, labels, coco_gt=coco_eval.build_coco_ground_truth(
            listed, labels), print_summary=False)
    assert from_list == streamed
    assert streamed["segm/AP"] > 0 and streamed["bbox/AP"] > 0


def test_the_counters_see_a_list_of_examples():
    examples = FreshShapes(4)
    listed = list(examples)
    assert examples.examples.most == examples.masks.most == 4
    del listed
    assert examples.examples.alive == 0


def test_callback_builds_the_ground_truth_in_a_pass_of_its_own(model):
    examples = FreshShapes(4)
    callback = evaluator.COCOEvalCallback(examples, model.label_map)
    tracking = TrackingModel(model)
    callback.set_model(tracking)
    logs = {}
    callback.on_epoch_end(0, logs)
    callback.on_epoch_end(1, logs)
    # Ground truth once, then one prediction pass per evaluation.
    assert examples.passes == 3
    assert examples.examples.most <= MOST_ALIVE and tracking.masks.most <= MOST_ALIVE
    assert "segm_AP" in logs and len(callback.history) == 2


def test_a_one_shot_iterator_is_refused_before_anything_is_read(model):
    examples = iter(FreshShapes(3))
    with pytest.raises(ValueError, match=r"examples: .*one-shot iterator.*iterated twice"):
        evaluator.evaluate_model(model, examples, model.label_map, print_summary=False)
    with pytest.raises(ValueError, match=r"examples: .*one-shot iterator"):
        evaluator.COCOEvalCallback((ex for ex in FreshShapes(3)), model.label_map)
    assert len(list(examples)) == 3  # nothing was consumed


def test_a_one_shot_iterator_is_fine_with_a_given_ground_truth(model):
    coco_gt = coco_eval.build_coco_ground_truth(FreshShapes(3), model.label_map)
    metrics = evaluator.evaluate_model(model, iter(FreshShapes(3)), model.label_map,
                                       coco_gt=coco_gt, print_summary=False)
    assert metrics["num_images"] == 3
