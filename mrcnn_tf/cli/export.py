"""`mrcnn-tf export`: a SavedModel for TF Serving, or a TFLite file with builtin ops only."""

from absl import flags

from mrcnn_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_enum("format", "saved_model", ["saved_model", "tflite"], "export: artifact kind.")
flags.DEFINE_boolean("full_image_masks", False, "export saved_model: full-image masks "
                     "[B, N, H, W] instead of 28x28 box-relative ones.")
flags.DEFINE_enum("quantization", "float32", ["float32", "float16", "int8_dynamic"],
                  "export tflite: weight type.")

SUMMARY = "SavedModel for TF Serving, or a builtin-ops TFLite file"
USAGE = ("--weights MODEL.keras|RUN_DIR --out exports/NAME [--format saved_model|tflite] "
         "[--precision float32|bfloat16|auto]")
FLAG_NAMES = common.MODEL_FLAGS + ("out", "format", "full_image_masks", "quantization",
                                   "precision")


def main():
    common.require("weights", "out")
    if FLAGS.format == "tflite" and FLAGS.precision != "float32":
        # TFLite's CPU kernels have no bfloat16 arithmetic; its reduced precisions are
        # quantizations of a float32 graph.
        raise common.UsageError(f"--precision={FLAGS.precision}: TFLite computes in float32; "
                                "use --quantization float16 or int8_dynamic for a smaller "
                                "or faster TFLite file")
    model = common.load_model_in_precision()
    if FLAGS.format == "saved_model":
        from mrcnn_tf.export.saved_model import export_saved_model  # noqa: PLC0415
        path = export_saved_model(model, FLAGS.out, full_image_masks=FLAGS.full_image_masks)
        print(f"SavedModel written to {path}")
    else:
        from mrcnn_tf.export.tflite import export_tflite  # noqa: PLC0415
        info = export_tflite(model, FLAGS.out, quantization=FLAGS.quantization)
        print(f"TFLite ({FLAGS.quantization}) written to {info['path']}: "
              f"{info['size_bytes'] / 1e6:.2f} MB")
