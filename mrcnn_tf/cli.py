"""`mrcnn-tf` command line (absl): mrcnn-tf SUBCOMMAND [--flags].

Subcommands:
  demo             train shapes_tiny on synthetic shapes, evaluate, draw, save
  make-tfrecords   stream a COCO-format dataset into sharded TFRecords
  evaluate         COCO metrics of a saved model on a COCO-format dataset
  export           SavedModel for TF Serving, or a builtin-ops TFLite file
  serve-client     send images to TF Serving (REST or gRPC), print and draw the detections

A user error (bad flag value, missing file, malformed input) ends with one line on stderr and
exit code 2, not a traceback.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
# demo
flags.DEFINE_string("out", None, "demo: output folder (default runs/demo); make-tfrecords: "
                    "output prefix PATH/NAME of the shards; export: the model folder "
                    "(saved_model, versions go inside) or the .tflite file; serve-client: "
                    "folder for overlay PNGs.")
flags.DEFINE_integer("steps", None, "demo: training steps (default: the config's total_steps).")
flags.DEFINE_integer("train_images", 2000, "demo: distinct synthetic training images.")
flags.DEFINE_integer("eval_images", 200, "demo: held-out synthetic images for COCO evaluation.")
flags.DEFINE_integer("batch_size", None, "demo: images per step (default: the config's).")
flags.DEFINE_integer("seed", 0, "demo: random seed.")
# COCO-format data
flags.DEFINE_string("annotations", None, "COCO-format annotations JSON file.")
flags.DEFINE_string("images", None, "Folder the annotations' file_name entries are under.")
flags.DEFINE_list("categories", None, "Use only these category names (comma-separated).")
flags.DEFINE_boolean("strict", False, "Stop at the first bad image or annotation instead of "
                     "skipping it with a warning.")
flags.DEFINE_boolean("drop_empty_images", False, "Drop images without annotations.")
flags.DEFINE_integer("shards", 8, "make-tfrecords: number of shards.")
# evaluate, export
flags.DEFINE_string("weights", None, "evaluate, export: a model saved as .keras.")
flags.DEFINE_enum("format", "saved_model", ["saved_model", "tflite"], "export: artifact kind.")
flags.DEFINE_boolean("full_image_masks", False, "export saved_model: full-image masks "
                     "[B, N, H, W] instead of 28x28 box-relative ones.")
flags.DEFINE_enum("quantization", "float32", ["float32", "float16", "int8_dynamic"],
                  "export tflite: weight type.")
flags.DEFINE_string("results", None, "evaluate: also write the COCO results JSON here.")

# serve-client
flags.DEFINE_string("url", "http://localhost:8501", "serve-client: TF Serving REST URL, or the "
                    "gRPC target host:port with --protocol=grpc.")
flags.DEFINE_string("model_name", "mrcnn", "serve-client: the served model's name.")
flags.DEFINE_enum("protocol", "rest", ["rest", "grpc"], "serve-client: how to call the server.")
flags.DEFINE_list("inputs", None, "serve-client: image files, folders or globs.")
flags.DEFINE_string("label_map", None, "serve-client: the export's assets/label_map.json, for "
                    "class names.")
flags.DEFINE_float("score_threshold", 0.5, "serve-client: detections below are not shown.")

USAGE = """usage: mrcnn-tf SUBCOMMAND [flags]   (mrcnn-tf SUBCOMMAND --helpfull lists every flag)
  demo            [--out runs/demo] [--steps N] [--batch_size N] [--train_images N] ...
  make-tfrecords  --annotations FILE --images DIR --out PREFIX [--shards N] [--strict]
  evaluate        --annotations FILE --images DIR --weights MODEL.keras [--results FILE]
  export          --weights MODEL.keras --out exports/NAME [--format saved_model|tflite] ...
  serve-client    --inputs IMAGES [--url http://localhost:8501] [--model_name mrcnn] [--out DIR]"""


class UsageError(ValueError):
    """A missing or wrong flag."""


def _require(*names):
    missing = [f"--{n}" for n in names if getattr(FLAGS, n) is None]
    if missing:
        raise UsageError(f"missing {', '.join(missing)}")


def _coco_dataset():
    from mrcnn_tf.data.coco import CocoDataset  # noqa: PLC0415 (loads TensorFlow)
    _require("annotations", "images")
    return CocoDataset(FLAGS.annotations, FLAGS.images, category_names=FLAGS.categories,
                       keep_empty_images=not FLAGS.drop_empty_images, strict=FLAGS.strict)


def _demo():
    from mrcnn_tf import demo  # noqa: PLC0415
    demo.run(FLAGS.out or "runs/demo", steps=FLAGS.steps, train_images=FLAGS.train_images,
             eval_images=FLAGS.eval_images, batch_size=FLAGS.batch_size, seed=FLAGS.seed)


def _make_tfrecords():
    from mrcnn_tf.data import tfrecords  # noqa: PLC0415
    _require("annotations", "images", "out")
    if FLAGS.shards < 1:
        raise UsageError(f"--shards={FLAGS.shards}: expected an integer >= 1")
    dataset = _coco_dataset()
    tfrecords.make_tfrecords(dataset, FLAGS.out, FLAGS.shards)
    print(dataset.report())


def _evaluate():
    from mrcnn_tf.evaluation import evaluator  # noqa: PLC0415
    _require("annotations", "images", "weights")
    model = _load_model()
    dataset = _coco_dataset()
    unknown = sorted(set(model.category_ids) - set(dataset.label_map.dataset_ids))
    if unknown:
        raise UsageError(
            f"--weights={FLAGS.weights}: the model's category ids {unknown} are not in "
            f"{FLAGS.annotations} (its ids: {list(dataset.label_map.dataset_ids)})")
    # Results use the model's own label map: its class k is dataset category
    # model.category_ids[k - 1], whatever order the annotation file lists categories in.
    evaluator.evaluate_model(model, dataset, model.label_map, coco_gt=dataset.coco,
                             results_path=FLAGS.results)
    print(dataset.report())


def _load_model():
    import keras  # noqa: PLC0415

    from mrcnn_tf.modeling import mask_rcnn  # noqa: PLC0415,F401 (registers MaskRCNN)
    _require("weights")
    if not os.path.isfile(FLAGS.weights):
        raise UsageError(f"--weights={FLAGS.weights}: no such file (expected a .keras model)")
    return keras.models.load_model(FLAGS.weights)


def _export():
    _require("weights", "out")
    model = _load_model()
    if FLAGS.format == "saved_model":
        from mrcnn_tf.export.saved_model import export_saved_model  # noqa: PLC0415
        path = export_saved_model(model, FLAGS.out, full_image_masks=FLAGS.full_image_masks)
        print(f"SavedModel written to {path}")
    else:
        from mrcnn_tf.export.tflite import export_tflite  # noqa: PLC0415
        info = export_tflite(model, FLAGS.out, quantization=FLAGS.quantization)
        print(f"TFLite ({FLAGS.quantization}) written to {info['path']}: "
              f"{info['size_bytes'] / 1e6:.2f} MB")


def _expand_inputs(patterns):
    """Files, folders (their images) and globs -> sorted list of image paths."""
    import glob  # noqa: PLC0415
    paths = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            paths += [os.path.join(pattern, name) for name in sorted(os.listdir(pattern))
                      if name.lower().endswith((".jpg", ".jpeg", ".png", ".bmp"))]
        else:
            matched = sorted(glob.glob(pattern))
            if not matched:
                raise UsageError(f"--inputs: {pattern!r} matches no file")
            paths += matched
    return paths


def _serve_client():
    import json  # noqa: PLC0415

    from mrcnn_tf import serving_client  # noqa: PLC0415
    _require("inputs")
    names = None
    if FLAGS.label_map:
        with open(FLAGS.label_map) as f:
            names = {int(c["dataset_id"]): c["name"] for c in json.load(f)["categories"]}
    serving_client.run_client(FLAGS.url, FLAGS.model_name, _expand_inputs(FLAGS.inputs),
                              protocol=FLAGS.protocol, out_dir=FLAGS.out,
                              score_threshold=FLAGS.score_threshold, label_map=names)


COMMANDS = {"demo": _demo, "make-tfrecords": _make_tfrecords, "evaluate": _evaluate,
            "export": _export, "serve-client": _serve_client}


def main(argv):
    if len(argv) != 2 or argv[1] not in COMMANDS:
        extra = f"unknown subcommand {argv[1]!r}; " if len(argv) > 1 else ""
        print(f"mrcnn-tf: {extra}expected one of {sorted(COMMANDS)}\n{USAGE}", file=sys.stderr)
        sys.exit(2)
    try:
        COMMANDS[argv[1]]()
    except (ValueError, OSError) as error:
        print(f"mrcnn-tf {argv[1]}: {error}", file=sys.stderr)
        sys.exit(2)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
