"""`train`: a whole training run in a run folder that survives being killed.

The run folder (`run_dir`):
  config.json, label_map.json, run.json   what was trained: config, classes, versions, schedule
  backup/                                  the resumable state (weights, optimizer, epoch)
  checkpoints/epoch-NNNN.keras             the model after each epoch, the last N kept
  best.keras, best.json                    the model with the best mask AP (segm_AP; without
                                           masks keypoints_AP, else bbox_AP: best_metric)
  model.keras                              the final model
  tensorboard/                             losses, learning rate, COCO APs, prediction images
  metrics.json                             the final evaluation and the per-epoch history

A config that trains frozen random layers is refused before anything is written
(`training.preflight`), and a run whose loss goes non-finite or explodes stops with one line
(`training.loss_guard`) before that epoch's backup, keeping the last good one.

Running the same command again after a kill (SIGTERM, SIGKILL, a lost machine) resumes after
the last completed epoch and ends with the same weights as an unbroken run: the input stream
restarts at the right element (training/input.py), sampling draws from per-image seeds, and
TensorFlow's ops run deterministically.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from typing import Any, Optional, Sequence

import keras
import tensorflow as tf
from absl import logging

import mrcnn_tf
from mrcnn_tf import failpoints
from mrcnn_tf.config import Config
from mrcnn_tf.evaluation.coco_eval import LabelMap
from mrcnn_tf.evaluation.evaluator import COCOEvalCallback, best_metric
from mrcnn_tf.io_utils import check_writable_folder, read_json_or_warn, write_json_atomic
from mrcnn_tf.training import checkpoints, device_plan, distribute, precision, preflight
from mrcnn_tf.training import input as training_input
from mrcnn_tf.training.loss_guard import LossGuard
from mrcnn_tf.modeling.weights import load_weights_into


@dataclasses.dataclass
class TrainOptions:
    """How to train (the `mrcnn-tf train` flags)."""

    run_dir: str
    epochs: int
    steps_per_epoch: int
    batch_size: int  # global: images per step over all replicas
    seed: int = 0
    strategy: str = "default"
    tpu: Optional[str] = None
    mixed_precision: str = "float32"
    jit_compile: bool = False
    deterministic: bool = True
    eval_every: int = 1
    keep_checkpoints: int = 3
    init_weights: Optional[str] = None
    init_new_classes: bool = False  # fine-tune init_weights on other classes (fresh heads)
    tensorboard_images: int = 4
    verbose: int = 1

    def check(self):
        for name in ("epochs", "steps_per_epoch", "batch_size", "eval_every",
                     "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name}={getattr(self, name)}: expected an integer >= 1")
        if self.tensorboard_images < 0:
            raise ValueError(f"--tensorboard_images={self.tensorboard_images}: expected >= 0")

    def schedule(self) -> dict:
        """The options a resumed run must share with the run it resumes."""
        return {"epochs": self.epochs, "steps_per_epoch": self.steps_per_epoch,
                "batch_size": self.batch_size, "seed": self.seed,
                "mixed_precision": self.mixed_precision, "jit_compile": self.jit_compile}


def prepare_run_folder(run_dir: str, config: Config, label_map: LabelMap,
                       options: TrainOptions,
                       plan: Optional[device_plan.DevicePlan] = None) -> None:
    """Creates or re-opens the run folder; refuses one that holds another run.

    Writes config.json, label_map.json and run.json (package, TensorFlow and Keras versions,
    the command, the schedule, the device plan) atomically.
    """
    check_writable_folder(run_dir, "--run_dir")
    config_path = os.path.join(run_dir, "config.json")
    run_path = os.path.join(run_dir, "run.json")
    rewritten = "it is written again from this command"
    previous = read_json_or_warn(config_path, Config.from_dict, rewritten)
    if previous is not None:
        changed = sorted(k for k, v in previous.to_dict().items() if config.to_dict()[k] != v)
        if changed:
            raise ValueError(f"--run_dir={run_dir} holds a run with another config (fields "
                             f"{', '.join(changed)} differ); resume it with the same --config "
                             "and --override flags, or use a new --run_dir")
        before = read_json_or_warn(run_path, lambda d: dict(d.get("schedule", {})), rewritten)
        if before is not None:
            different = sorted(k for k, v in options.schedule().items()
                               if k in before and before[k] != v)
            if different:
                raise ValueError(
                    f"--run_dir={run_dir} holds a run with another schedule ("
                    + ", ".join(f"--{k}={before[k]} there, {options.schedule()[k]} now"
                                for k in different)
                    + "); resume with the same flags, or use a new --run_dir")
    write_json_atomic(config_path, config.to_dict(), indent=2)
    write_json_atomic(os.path.join(run_dir, "label_map.json"), label_map.to_dict(), indent=2)
    write_json_atomic(run_path, {
        "mrcnn_tf": mrcnn_tf.__version__, "tensorflow": tf.__version__,
        "keras": keras.__version__, "python": platform.python_version(),
        "command": sys.argv, "schedule": options.schedule(),
        "options": dataclasses.asdict(options),
        "device_plan": plan.to_dict() if plan is not None else None,
    }, indent=2)


class SkippedSamplesReport(keras.callbacks.Callback):
    """Logs after each epoch and at the end what the datasets skipped (bad images or
    annotations), so a long run's data problems are visible without reading every warning."""

    def __init__(self, datasets: Sequence[Any]):
        super().__init__()
        self.datasets = [d for d in datasets if hasattr(d, "report")]

    def on_epoch_end(self, epoch, logs=None):
        for dataset in self.datasets:
            logging.info("epoch %d data: %s", epoch + 1, dataset.report())

    def on_train_end(self, logs=None):
        for dataset in self.datasets:
            print(dataset.report())


class _Moment(keras.callbacks.Callback):
    """Marks `failpoints` moments at its place in the callback order: `batch` after each
    training step, `epoch` at each epoch end."""

    def __init__(self, batch: Optional[str] = None, epoch: Optional[str] = None):
        super().__init__()
        self.batch, self.epoch = batch, epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.batch:
            failpoints.reached(self.batch)

    def on_epoch_end(self, epoch, logs=None):
        if self.epoch:
            failpoints.reached(self.epoch)


def _compile(model, config: Config, options: TrainOptions, plan: device_plan.DevicePlan):
    from mrcnn_tf.modeling.optimizer import make_optimizer  # noqa: PLC0415
    optimizer = make_optimizer(config, batch_size=options.batch_size)
    optimizer = precision.wrap_optimizer(optimizer, plan.precision)
    model.compile(optimizer=optimizer, jit_compile=plan.jit_compile)


def train(config: Config, source, label_map: LabelMap, options: TrainOptions,
          val_examples=None, val_coco_gt=None, datasets_to_report: Sequence[Any] = (),
          callbacks: Sequence[keras.callbacks.Callback] = ()) -> dict:
    """Trains `config` on `source` in `options.run_dir`, resuming a killed run.

    Args:
      config: the model config.
      source: a `training.input.IndexedSource` or `TFRecordSource`.
      label_map: the classes 1..K (names and dataset ids), saved with the model.
      options: the schedule and run settings.
      val_examples, val_coco_gt: held-out examples (a CocoDataset or a list of example
        dicts) and optionally their pycocotools ground truth; evaluated every
        `options.eval_every` epochs (box, mask and keypoint AP as the model predicts them;
        best.keras follows `evaluator.best_metric(config)`: segm_AP with masks).
      datasets_to_report: datasets with a `report()` (CocoDataset) whose skipped samples are
        logged each epoch.
      callbacks: extra Keras callbacks (run before the backup is written each epoch).
    Returns:
      dict: epochs run, the last evaluation's metrics and the paths written.
    """
    options.check()
    if len(label_map.names) != config.num_classes:
        raise ValueError(f"the dataset has {len(label_map.names)} classes but the config's "
                         f"num_classes is {config.num_classes}; pass --override "
                         f"num_classes={len(label_map.names)}")
    # Before the run folder is touched: frozen random layers cannot learn.
    preflight.check_trainable(config, options.init_weights,
                              resumed=checkpoints.has_saved_state(options.run_dir))
    keras.utils.set_random_seed(options.seed)
    # Before anything is built: which RoIAlign, op determinism, XLA and dtype policy this
    # machine's devices allow (a combination that cannot work ends here, naming the flags).
    plan = device_plan.plan_run(options.strategy, options.deterministic, options.jit_compile,
                                options.mixed_precision, config)
    logging.info(plan.describe())
    for note in plan.notes:
        logging.info("device plan: %s", note)
    strategy = distribute.make_strategy(options.strategy, options.tpu)
    chief = distribute.is_chief(strategy)
    run_dir = options.run_dir
    backup_dir = os.path.join(run_dir, "backup")
    if not chief:
        backup_dir = os.path.join(backup_dir, distribute.worker_name(strategy))
    if chief:
        prepare_run_folder(run_dir, config, label_map, options, plan)
        if checkpoints.remove_unfinished(run_dir):
            logging.info("removed files a kill left half-written in %s", run_dir)
    # After the run folder recorded the config as given: the plan's variant is derived.
    config = plan.model_config(config)

    from mrcnn_tf.modeling.mask_rcnn import MaskRCNN  # noqa: PLC0415
    with strategy.scope():
        model = MaskRCNN(config, class_names=list(label_map.names),
                         category_ids=list(label_map.dataset_ids))
        model.build()
        _compile(model, config, options, plan)
        # The newest intact state (backup, else the newest readable checkpoint), with a
        # warning naming each unreadable file: a damaged backup never restarts a run silently
        # from 0. In the scope: the optimizer's slots it builds are the strategy's variables.
        initial_epoch = checkpoints.restore_newest_intact(model, backup_dir,
                                                          os.path.join(run_dir, "checkpoints"))
        if options.init_weights and initial_epoch == 0:
            load_weights_into(model, options.init_weights, "--init_weights",
                              new_classes=options.init_new_classes)

    start_step = initial_epoch * options.steps_per_epoch
    training_input.log_stream(source, options.batch_size, start_step)

    def dataset_fn(input_context=None):
        return training_input.training_stream(source, config, options.batch_size,
                                              options.seed, start_step, input_context)

    if strategy.num_replicas_in_sync > 1 or not chief:
        dataset = strategy.distribute_datasets_from_function(dataset_fn)
    else:
        dataset = dataset_fn()

    run_callbacks = list(callbacks)
    evaluator = None
    if chief:
        tensorboard_dir = os.path.join(run_dir, "tensorboard")
        if val_examples is not None:
            evaluator = COCOEvalCallback(val_examples, label_map, coco_gt=val_coco_gt,
                                         every_n_epochs=options.eval_every,
                                         log_dir=tensorboard_dir,
                                         image_summaries=options.tensorboard_images)
            run_callbacks += [evaluator,
                              checkpoints.BestCheckpoint(os.path.join(run_dir, "best.keras"),
                                                         monitor=best_metric(config))]
        run_callbacks += [
            checkpoints.KeepLastCheckpoints(os.path.join(run_dir, "checkpoints"),
                                            options.keep_checkpoints),
            keras.callbacks.TensorBoard(tensorboard_dir,
                                        update_freq=min(100, options.steps_per_epoch)),
            _Moment(batch="train_step", epoch="tensorboard_written"),
        ]
    reported = list(datasets_to_report)
    problems = getattr(source, "problems", None)
    if problems and all(getattr(d, "_problems", None) is not problems for d in reported):
        reported.append(source)  # its images cut to max_instances, if no dataset tells them
    run_callbacks.append(SkippedSamplesReport(reported))
    # A non-finite or exploding loss stops the run mid-epoch, so no backup keeps that state.
    run_callbacks.append(LossGuard(run_dir if chief else None, options.steps_per_epoch,
                                   check_finite=plan.precision != "mixed_float16"))
    # Last, so an epoch counts as done only once its evaluation and checkpoints are written.
    run_callbacks.append(checkpoints.AtomicBackupAndRestore(backup_dir, restore=False))
    run_callbacks.append(_Moment(epoch="epoch_backed_up"))

    logging.info("training %s: %d epochs of %d steps, %d images per step on %d replica(s)%s",
                 config.name, options.epochs, options.steps_per_epoch, options.batch_size,
                 strategy.num_replicas_in_sync,
                 f", resuming after epoch {initial_epoch}" if initial_epoch else "")
    start = time.time()
    history = model.fit(dataset, epochs=options.epochs, steps_per_epoch=options.steps_per_epoch,
                        callbacks=run_callbacks, verbose=options.verbose, shuffle=False,
                        initial_epoch=initial_epoch)
    seconds = time.time() - start

    summary = {"epochs": options.epochs, "resumed_after_epoch": initial_epoch,
               "train_seconds": round(seconds, 1),
               "history": {k: [float(x) for x in v] for k, v in history.history.items()}}
    if chief:
        model_path = os.path.join(run_dir, "model.keras")
        checkpoints.save_model_atomic(model, model_path, "model_written")
        summary["model"] = model_path
        if evaluator is not None and evaluator.history:
            summary["evaluations"] = evaluator.history
        write_json_atomic(os.path.join(run_dir, "metrics.json"), summary, indent=2)
    summary["model_object"] = model
    return summary

