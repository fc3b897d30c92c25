"""`mrcnn-tf predict`: overlay images and a COCO-results JSON for image files, folders, globs."""

import os

from absl import flags

from mrcnn_tf.cli import common

FLAGS = flags.FLAGS

SUMMARY = "draw detections on images (files, folders, globs) and write COCO results JSON"
USAGE = "--weights MODEL.keras|RUN_DIR --inputs IMAGES [--out predictions] [--score_threshold]"
FLAG_NAMES = common.MODEL_FLAGS + ("inputs", "out", "score_threshold", "results",
                                   "annotations")


def main():
    from mrcnn_tf import prediction  # noqa: PLC0415
    common.require("weights", "inputs")
    if not 0 <= FLAGS.score_threshold <= 1:
        raise common.UsageError(f"--score_threshold={FLAGS.score_threshold}: expected a "
                                "value in [0, 1]")
    paths = prediction.expand_inputs(FLAGS.inputs)
    out = FLAGS.out or "predictions"
    common.check_writable(out, "--out")
    model = common.load_model()
    image_ids = (prediction.image_ids_from_annotations(FLAGS.annotations)
                 if FLAGS.annotations else None)
    summary = prediction.predict_files(
        model, paths, out, score_threshold=FLAGS.score_threshold,
        results_path=FLAGS.results or os.path.join(out, "results.json"), image_ids=image_ids)
    print(f"{summary['images']} images, {summary['detections']} detections, "
          f"{summary['skipped']} skipped; overlays in {out}, results in "
          f"{summary['results_path']}")
