"""evaluate_model and COCOEvalCallback, with a stand-in model whose answers are known."""

import json
import os

import numpy as np
import pytest

from mrcnn_tf.data import shapes
from mrcnn_tf.evaluation import coco_eval, evaluator


class AnsweringModel:
    """Answers each image with that image's ground truth, optionally shifted."""

    def __init__(self, examples, shift=0.0):
        self.truth = {ex["image"].tobytes(): ex for ex in examples}
        self.shift = shift
        self.calls = 0

    def predict_images(self, images):
        self.calls += 1
        out = []
        for image in images:
            ex = self.truth[image.tobytes()]
            masks = ex["masks"].astype(bool)
            if self.shift:
                masks = np.roll(masks, int(self.shift), axis=2)
            out.append({"boxes": ex["boxes"] + np.float32([0, self.shift, 0, self.shift]),
                        "class_ids": ex["class_ids"], "scores": np.ones(len(ex["boxes"])),
                        "masks": masks})
        return out


@pytest.fixture(scope="module")
def examples():
    return shapes.make_shapes_arrays(6, seed=3, image_size=64)


LABELS = coco_eval.LabelMap.from_names(shapes.CLASS_NAMES)


def test_perfect_answers_score_one_and_results_are_written(examples, tmp_path):
    path = str(tmp_path / "results.json")
    metrics = evaluator.evaluate_model(AnsweringModel(examples), examples, LABELS,
                                       print_summary=False, results_path=path)
    assert metrics["bbox/AP"] == pytest.approx(1.0)
    assert metrics["segm/AP"] == pytest.approx(1.0)
    assert metrics["num_images"] == 6
    seen = []
    model = AnsweringModel(examples)
    evaluator.evaluate_model(model, examples, LABELS, print_summary=False,
                             on_prediction=lambda ex, p: seen.append(int(ex["image_id"])))
    assert seen == [int(ex["image_id"]) for ex in examples] and model.calls == len(examples)
    with open(path) as f:
        results = json.load(f)
    assert len(results) == sum(len(ex["boxes"]) for ex in examples)


def test_shifted_answers_score_lower(examples):
    metrics = evaluator.evaluate_model(AnsweringModel(examples, shift=6.0), examples, LABELS,
                                       print_summary=False)
    assert metrics["bbox/AP"] < 0.9
    assert metrics["segm/AP"] < 0.9


def test_callback_evaluates_every_n_epochs_and_logs(examples, tmp_path):
    callback = evaluator.COCOEvalCallback(examples, LABELS, every_n_epochs=2,
                                          log_dir=str(tmp_path / "tb"))
    model = AnsweringModel(examples)
    callback.set_model(model)
    logs = {}
    callback.on_epoch_end(0, logs)
    assert model.calls == 0 and "segm_AP" not in logs
    callback.on_epoch_end(1, logs)
    assert model.calls == len(examples)
    assert logs["segm_AP"] == pytest.approx(1.0) and logs["bbox_AP50"] == pytest.approx(1.0)
    assert callback.history == [{"epoch": 2, **{k: logs[k] for k in callback.history[0]
                                                if k != "epoch"}}]
    events = os.listdir(tmp_path / "tb" / "eval")
    assert any(name.startswith("events.out.tfevents") for name in events)


def test_callback_rejects_a_zero_period(examples):
    with pytest.raises(ValueError, match="every_n_epochs"):
        evaluator.COCOEvalCallback(examples, LABELS, every_n_epochs=0)


def test_only_the_images_run_are_scored(examples):
    # Ground truth for all six images, but the model only sees four (say two were
    # unreadable): the missing two must not count as misses.
    coco_gt = coco_eval.build_coco_ground_truth(examples, LABELS)
    metrics = evaluator.evaluate_model(AnsweringModel(examples), examples[:4], LABELS,
                                       coco_gt=coco_gt, print_summary=False)
    assert metrics["num_images"] == 4
    assert metrics["segm/AP"] == pytest.approx(1.0)
