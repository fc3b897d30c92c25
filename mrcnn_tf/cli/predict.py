"""`mrcnn-tf predict`: overlays and COCO results for images (files, folders, globs); an
annotated copy and per-frame JSON lines for videos (`mrcnn_tf.video`)."""

import os

from absl import flags

from mrcnn_tf.cli import common

FLAGS = flags.FLAGS

# Keypoint scores are heatmap peak probabilities, small numbers: see
# visualize.KEYPOINT_SCORE_THRESHOLD (kept equal here without importing OpenCV at start-up).
flags.DEFINE_float("keypoint_threshold", 0.05, "predict: keypoints scoring below this are not "
                   "drawn (keypoint models only).")
flags.DEFINE_integer("every", 1, "predict, videos: run and write every Nth frame only (frames "
                     "0, N, 2N, ...); the annotated video plays at the source's frame rate / N, "
                     "so it keeps its duration.")

SUMMARY = ("draw detections on images (files, folders, globs) and videos; write COCO results "
           "JSON / per-frame JSON lines")
USAGE = ("--weights MODEL.keras|RUN_DIR --inputs IMAGES,VIDEOS [--out predictions] [--every N]"
         " [--score_threshold] [--keypoint_threshold] [--batch_size N]"
         " [--precision float32|bfloat16|auto]")
FLAG_NAMES = common.MODEL_FLAGS + ("inputs", "out", "every", "score_threshold",
                                   "keypoint_threshold", "results", "annotations", "batch_size",
                                   "precision")


def _split_inputs(paths, out):
    """(images, video infos, video output stems) of the expanded inputs; UsageError naming the
    first input with a video extension predict does not take, a video it cannot read, or one
    whose annotated copy in `out` would replace it."""
    from mrcnn_tf import prediction, video  # noqa: PLC0415 (loads OpenCV)
    refused = [p for p in paths if video.is_unsupported_video_name(p)]
    if refused:
        raise common.UsageError(f"--inputs: {refused[0]}: unsupported video extension "
                                f"{os.path.splitext(refused[0])[1]!r}: expected "
                                f"{video.expected_videos()}, or an image")
    videos = [p for p in paths if video.is_video_name(p)]
    # Two videos with one stem get clip, clip_2, ... (the overlays' rule, without ".png").
    stems = [os.path.splitext(name)[0] for name in prediction.overlay_names(videos)]
    try:  # every video checked before the model loads: a bad one fails in seconds
        infos = [video.probe_video(p) for p in videos]
        for path, stem in zip(videos, stems):
            video.output_paths(path, out, stem)
    except ValueError as error:
        raise common.UsageError(f"--inputs: {error}") from None
    return [p for p in paths if p not in set(videos)], infos, stems


def main():
    from mrcnn_tf import prediction, video  # noqa: PLC0415
    common.require("weights", "inputs")
    for name in ("score_threshold", "keypoint_threshold"):
        if not 0 <= FLAGS[name].value <= 1:
            raise common.UsageError(f"--{name}={FLAGS[name].value}: expected a value in [0, 1]")
    batch_size = 1 if FLAGS.batch_size is None else FLAGS.batch_size
    if batch_size < 1:
        raise common.UsageError(f"--batch_size={batch_size}: expected an integer >= 1")
    if FLAGS.every < 1:
        raise common.UsageError(f"--every={FLAGS.every}: expected an integer >= 1")
    paths = prediction.expand_inputs(
        FLAGS.inputs, glob_extensions=prediction.IMAGE_EXTENSIONS + video.VIDEO_EXTENSIONS)
    out = FLAGS.out or "predictions"
    images, infos, stems = _split_inputs(paths, out)
    common.check_writable(out, "--out")
    model = common.load_model_in_precision()
    if images:
        image_ids = (prediction.image_ids_from_annotations(FLAGS.annotations)
                     if FLAGS.annotations else None)
        summary = prediction.predict_files(
            model, images, out, score_threshold=FLAGS.score_threshold,
            results_path=FLAGS.results or os.path.join(out, "results.json"),
            image_ids=image_ids, keypoint_threshold=FLAGS.keypoint_threshold,
            batch_size=batch_size)
        print(f"{summary['images']} images, {summary['detections']} detections, "
              f"{summary['skipped']} skipped; overlays in {out}, results in "
              f"{summary['results_path']}")
    for info, stem in zip(infos, stems):
        summary = video.predict_video(
            model, info.path, out, every=FLAGS.every, score_threshold=FLAGS.score_threshold,
            keypoint_threshold=FLAGS.keypoint_threshold, batch_size=batch_size, stem=stem)
        print(f"{info.path}: {summary['frames_run']} of {summary['frames_read']} frames run, "
              f"{summary['detections']} detections; video in {summary['output']}, detections "
              f"in {summary['jsonl']}")
