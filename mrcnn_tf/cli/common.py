"""Flags and helpers shared by several subcommands.

Flags are absl flags, global to the process; each subcommand module lists the ones it reads
in `FLAG_NAMES`, which `mrcnn-tf SUBCOMMAND --help` prints with their defaults.
"""

import os

from absl import flags

FLAGS = flags.FLAGS

flags.DEFINE_string("config", None, "A preset name (coco_r50_fpn, shapes_tiny, ...) or an "
                    "experiments/*.py file defining CONFIG.")
flags.DEFINE_multi_string("override", [], "key=value for any config field; repeat the flag "
                          "for several (e.g. --override num_classes=5 --override "
                          "train_min_sizes=640,800).")
flags.DEFINE_string("weights", None, "A .keras model, a run folder (its best.keras, else "
                    "model.keras), a preset directory (MaskRCNN.save_to_preset, export "
                    "--format preset) or a .weights.h5 file (with --config).")
flags.DEFINE_string("annotations", None, "COCO-format annotations JSON file.")
flags.DEFINE_string("images", None, "Folder the annotations' file_name entries are under.")
flags.DEFINE_list("categories", None, "Use only these category names (comma-separated).")
flags.DEFINE_boolean("strict", False, "Stop at the first bad image or annotation instead of "
                     "skipping it with a warning.")
flags.DEFINE_boolean("drop_empty_images", False, "Drop images without annotations.")
flags.DEFINE_string("out", None, "Output folder or file (see the subcommand).")
flags.DEFINE_float("score_threshold", 0.5, "Detections below this score are not drawn or "
                   "written.")
flags.DEFINE_integer("seed", 0, "Random seed (data order, augmentation, initialization).")
flags.DEFINE_integer("batch_size", None, "train: images per step over all replicas (default: "
                     "the config's batch_size; the learning rate scales linearly with it). "
                     "predict: images (or video frames) run together, of one padded size each "
                     "(default 1).")
flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16", "auto"],
                  "predict, evaluate, export saved_model: what the convolutions and dense layers "
                  "compute in (weights stay float32). bfloat16 is about 2x faster on a CPU "
                  "with bfloat16 instructions (AMX or AVX512_BF16) for a ResNet model and "
                  "agrees closely with float32 (README: Precision); auto picks it for a "
                  "ResNet model on such a CPU without a GPU, else float32.")
flags.DEFINE_list("inputs", None, "Image files, folders or globs (comma-separated). predict "
                  "also takes videos (.mp4 .avi .mov .mkv .m4v .webm, any case), named or "
                  "globbed (clips/*.mp4), alone or mixed with images; a folder gives its images "
                  "only.")
flags.DEFINE_string("results", None, "Also write the COCO results JSON here.")
# Synthetic training runs (demo, ablate).
flags.DEFINE_integer("steps", None, "demo, ablate: training steps (default: the config's "
                     "total_steps).")
flags.DEFINE_integer("train_images", None, "demo, ablate: distinct synthetic training images "
                     "(default: demo 2000, ablate 1000).")
flags.DEFINE_integer("eval_images", None, "demo, ablate: held-out synthetic images for COCO "
                     "evaluation (default: 200).")

# Positional arguments after the subcommand, for subcommands that declare POSITIONAL_ARGS.
POSITIONAL = []

COCO_DATA_FLAGS = ("annotations", "images", "categories", "strict", "drop_empty_images")
MODEL_FLAGS = ("weights", "config", "override")


def value_or(value, default):
    """A flag's value, or `default` when the flag was not given (None)."""
    return default if value is None else value


class UsageError(ValueError):
    """A missing or wrong flag."""


def require(*names):
    """Raises UsageError listing the flags among `names` that were not given."""
    missing = [f"--{n}" for n in names if getattr(FLAGS, n) is None]
    if missing:
        raise UsageError(f"missing {', '.join(missing)}")


def coco_dataset(annotations=None, images=None, flag_names=("annotations", "images")):
    """The CocoDataset named by the data flags (--annotations/--images unless given)."""
    from mrcnn_tf.data.coco import CocoDataset  # noqa: PLC0415 (loads TensorFlow)
    annotations = annotations if annotations is not None else FLAGS[flag_names[0]].value
    images = images if images is not None else FLAGS[flag_names[1]].value
    missing = [f"--{n}" for n, v in zip(flag_names, (annotations, images)) if v is None]
    if missing:
        raise UsageError(f"missing {', '.join(missing)}")
    return CocoDataset(annotations, images, category_names=FLAGS.categories,
                       keep_empty_images=not FLAGS.drop_empty_images, strict=FLAGS.strict)


def experiment():
    """The `training.experiment.Experiment` of --config and --override."""
    from mrcnn_tf.training.experiment import load_experiment  # noqa: PLC0415
    require("config")
    return load_experiment(FLAGS.config, FLAGS.override)


def load_model():
    """The model of --weights: a .keras file, a run folder or preset directory, or --config +
    a .weights.h5."""
    from mrcnn_tf.modeling import loading, preset_files  # noqa: PLC0415
    from mrcnn_tf.modeling import weights as weight_io  # noqa: PLC0415
    require("weights")
    if os.path.isdir(FLAGS.weights) and preset_files.has_preset_weights(FLAGS.weights):
        path = FLAGS.weights
        try:
            model = loading.load(path)
        except ValueError as error:
            raise UsageError(f"--weights: {error}") from None
    else:
        path = weight_io.resolve_model_path(FLAGS.weights)
        model = weight_io.load_model(path) if path.endswith(".keras") else None
    if model is not None:
        if FLAGS.config:
            wanted = experiment().config
            differences = weight_io.architecture_differences(model.config, wanted)
            if differences:
                raise UsageError(f"--weights={path}: made for another config than --config="
                                 f"{FLAGS.config}: {'; '.join(differences)}")
        return model
    if not FLAGS.config:
        raise UsageError(f"--weights={path}: a .weights.h5 file needs --config (the model it "
                         "was trained with)")
    from mrcnn_tf.modeling.mask_rcnn import MaskRCNN  # noqa: PLC0415
    model = MaskRCNN(experiment().config)
    model.build()
    weight_io.load_weights_into(model, path)
    return model


def load_model_in_precision():
    """The model of --weights (`load_model`), computing in --precision's dtype, its frozen
    BatchNorms folded into the convs (`precision.inference_model`)."""
    from mrcnn_tf.training import precision  # noqa: PLC0415
    model = load_model()
    policy = precision.inference_policy(FLAGS.precision, model.config)
    reason = precision.unsupported_reason(policy)
    if reason:
        raise UsageError(f"--precision={FLAGS.precision}: {reason}")
    model = precision.inference_model(model, policy)
    print(f"precision: {policy} (--precision={FLAGS.precision})")
    return model


def check_writable(path, flag):
    """UsageError naming `flag` unless folder `path` exists (or is made) and is writable."""
    from mrcnn_tf.io_utils import check_writable_folder  # noqa: PLC0415
    try:
        return check_writable_folder(path, flag)
    except ValueError as error:
        raise UsageError(str(error)) from None
