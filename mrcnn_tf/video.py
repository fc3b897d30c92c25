"""Prediction on video files (`mrcnn-tf predict --inputs clip.mp4`).

    summary = predict_video(model, "clip.mp4", "out/", every=2, score_threshold=0.5)

reads the video with OpenCV (its FFmpeg backend), runs `model.predict_images` on frames
0, every, 2*every, ... (`batch_size` of them at a time) and writes

  out/clip.mp4    those frames with their detections drawn as image predict draws them
                  (`prediction.draw_prediction`): the source's size, its frame rate / every (so
                  the video keeps its duration) and its codec (CAP_PROP_FOURCC). OpenCV's
                  wheels cannot encode every codec (no H.264 encoder): when the source codec's
                  writer does not open, the container's fallback is used (mp4v; MJPG for .avi,
                  VP80 for .webm) and one warning says which and why.
  out/clip.jsonl  one JSON object per frame run, in order:
                  {"frame": source frame index, "time_s": index / fps, "detections": [...]},
                  each detection a COCO result (`coco_eval.predictions_to_coco_results`:
                  "category_id" (the dataset's id), "bbox" [x, y, w, h], "score",
                  "segmentation" (compressed RLE, counts as str) with masks, "keypoints" with a
                  keypoint model) without "image_id", which would repeat "frame".

Both are written under temporary names in `out/` and renamed when complete, so a killed run
leaves no complete-looking output. A progress bar and a summary line go to stderr.

A video that cannot be opened, has no frames, or has an extension outside VIDEO_EXTENSIONS is
refused with a ValueError naming the file (`probe_video`), before anything is written. A frame
that cannot be decoded part-way ends the video with a warning naming the frame: the outputs
are complete for the frames before it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import IO, Any, Iterator, Union

import cv2
import numpy as np
from absl import logging

from mrcnn_tf import visualize
from mrcnn_tf.evaluation.coco_eval import predictions_to_coco_results
from mrcnn_tf.io_utils import atomic_write
from mrcnn_tf.prediction import draw_prediction
from mrcnn_tf.progress import Progress

PathLike = Union[str, "os.PathLike[str]"]

# Containers `predict_video` reads and writes (compared case-insensitively).
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")
# Other video containers: named so that `mrcnn-tf predict` refuses them in one line instead of
# trying them as images (the output is written in the source's container, and OpenCV's
# writers do not cover these).
OTHER_VIDEO_EXTENSIONS = (".wmv", ".flv", ".mpg", ".mpeg", ".3gp", ".ts", ".mts", ".m2ts",
                          ".ogv", ".vob", ".asf", ".f4v")
# The codec written when the source's cannot be: one that OpenCV's pip wheels encode and the
# container holds.
_FALLBACK_FOURCC = {".avi": "MJPG", ".webm": "VP80"}
_DEFAULT_FALLBACK = "mp4v"
# The frame rate assumed, with a warning, when the container gives none.
_ASSUMED_FPS = 30.0


def is_video_name(name: PathLike) -> bool:
    """Whether `name` ends in one of VIDEO_EXTENSIONS (any case)."""
    return os.fspath(name).lower().endswith(VIDEO_EXTENSIONS)


def is_unsupported_video_name(name: PathLike) -> bool:
    """Whether `name` ends in a video extension `predict_video` does not take."""
    return os.fspath(name).lower().endswith(OTHER_VIDEO_EXTENSIONS)


def expected_videos() -> str:
    """'a video file (.mp4, .avi, ...)': what a refused input should have been."""
    return f"a video file ({', '.join(VIDEO_EXTENSIONS)}) that OpenCV can decode"


@dataclass(frozen=True)
class VideoInfo:
    """What `probe_video` read from a video: fps (frames per second, > 0), width and height of
    its first decoded frame (pixels), frame_count as the container announces it (None when it
    announces none), fourcc (4 characters, "" when the container names no codec)."""
    path: str
    fps: float
    width: int
    height: int
    frame_count: int | None
    fourcc: str


@contextlib.contextmanager
def _native_stderr() -> Iterator[list[str]]:
    """Sends file descriptor 2 to a temporary file for the block; yields a list that holds the
    text written there once the block ends.

    FFmpeg and OpenCV print their own lines (up to eight, with addresses) when a capture or a
    writer does not open, and even when a codec tag is merely remapped; the caller says what
    happened in one line instead, quoting FFmpeg's reason (`_ffmpeg_reason`). The block is
    one OpenCV constructor call: whatever another thread writes to fd 2 in that moment lands
    in the file too. Where fd 2 cannot be duplicated, nothing is redirected and the list stays
    empty.
    """
    captured: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:
        yield captured
        return
    with tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured += sink.read().decode("utf-8", "replace").splitlines()


def _ffmpeg_reason(lines: list[str]) -> str:
    """FFmpeg's last line among `lines` ("[mov,mp4 @ 0x55..] moov atom not found" -> "moov
    atom not found"), the one that says why; "" when FFmpeg said nothing (OpenCV's own lines
    only repeat that the backend could not open the file)."""
    for line in reversed(lines):
        head, _, text = line.strip().partition("] ")
        if head.startswith("[") and " @ 0x" in head and text.strip():
            return text.strip()
    return ""


def _fourcc_text(code: float) -> str:
    """CAP_PROP_FOURCC's number as its 4 characters; "" for 0 or unprintable codes."""
    code = int(code) & 0xFFFFFFFF
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
    return text if code and text.isprintable() else ""


def _open_capture(path: str) -> tuple[cv2.VideoCapture, list[str]]:
    with _native_stderr() as native:
        capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    return capture, native


def probe_video(path: PathLike) -> VideoInfo:
    """Checks that `path` is a video this module can run and returns what it needs of it.

    Raises:
      ValueError: naming the file and what was expected, when its extension is not one of
        VIDEO_EXTENSIONS, it is missing, a folder or empty, OpenCV cannot open it, or its first
        frame cannot be decoded.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1]
    if not is_video_name(path):
        raise ValueError(f"{path}: unsupported extension {ext or '(none)'!r}: expected "
                         f"{expected_videos()}")
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a folder: expected {expected_videos()}")
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file: expected {expected_videos()}")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: the file is empty (0 bytes): expected {expected_videos()}")
    capture, native = _open_capture(path)
    try:
        if not capture.isOpened():
            reason = _ffmpeg_reason(native)
            raise ValueError(f"{path}: cannot be opened as a video"
                             f"{f' ({reason})' if reason else ''}: expected {expected_videos()}")
        ok, frame = capture.read()
        if not ok or frame is None:
            raise ValueError(f"{path}: has no frame that can be decoded: expected "
                             f"{expected_videos()}")
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fourcc = _fourcc_text(capture.get(cv2.CAP_PROP_FOURCC))
    finally:
        capture.release()
    if not math.isfinite(fps) or fps <= 0:
        logging.warning("%s: the container gives no frame rate; assuming %g frames/s", path,
                        _ASSUMED_FPS)
        fps = _ASSUMED_FPS
    return VideoInfo(path=path, fps=fps, width=int(frame.shape[1]), height=int(frame.shape[0]),
                     frame_count=count if count > 0 else None, fourcc=fourcc)


def fallback_fourcc(path: PathLike) -> str:
    """The codec written into `path`'s container when the source's cannot be."""
    return _FALLBACK_FOURCC.get(os.path.splitext(os.fspath(path))[1].lower(), _DEFAULT_FALLBACK)


def open_writer(path: str, fourcc: str, fps: float, size: tuple[int, int]
                ) -> tuple[cv2.VideoWriter, str, str | None]:
    """A cv2.VideoWriter for `path` in codec `fourcc`, else in `fallback_fourcc(path)`.

    Args:
      path: the file to write; its extension picks the container.
      fourcc: 4 characters, or "" (unknown: the fallback is used).
      fps: frames per second written in the header.
      size: (width, height) of every frame.

    Returns:
      (writer, the fourcc it writes, None or why the source's `fourcc` was not used).

    Raises:
      OSError: naming `path`, when neither codec opens.
    """
    reason = None
    if fourcc:
        with _native_stderr() as native:
            writer = cv2.VideoWriter(path, cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fourcc), fps,
                                     size)
        if writer.isOpened():
            return writer, fourcc, None
        writer.release()
        detail = _ffmpeg_reason(native)
        reason = (f"this OpenCV build cannot write {fourcc!r} into "
                  f"{os.path.splitext(path)[1] or 'this container'}"
                  f"{f' ({detail})' if detail else ''}")
    else:
        reason = "the source names no codec"
    fallback = fallback_fourcc(path)
    with _native_stderr() as native:
        writer = cv2.VideoWriter(path, cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fallback), fps,
                                 size)
    if not writer.isOpened():
        writer.release()
        detail = _ffmpeg_reason(native)
        raise OSError(f"{path}: cannot write a video with codec {fourcc or '(unknown)'!r} or "
                      f"{fallback!r}{f' ({detail})' if detail else ''}")
    return writer, fallback, reason


def output_paths(path: PathLike, out_dir: PathLike, stem: str | None = None) -> tuple[str, str]:
    """(annotated video, JSON lines) that `predict_video` writes for `path` into `out_dir`:
    out_dir/<stem><same extension> and out_dir/<stem>.jsonl; `stem` defaults to the input's.

    Raises:
      ValueError: naming the file, when the annotated video would replace the input itself.
    """
    path = os.fspath(path)
    base, ext = os.path.splitext(os.path.basename(path))
    stem = stem or base or "video"
    out_dir = os.fspath(out_dir)
    video_out = os.path.join(out_dir, stem + ext)
    if os.path.exists(video_out) and os.path.exists(path) and os.path.samefile(video_out, path):
        raise ValueError(f"{path}: the annotated video would replace the input in "
                         f"{out_dir!r}; choose another output folder")
    return video_out, os.path.join(out_dir, stem + ".jsonl")


@contextlib.contextmanager
def _video_file(path: str, fourcc: str, fps: float, size: tuple[int, int]
                ) -> Iterator[tuple[cv2.VideoWriter, str]]:
    """Yields (writer, fourcc written) on a temporary name next to `path`; renames it to `path`
    when the block ends normally, deletes it otherwise.

    The temporary name keeps the extension (FFmpeg picks the container by it) and starts with
    a dot; it is created with mode 0666 so the umask gives the final file ordinary permissions.
    """
    folder, name = os.path.split(path)
    ext = os.path.splitext(name)[1]
    tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.partial{ext}")
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    writer = None
    try:
        writer, written, reason = open_writer(tmp, fourcc, fps, size)
        if reason:
            logging.warning("%s: writing codec %r instead of the source's %r: %s", path,
                            written, fourcc or "(unknown)", reason)
        yield writer, written
        writer.release()
        os.replace(tmp, path)
    except BaseException:
        # BaseException: Ctrl-C must not leave a partial video either.
        if writer is not None:
            writer.release()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def predict_video(model, path: PathLike, out_dir: PathLike, every: int = 1,
                  score_threshold: float = 0.5,
                  keypoint_threshold: float = visualize.KEYPOINT_SCORE_THRESHOLD,
                  batch_size: int = 1, progress: bool = True, stem: str | None = None
                  ) -> dict[str, Any]:
    """Runs the model on frames of a video; writes the annotated video and JSON lines.

    Args:
      model: a `MaskRCNN` (anything with `predict_images(images, score_threshold, batch_size)`
        and `label_map`; a `config.keypoint_skeleton` is drawn when there is one).
      path: the video (one of VIDEO_EXTENSIONS).
      out_dir: folder for the outputs (created if missing); see the module doc.
      every: run and write frames 0, every, 2 * every, ...; the output plays at fps / every.
      score_threshold: detections scoring below it are neither drawn nor written.
      keypoint_threshold: keypoints scoring below it are not drawn.
      batch_size: frames run together (`MaskRCNN.predict_images`).
      progress: draw the progress bar and print the summary line on stderr.
      stem: output file name without extension; default the input's.

    Returns:
      {"video", "output" (annotated video), "jsonl", "frames_read", "frames_run",
       "detections", "fps_in", "fps_out", "fourcc_in", "fourcc_out", "size" (width, height),
       "model_seconds" (in predict_images), "first_batch" ((frames, seconds) of the first
       predict_images call, which traces the graph), "seconds" (all), "ended_at" (the frame
       that ended the video early: not decodable before the announced end, or of another
       size; else None)}.

    Raises:
      ValueError: naming the file, for a bad video (`probe_video`), or an output that would
        replace the input; naming the argument, for every or batch_size < 1.
      OSError: the annotated video cannot be written in any codec (`open_writer`).
    """
    for name, value in (("every", every), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"predict_video: {name}={value!r}, expected an integer >= 1")
    every, batch_size = int(every), int(batch_size)
    started = time.perf_counter()
    info = probe_video(path)
    out_dir = os.fspath(out_dir)
    video_out, jsonl_out = output_paths(info.path, out_dir, stem)
    os.makedirs(out_dir, exist_ok=True)
    fps_out = info.fps / every
    size = (info.width, info.height)
    total = math.ceil(info.frame_count / every) if info.frame_count else None
    bar = Progress(os.path.basename(info.path), total, enabled=progress)
    label_map = model.label_map
    skeleton = tuple(getattr(getattr(model, "config", None), "keypoint_skeleton", ()))
    counts = {"read": 0, "run": 0, "detections": 0}
    # Seconds in predict_images for each batch: the first one traces the graph (seconds), so
    # the model's rate is reported without it as well.
    batch_seconds: list[tuple[int, float]] = []  # (frames, seconds)
    ended: tuple[int, str] | None = None  # (frame index, what went wrong) when cut short

    def run(batch: list[tuple[int, np.ndarray]], writer, lines: IO[str]) -> None:
        t0 = time.perf_counter()
        kept = model.predict_images([rgb for _, rgb in batch], score_threshold=score_threshold,
                                    batch_size=batch_size)
        batch_seconds.append((len(batch), time.perf_counter() - t0))
        for (index, rgb), detections in zip(batch, kept):
            overlay = draw_prediction(rgb, detections, label_map.class_names, skeleton,
                                      keypoint_threshold)
            writer.write(cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
            results = predictions_to_coco_results(index, detections, label_map)
            for result in results:
                del result["image_id"]  # the line's "frame" says it
            lines.write(json.dumps({"frame": index, "time_s": index / info.fps,
                                    "detections": results}) + "\n")
            counts["detections"] += len(results)
        counts["run"] += len(batch)
        bar.update(counts["run"])

    capture, _ = _open_capture(info.path)
    try:
        with atomic_write(jsonl_out, "w") as lines, \
                _video_file(video_out, info.fourcc, fps_out, size) as (writer, fourcc_out):
            batch: list[tuple[int, np.ndarray]] = []
            while True:
                index = counts["read"]
                wanted = index % every == 0
                # grab() alone for the frames skipped: no colour conversion for what is not run.
                ok, frame = capture.grab(), None
                if ok and wanted:
                    ok, frame = capture.retrieve()
                    ok = ok and frame is not None
                if not ok:
                    if info.frame_count and index < info.frame_count:
                        ended = (index, f"could not be decoded (the container announces "
                                        f"{info.frame_count} frames)")
                    break
                if wanted and frame.shape[:2] != (info.height, info.width):
                    # The writer would drop it silently, and the JSON lines would not match.
                    ended = (index, f"changes the size from {info.width}x{info.height} to "
                                    f"{frame.shape[1]}x{frame.shape[0]}")
                    break
                counts["read"] += 1
                if wanted:
                    batch.append((index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
                if len(batch) == batch_size:
                    run(batch, writer, lines)
                    batch = []
            if batch:
                run(batch, writer, lines)
    finally:
        capture.release()
        bar.close(counts["run"])
    if ended is not None:
        logging.warning("%s: frame %d %s; the video ends there: the outputs cover the %d "
                        "frames before it", info.path, ended[0], ended[1], counts["read"])
    seconds = time.perf_counter() - started
    summary = {
        "video": info.path, "output": video_out, "jsonl": jsonl_out,
        "frames_read": counts["read"], "frames_run": counts["run"],
        "detections": counts["detections"], "fps_in": info.fps, "fps_out": fps_out,
        "fourcc_in": info.fourcc, "fourcc_out": fourcc_out, "size": size,
        "model_seconds": sum(t for _, t in batch_seconds),
        "first_batch": batch_seconds[0] if batch_seconds else (0, 0.0), "seconds": seconds,
        "ended_at": None if ended is None else ended[0],
    }
    if progress:
        print(summary_line(summary), file=sys.stderr, flush=True)
    return summary


def summary_line(summary: dict[str, Any]) -> str:
    """One line of a `predict_video` summary: frames read and run, detections, frames/s in the
    model (after its first batch too, when there are more: that one traces the graph) and
    overall (reading, drawing and writing included)."""
    run = summary["frames_run"]
    first_frames, first_seconds = summary["first_batch"]
    model = f"{run / max(summary['model_seconds'], 1e-9):.2f} frames/s in the model"
    if run > first_frames:
        steady = (run - first_frames) / max(summary["model_seconds"] - first_seconds, 1e-9)
        model += f" ({steady:.2f} after the first batch, {first_seconds:.1f} s with its trace)"
    return (f"{summary['video']}: {summary['frames_read']} frames read, {run} run, "
            f"{summary['detections']} detections; {model}, "
            f"{run / max(summary['seconds'], 1e-9):.2f} frames/s overall")
