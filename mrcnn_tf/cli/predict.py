"""`mrcnn-tf predict`: overlay images and a COCO-results JSON for image files, folders, globs."""

import os

from absl import flags

from mrcnn_tf.cli import common

FLAGS = flags.FLAGS

# Keypoint scores are heatmap peak probabilities, small numbers: see
# visualize.KEYPOINT_SCORE_THRESHOLD (kept equal here without importing OpenCV at start-up).
flags.DEFINE_float("keypoint_threshold", 0.05, "predict: keypoints scoring below this are not "
                   "drawn (keypoint models only).")

SUMMARY = "draw detections on images (files, folders, globs) and write COCO results JSON"
USAGE = ("--weights MODEL.keras|RUN_DIR --inputs IMAGES [--out predictions] [--score_threshold]"
         " [--keypoint_threshold] [--batch_size N] [--precision float32|bfloat16|auto]")
FLAG_NAMES = common.MODEL_FLAGS + ("inputs", "out", "score_threshold", "keypoint_threshold",
                                   "results", "annotations", "batch_size", "precision")


def main():
    from mrcnn_tf import prediction  # noqa: PLC0415
    common.require("weights", "inputs")
    for name in ("score_threshold", "keypoint_threshold"):
        if not 0 <= FLAGS[name].value <= 1:
            raise common.UsageError(f"--{name}={FLAGS[name].value}: expected a value in [0, 1]")
    batch_size = 1 if FLAGS.batch_size is None else FLAGS.batch_size
    if batch_size < 1:
        raise common.UsageError(f"--batch_size={batch_size}: expected an integer >= 1")
    paths = prediction.expand_inputs(FLAGS.inputs)
    out = FLAGS.out or "predictions"
    common.check_writable(out, "--out")
    model = common.load_model_in_precision()
    image_ids = (prediction.image_ids_from_annotations(FLAGS.annotations)
                 if FLAGS.annotations else None)
    summary = prediction.predict_files(
        model, paths, out, score_threshold=FLAGS.score_threshold,
        results_path=FLAGS.results or os.path.join(out, "results.json"), image_ids=image_ids,
        keypoint_threshold=FLAGS.keypoint_threshold, batch_size=batch_size)
    print(f"{summary['images']} images, {summary['detections']} detections, "
          f"{summary['skipped']} skipped; overlays in {out}, results in "
          f"{summary['results_path']}")
