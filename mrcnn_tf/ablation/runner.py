"""Trains and evaluates every variant of a study for several seeds, one run at a time, and
writes what each run measured.

A run is one (variant, seed): the variant's config trained from scratch with `model.fit` on
`train_images` synthetic small shapes (the same images for every run; the seed drives the
initialization, shuffling and augmentation), then scored with pycocotools on `eval_images`
held-out images. Its numbers go to `OUT/runs/VARIANT/seed-N.json` (written atomically), and
a run whose file exists with the same settings is not repeated: an interrupted study goes on
where it stopped when the command is run again.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, Dict, List, Optional

import keras
from absl import logging

from mrcnn_tf.ablation.studies import Study, Variant
from mrcnn_tf.config import Config
from mrcnn_tf.data import pipeline
from mrcnn_tf.data.synthetic import SMALL_SHAPES
from mrcnn_tf.evaluation import coco_eval, evaluator
from mrcnn_tf.io_utils import write_json_atomic
from mrcnn_tf.modeling.mask_rcnn import MaskRCNN
from mrcnn_tf.modeling.optimizer import make_optimizer

# Data seeds: the training images are the same in every run; the held-out ones differ from them.
TRAIN_DATA_SEED = 0
EVAL_DATA_SEED = 1000
# The numbers each run keeps (pycocotools' summary names, prefixed by the iou type).
RUN_METRICS = ("segm/AP", "segm/AP50", "segm/AP75", "bbox/AP", "bbox/AP50", "bbox/AP75")


def run_path(out_dir: str, variant: Variant, seed: int) -> str:
    return os.path.join(out_dir, "runs", variant.label, f"seed-{seed}.json")


def _settings(study: Study, variant: Variant, seed: int, steps: int, train_images: int,
              eval_images: int) -> dict:
    config = variant.config(study.base_config())
    settings = {"study": study.name, "variant": variant.label, "seed": seed, "steps": steps,
                "batch_size": config.batch_size, "train_images": train_images,
                "eval_images": eval_images, "config": config.to_dict()}
    return json.loads(json.dumps(settings))  # as read back from a run's file (lists, not tuples)


def train_and_evaluate(settings: dict, train_examples, eval_examples: List[dict]) -> dict:
    """Trains the run's config from scratch and scores it; returns its metrics and times.

    Args:
      settings: the run's settings (`_settings`).
      train_examples: the study's training examples, a cached tf.data.Dataset shared by its
        runs (generated once, on the first run's first pass).
      eval_examples: the held-out example dicts.
    """
    config = Config.from_dict(settings["config"])
    keras.backend.clear_session()
    keras.utils.set_random_seed(settings["seed"])
    model = MaskRCNN(config, class_names=list(SMALL_SHAPES.class_names))
    batch = settings["batch_size"]
    model.compile(optimizer=make_optimizer(config, batch_size=batch))
    data = pipeline.make_training_dataset(train_examples, config, batch, shuffle=True,
                                          augment=True, seed=settings["seed"])
    start = time.time()
    history = model.fit(data, epochs=1, steps_per_epoch=settings["steps"], verbose=0,
                        shuffle=False)
    train_seconds = time.time() - start
    start = time.time()
    label_map = coco_eval.LabelMap.from_names(list(SMALL_SHAPES.class_names))
    metrics = evaluator.evaluate_model(model, eval_examples, label_map)
    return {**settings, "train_seconds": round(train_seconds, 1),
            "eval_seconds": round(time.time() - start, 1),
            "final_loss": float(history.history["loss"][-1]),
            "metrics": {name: float(metrics[name]) for name in RUN_METRICS}}


def run_study(study: Study, out_dir: str, seeds: int = 3, steps: Optional[int] = None,
              train_images: int = 1000, eval_images: int = 200,
              on_run: Callable[[dict], None] = lambda result: None) -> List[dict]:
    """Every (variant, seed) of `study`, skipping runs already on disk with the same settings.

    Args:
      study: the study.
      out_dir: the study's folder (runs/ is written under it).
      seeds: seeds 0 .. seeds-1 per variant.
      steps: training steps per run (default: the base config's total_steps).
      train_images, eval_images: synthetic training / held-out images.
      on_run: called with each run's result as it is finished or found.
    Returns:
      the results, in variant then seed order.
    """
    for flag, value in (("seeds", seeds), ("train_images", train_images),
                        ("eval_images", eval_images), ("steps", 1 if steps is None else steps)):
        if value < 1:
            raise ValueError(f"--{flag}={value}: expected an integer >= 1")
    steps = study.base_config().total_steps if steps is None else steps
    image_size = study.base_config().image_max_size
    train_examples = eval_examples = None  # made when the first run needs them
    results = []
    for variant in study.variants:
        for seed in range(seeds):
            settings = _settings(study, variant, seed, steps, train_images, eval_images)
            path = run_path(out_dir, variant, seed)
            previous = _previous_run(path)
            if previous is not None and all(previous.get(k) == v for k, v in settings.items()):
                result = previous
                logging.info("%s seed %d: done before (%s)", variant.label, seed, path)
            else:
                if eval_examples is None:
                    train_examples = SMALL_SHAPES.dataset(train_images, TRAIN_DATA_SEED,
                                                          image_size).cache()
                    eval_examples = SMALL_SHAPES.make_arrays(eval_images, EVAL_DATA_SEED,
                                                             image_size)
                logging.info("%s: training %s, seed %d, %d steps", study.name, variant.label,
                             seed, steps)
                result = train_and_evaluate(settings, train_examples, eval_examples)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                write_json_atomic(path, result, indent=1)
            results.append(result)
            on_run(result)
    return results


def _previous_run(path: str) -> Optional[Dict]:
    """A finished run's file, or None (missing, or unreadable: it is then run again)."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        logging.warning("%s: unreadable (%s); running it again", path, error)
        return None
