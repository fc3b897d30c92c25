"""`mrcnn-tf export`: a SavedModel for TF Serving, a TFLite file with builtin ops only, or a
preset directory for Python (`MaskRCNN.from_preset`, `mrcnn_tf.load`)."""

from absl import flags

from mrcnn_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_enum("format", "saved_model", ["saved_model", "tflite", "preset"],
                  "export: artifact kind (preset: config.json, label_map.json and "
                  "model.weights.h5, for MaskRCNN.from_preset and mrcnn_tf.load).")
flags.DEFINE_boolean("full_image_masks", False, "export saved_model: full-image masks "
                     "[B, N, H, W] instead of 28x28 box-relative ones.")
flags.DEFINE_enum("quantization", "float32", ["float32", "float16", "int8_dynamic", "int8"],
                  "export tflite: float16 or int8_dynamic weights (float activations), or "
                  "int8: full integer, activations too, calibrated on --calibration images.")
flags.DEFINE_list("calibration", None, "export tflite --quantization int8: images like those "
                  "the model will see (files, folders, globs), to set the int8 ranges.")
flags.DEFINE_integer("calibration_images", 100, "export tflite --quantization int8: use at "
                     "most this many of the --calibration images, evenly spaced.")

SUMMARY = "SavedModel for TF Serving, a builtin-ops TFLite file, or a preset directory"
USAGE = ("--weights MODEL.keras|RUN_DIR --out exports/NAME "
         "[--format saved_model|tflite|preset] "
         "[--precision float32|bfloat16|auto] [--quantization int8 --calibration IMAGES]")
FLAG_NAMES = common.MODEL_FLAGS + ("out", "format", "full_image_masks", "quantization",
                                   "calibration", "calibration_images", "precision")


def main():
    common.require("weights", "out")
    if FLAGS.format == "tflite" and FLAGS.precision != "float32":
        # TFLite's CPU kernels have no bfloat16 arithmetic; its reduced precisions are
        # quantizations of a float32 graph.
        raise common.UsageError(f"--precision={FLAGS.precision}: TFLite computes in float32; "
                                "use --quantization float16 or int8_dynamic for a smaller "
                                "or faster TFLite file")
    if FLAGS.format == "preset":
        if FLAGS.precision != "float32":
            raise common.UsageError(f"--precision={FLAGS.precision}: a preset holds the "
                                    "float32 weights; the precision is chosen where it is run")
        path = common.load_model().save_to_preset(FLAGS.out)
        print(f"preset written to {path} (MaskRCNN.from_preset / mrcnn_tf.load)")
        return
    calibration = _calibration_paths()
    model = common.load_model_in_precision()
    if FLAGS.format == "saved_model":
        from mrcnn_tf.export.saved_model import export_saved_model  # noqa: PLC0415
        path = export_saved_model(model, FLAGS.out, full_image_masks=FLAGS.full_image_masks)
        print(f"SavedModel written to {path}")
    else:
        from mrcnn_tf.export.tflite import export_tflite  # noqa: PLC0415
        images = None if calibration is None else _read_calibration_images(calibration)
        info = export_tflite(model, FLAGS.out, quantization=FLAGS.quantization,
                             calibration_images=images)
        print(f"TFLite ({FLAGS.quantization}) written to {info['path']}: "
              f"{info['size_bytes'] / 1e6:.2f} MB")


def _calibration_paths():
    """--calibration's image paths (at most --calibration_images, evenly spaced over the
    sorted list) for --quantization int8; None otherwise. UsageError for a missing or
    misplaced flag, or a pattern that names no image."""
    int8 = FLAGS.format == "tflite" and FLAGS.quantization == "int8"
    if not int8:
        if FLAGS.calibration:
            raise common.UsageError("--calibration: only --format tflite --quantization int8 "
                                    "is calibrated")
        return None
    if not FLAGS.calibration:
        raise common.UsageError("--quantization int8: needs --calibration IMAGES (about 100 "
                                "images like those the model will see) to set the int8 ranges")
    if FLAGS.calibration_images < 1:
        raise common.UsageError(f"--calibration_images={FLAGS.calibration_images}: expected "
                                "an integer >= 1")
    from mrcnn_tf import prediction  # noqa: PLC0415
    try:
        paths = prediction.expand_inputs(FLAGS.calibration)
    except ValueError as error:
        raise common.UsageError(f"--calibration: {error}") from None
    step = max(1, len(paths) / FLAGS.calibration_images)
    return [paths[int(i * step)] for i in range(min(len(paths), FLAGS.calibration_images))]


def _read_calibration_images(paths):
    """Yields each readable image of `paths` (uint8 [H, W, 3]); an unreadable one is skipped
    with a warning naming it."""
    from absl import logging  # noqa: PLC0415

    from mrcnn_tf.data.images import ImageReadError, read_image  # noqa: PLC0415
    for path in paths:
        try:
            yield read_image(path)
        except ImageReadError as error:
            logging.warning("--calibration: skipped %s", error)
