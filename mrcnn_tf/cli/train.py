"""`mrcnn-tf train`: train a config on a dataset in a run folder that survives a kill.

The data comes from flags or from the experiment file's DATA dict (flags win):
COCO-format JSON + image folder, TFRecords written by `make-tfrecords`, or the synthetic
shapes set. Running the same command again resumes after the last completed epoch.
"""

import math
import os
import sys

from absl import flags

from mrcnn_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "train: the run folder (default runs/CONFIG_NAME); the "
                    "same command with the same folder resumes a killed run.")
flags.DEFINE_string("train_annotations", None, "train: COCO-format training annotations.")
flags.DEFINE_string("train_image_dir", None, "train: folder of the training images.")
flags.DEFINE_string("train_tfrecords", None, "train: TFRecords prefix given to make-tfrecords "
                    "--out (reads PREFIX-*-of-*.tfrecord and PREFIX-label_map.json).")
flags.DEFINE_string("val_annotations", None, "train: COCO-format validation annotations "
                    "(COCO AP after every --eval_every epochs, best.keras by mask AP).")
flags.DEFINE_string("val_image_dir", None, "train: folder of the validation images.")
flags.DEFINE_integer("synthetic_train_images", None, "train: use this many synthetic shapes "
                     "images for training (instead of a dataset); keypoint shapes (houses) "
                     "for a config with their keypoints (shapes_keypoints_tiny).")
flags.DEFINE_integer("synthetic_val_images", None, "train: held-out synthetic images (of the "
                     "same kind) for evaluation.")
flags.DEFINE_integer("epochs", None, "train: epochs (default: enough epochs of "
                     "--steps_per_epoch for the config's total_steps).")
flags.DEFINE_integer("steps_per_epoch", None, "train: steps between checkpoints and "
                     "evaluations (default: a tenth of total_steps, at most 5000).")
flags.DEFINE_integer("eval_every", 1, "train: evaluate every N epochs.")
flags.DEFINE_integer("keep_checkpoints", 3, "train: epoch checkpoints kept (the newest).")
flags.DEFINE_string("init_weights", None, "train: start from these weights (.keras, run "
                    "folder or .weights.h5 of the same architecture).")
flags.DEFINE_boolean("init_new_classes", False, "train: with --init_weights made for other "
                     "classes (e.g. COCO weights, your own dataset): load everything but the "
                     "class-specific output layers (class logits, box deltas, mask predictor; "
                     "the keypoint heatmap layer when the keypoint count differs too), which "
                     "start fresh.")
flags.DEFINE_enum("mixed_precision", "float32", ["float32", "mixed_float16", "mixed_bfloat16"],
                  "train: compute dtype policy (losses, RoIAlign, box decoding and NMS stay "
                  "float32; mixed_float16 adds dynamic loss scaling).")
flags.DEFINE_boolean("jit_compile", False, "train: compile the training step with XLA.")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker", "tpu"],
                  "train: tf.distribute strategy (multi_worker reads TF_CONFIG).")
flags.DEFINE_string("tpu", None, "train: TPU name or address for --strategy=tpu.")
flags.DEFINE_boolean("deterministic", True, "train: deterministic TensorFlow ops, so a resumed "
                     "run equals an unbroken one (turn off for speed on GPUs).")
flags.DEFINE_integer("tensorboard_images", 4, "train: evaluation images drawn with their "
                     "predictions into TensorBoard at each evaluation.")

SUMMARY = "train in a run folder (checkpoints, best model, TensorBoard), resuming after a kill"
USAGE = ("--config PRESET|experiments/X.py [--override k=v] [--run_dir DIR] "
         "[--train_annotations F --train_image_dir D | --train_tfrecords PREFIX]")
DATA_FLAGS = ("train_annotations", "train_image_dir", "train_tfrecords", "val_annotations",
              "val_image_dir", "synthetic_train_images", "synthetic_val_images")
SCHEDULE_FLAGS = ("run_dir", "epochs", "steps_per_epoch", "batch_size", "seed", "eval_every",
                  "keep_checkpoints", "init_weights", "init_new_classes", "mixed_precision",
                  "jit_compile", "strategy", "tpu", "deterministic", "tensorboard_images")
FLAG_NAMES = ("config", "override") + DATA_FLAGS + SCHEDULE_FLAGS + common.COCO_DATA_FLAGS[2:]
# Synthetic shapes: training and evaluation images come from different seeds.
SYNTHETIC_TRAIN_SEED = 0
SYNTHETIC_VAL_SEED = 1000


def _value(name, defaults):
    """A flag's value: given on the command line, else the experiment's, else its default."""
    if FLAGS[name].present or name not in defaults:
        return FLAGS[name].value
    return defaults[name]


def _unknown_defaults(defaults):
    known = set(DATA_FLAGS + SCHEDULE_FLAGS + common.COCO_DATA_FLAGS)
    unknown = sorted(set(defaults) - known)
    if unknown:
        raise common.UsageError(f"--config={FLAGS.config}: DATA/TRAIN name unknown train flags "
                                f"{unknown}; expected some of {sorted(known)}")


def training_data(values, config):
    """(source, label_map, val_examples, val_coco_gt, datasets_to_report) from the flags."""
    from mrcnn_tf.data import tfrecord_reader  # noqa: PLC0415
    from mrcnn_tf.data.synthetic import synthetic_set_for  # noqa: PLC0415
    from mrcnn_tf.evaluation.coco_eval import LabelMap  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from mrcnn_tf.training.input import IndexedSource, TFRecordSource  # noqa: PLC0415
    kinds = [name for name, given in (
        ("--train_annotations", values["train_annotations"]),
        ("--train_tfrecords", values["train_tfrecords"]),
        ("--synthetic_train_images", values["synthetic_train_images"])) if given]
    if len(kinds) != 1:
        raise common.UsageError(
            "expected exactly one training set: --train_annotations with --train_image_dir, "
            "--train_tfrecords, or --synthetic_train_images"
            + (f" (got {', '.join(kinds)})" if kinds else ""))
    report = []
    synthetic_set = None
    if values["synthetic_train_images"] or values["synthetic_val_images"]:
        try:
            synthetic_set = synthetic_set_for(config)
        except ValueError as e:
            raise common.UsageError(str(e)) from None
    if values["synthetic_train_images"]:
        count = values["synthetic_train_images"]
        if count < 1:
            raise common.UsageError(f"--synthetic_train_images={count}: expected >= 1")
        size = config.image_max_size

        def load(position):
            return synthetic_set.generate(position, SYNTHETIC_TRAIN_SEED, size)

        source = IndexedSource(count, load, f"{synthetic_set.name} ({count} images)",
                               synthetic_set.num_keypoints,
                               sizes=np.full((count, 2), size, np.int32))
        label_map = LabelMap.from_names(synthetic_set.class_names)
    elif values["train_tfrecords"]:
        prefix = values["train_tfrecords"]
        source = TFRecordSource(tfrecord_reader.match_files(f"{prefix}-*-of-*.tfrecord"),
                                name=prefix, num_keypoints=config.num_keypoints)
        label_map = tfrecord_reader.read_label_map(prefix)
    else:
        if not values["train_image_dir"]:
            raise common.UsageError("missing --train_image_dir (the folder of "
                                    "--train_annotations' images)")
        dataset = common.coco_dataset(values["train_annotations"], values["train_image_dir"],
                                      ("train_annotations", "train_image_dir"))
        source = IndexedSource.from_coco(dataset)
        label_map = dataset.label_map
        report.append(dataset)

    val_examples, val_gt = None, None
    if values["synthetic_val_images"]:
        val_examples = synthetic_set.make_arrays(values["synthetic_val_images"],
                                                 SYNTHETIC_VAL_SEED, config.image_max_size)
    elif values["val_annotations"]:
        val = common.coco_dataset(values["val_annotations"], values["val_image_dir"],
                                  ("val_annotations", "val_image_dir"))
        if list(val.label_map.dataset_ids) != list(label_map.dataset_ids):
            raise common.UsageError(
                f"--val_annotations={values['val_annotations']}: its categories "
                f"{list(val.label_map.dataset_ids)} differ from the training set's "
                f"{list(label_map.dataset_ids)}")
        val_examples, val_gt = val, val.coco
        report.append(val)
    return source, label_map, val_examples, val_gt, report


def schedule(config, values):
    """(epochs, steps_per_epoch) from the flags and config.total_steps."""
    epochs, steps = values["epochs"], values["steps_per_epoch"]
    total = config.total_steps
    if steps is None:
        steps = (math.ceil(total / epochs) if epochs else
                 min(5000, max(1, math.ceil(total / 10))))
    if epochs is None:
        epochs = max(1, math.ceil(total / steps))
    return epochs, steps


def main():
    from mrcnn_tf.training import trainer  # noqa: PLC0415
    experiment = common.experiment()
    _unknown_defaults(experiment.defaults)
    values = {name: _value(name, experiment.defaults) for name in
              DATA_FLAGS + SCHEDULE_FLAGS + common.COCO_DATA_FLAGS[2:]}
    for name in common.COCO_DATA_FLAGS[2:]:  # read by common.coco_dataset from FLAGS
        FLAGS[name].value = values[name]
    config = experiment.config
    epochs, steps = schedule(config, values)
    run_dir = values["run_dir"] or os.path.join("runs", config.name)
    options = trainer.TrainOptions(
        run_dir=run_dir, epochs=epochs, steps_per_epoch=steps,
        batch_size=values["batch_size"] or config.batch_size, seed=values["seed"],
        strategy=values["strategy"], tpu=values["tpu"],
        mixed_precision=values["mixed_precision"], jit_compile=values["jit_compile"],
        deterministic=values["deterministic"], eval_every=values["eval_every"],
        keep_checkpoints=values["keep_checkpoints"], init_weights=values["init_weights"],
        init_new_classes=values["init_new_classes"],
        tensorboard_images=values["tensorboard_images"])
    options.check()
    source, label_map, val_examples, val_gt, report = training_data(values, config)
    from mrcnn_tf.training.loss_guard import TrainingDiverged  # noqa: PLC0415
    try:
        summary = trainer.train(config, source, label_map, options, val_examples=val_examples,
                                val_coco_gt=val_gt, datasets_to_report=report)
    except TrainingDiverged as error:
        print(f"mrcnn-tf train: {error}", file=sys.stderr)
        sys.exit(1)
    print(f"\nrun folder: {run_dir}")
    for evaluation in summary.get("evaluations", [])[-1:]:
        print("last evaluation: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else
                                              f"{k} {v}" for k, v in evaluation.items()))
