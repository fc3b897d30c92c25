"""Tests for mrcnn_tf.video: the annotated video (frames, size, frame rate, codec and its
fallback), the JSON lines against `predict_images` on the same decoded frames, bad inputs, a
video cut short, the progress line, and nothing half-written left behind.

The videos are written here with OpenCV: 14 frames of 96x128 synthetic shapes scenes, mp4v in
.mp4 and MJPG in .avi. The model is the small untrained one with score threshold 0, which
answers every frame with detections.
"""

import io
import json
import logging
import math
import os
import shutil

import cv2
import numpy as np
import pytest

from helpers import CATEGORY_IDS, small_labelled_model
from mrcnn_tf import prediction, video
from mrcnn_tf.data.shapes import generate_shapes_example
from mrcnn_tf.evaluation import coco_eval
from mrcnn_tf.progress import Progress

FRAMES, HEIGHT, WIDTH = 14, 96, 128
# (file, codec written, frame rate, what OpenCV reads back as the codec: FFmpeg names mp4v
# streams by its own tag, FMP4)
SOURCES = {"mp4": ("clip.mp4", "mp4v", 10.0, "FMP4"), "avi": ("clip.avi", "MJPG", 12.0, "MJPG")}


def scene(index):
    """Frame `index` of the test videos: a shapes scene cropped to 96x128, uint8 RGB."""
    return generate_shapes_example(index, seed=4, image_size=WIDTH)["image"][16:16 + HEIGHT]


def write_video(path, fourcc, fps, frames=FRAMES):
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fourcc), fps,
                             (WIDTH, HEIGHT))
    assert writer.isOpened(), (path, fourcc)
    for index in range(frames):
        writer.write(cv2.cvtColor(scene(index), cv2.COLOR_RGB2BGR))
    writer.release()
    return str(path)


def decoded_frames(path):
    """Every frame of a video as OpenCV decodes it, uint8 RGB."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def video_props(path):
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    assert capture.isOpened(), path
    props = {"frames": int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
             "fps": capture.get(cv2.CAP_PROP_FPS),
             "size": (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                      int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))),
             "fourcc": video._fourcc_text(capture.get(cv2.CAP_PROP_FOURCC))}
    capture.release()
    return props


def read_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def model():
    return small_labelled_model()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return {key: write_video(folder / name, fourcc, fps)
            for key, (name, fourcc, fps, _) in SOURCES.items()}


@pytest.fixture(scope="module")
def runs(model, clips, tmp_path_factory):
    """{key: (summary, every)}: the mp4 in batches of 2, every frame; the avi every 3rd."""
    out = {}
    for key, every, batch_size in (("mp4", 1, 2), ("avi", 3, 1)):
        folder = tmp_path_factory.mktemp(f"out_{key}")
        out[key] = (video.predict_video(model, clips[key], folder, every=every,
                                        score_threshold=0.0, batch_size=batch_size,
                                        progress=False), every)
    return out


@pytest.mark.parametrize("key", list(SOURCES))
def test_annotated_video_keeps_size_codec_and_duration(runs, key):
    summary, every = runs[key]
    _, _, fps, read_back = SOURCES[key]
    props = video_props(summary["output"])
    run = math.ceil(FRAMES / every)
    assert props["frames"] == run == summary["frames_run"] == len(decoded_frames(summary["output"]))
    assert summary["frames_read"] == FRAMES
    assert props["size"] == (WIDTH, HEIGHT) == summary["size"]
    assert props["fps"] == pytest.approx(fps / every, abs=1e-3)
    assert props["fourcc"] == read_back == summary["fourcc_in"] == summary["fourcc_out"]
    # Only the two outputs: no temporary file is left next to them.
    folder = os.path.dirname(summary["output"])
    stem = os.path.splitext(os.path.basename(summary["output"]))[0]
    assert sorted(os.listdir(folder)) == sorted([os.path.basename(summary["output"]),
                                                 stem + ".jsonl"])


@pytest.mark.parametrize("key", list(SOURCES))
def test_json_lines_hold_each_frame_run_in_order(runs, key):
    summary, every = runs[key]
    fps = SOURCES[key][2]
    lines = read_lines(summary["jsonl"])
    assert [line["frame"] for line in lines] == list(range(0, FRAMES, every))
    for line in lines:
        assert line["time_s"] == pytest.approx(line["frame"] / fps)
        assert line["detections"], line["frame"]  # score threshold 0: every frame answers
        for detection in line["detections"]:
            assert set(detection) == {"category_id", "bbox", "score", "segmentation"}
            assert detection["category_id"] in CATEGORY_IDS
            assert detection["segmentation"]["size"] == [HEIGHT, WIDTH]
            assert isinstance(detection["segmentation"]["counts"], str)
    assert summary["detections"] == sum(len(line["detections"]) for line in lines)


def test_detections_are_those_of_predict_images_on_the_decoded_frame(model, clips, runs):
    summary, every = runs["avi"]
    frames = decoded_frames(clips["avi"])
    lines = read_lines(summary["jsonl"])
    for line in (lines[0], lines[-1]):
        expected = coco_eval.predictions_to_coco_results(
            0, model.predict_images([frames[line["frame"]]], score_threshold=0.0)[0],
            model.label_map)
        got = line["detections"]
        assert len(got) == len(expected) > 0
        np.testing.assert_allclose([d["bbox"] for d in got], [d["bbox"] for d in expected],
                                   atol=1e-3)
        np.testing.assert_allclose([d["score"] for d in got], [d["score"] for d in expected],
                                   atol=1e-5)
        assert [d["category_id"] for d in got] == [d["category_id"] for d in expected]
        assert [d["segmentation"] for d in got] == [d["segmentation"] for d in expected]


def test_annotated_frames_are_the_overlay_of_their_detections(model, clips, runs):
    """Each written frame matches `draw_prediction` of the decoded source frame: it differs
    from the raw frame where detections are drawn and (to re-encoding noise) nowhere else."""
    summary, every = runs["avi"]
    raw = decoded_frames(clips["avi"])
    written = decoded_frames(summary["output"])
    for k in (0, len(written) - 1):
        source = raw[k * every]
        kept = model.predict_images([source], score_threshold=0.0)[0]
        overlay = prediction.draw_prediction(source, kept, model.label_map.class_names)
        drawn = np.any(overlay != source, axis=-1)
        assert drawn.mean() > 0.02  # detections were drawn on this frame
        out, source, overlay = (a.astype(np.int16) for a in (written[k], source, overlay))
        to_raw = np.abs(out - source).mean(-1)
        to_overlay = np.abs(out - overlay).mean(-1)
        assert to_raw[drawn].mean() > 3 * to_overlay[drawn].mean(), k
        # Away from the drawing (JPEG's 8x8 blocks smear edges), only re-encoding noise.
        far = cv2.dilate(drawn.astype(np.uint8), np.ones((17, 17), np.uint8)) == 0
        assert far.mean() > 0.03, far.mean()
        assert to_raw[far].mean() < 2, to_raw[far].mean()


def test_progress_and_summary_go_to_stderr(model, clips, tmp_path, capsys):
    summary = video.predict_video(model, clips["mp4"], tmp_path, every=2, score_threshold=0.0)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("clip.mp4: ")]
    # Not a terminal: a line each time another tenth is done, the last one at 7/7.
    assert lines and lines[-1].startswith("clip.mp4: 7/7 frames (100%)")
    assert "frames/s" in lines[-1]
    (last,) = [line for line in err.splitlines() if "frames read" in line]
    assert last == video.summary_line(summary)
    assert f"{FRAMES} frames read, 7 run, {summary['detections']} detections" in last


def test_progress_redraws_one_line_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    bar = Progress("clip.mp4", total=4, stream=stream)
    for done in range(1, 5):
        bar.update(done)
    bar.close(4)
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert text.startswith("\rclip.mp4: 1/4 frames (25%)")  # the first update is drawn
    assert "\rclip.mp4: 4/4 frames (100%)" in text
    piped = io.StringIO()
    bar = Progress("x", total=None, stream=piped)
    for done in range(1, 251):
        bar.update(done)
    assert [line.split(",")[0] for line in piped.getvalue().splitlines()] == [
        "x: 100 frames", "x: 200 frames"]


def test_codec_the_container_cannot_hold_falls_back_with_one_warning(model, tmp_path, caplog,
                                                                     capfd):
    # MJPG in a QuickTime file named .m4v: OpenCV reads it, but the .m4v (iPod) muxer holds
    # only H.264 and MPEG-4, so the MJPG writer does not open.
    source = str(tmp_path / "mjpeg.m4v")
    os.replace(write_video(tmp_path / "mjpeg.mov", "MJPG", 10.0, frames=3), source)
    assert video.probe_video(source).fourcc == "MJPG"
    capfd.readouterr()
    with caplog.at_level(logging.WARNING):
        summary = video.predict_video(model, source, tmp_path / "out", score_threshold=0.0,
                                      progress=False)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "'mp4v' instead of the source's 'MJPG'" in warnings[0]
    assert summary["output"] in warnings[0] and ".m4v" in warnings[0]
    assert summary["fourcc_out"] == "mp4v"
    props = video_props(summary["output"])
    assert props["frames"] == 3 and props["fourcc"] == "FMP4"
    # FFmpeg's own lines about the refused codec were kept off the terminal.
    assert "ipod" not in capfd.readouterr().err


@pytest.mark.parametrize("name, fourcc, written", [
    ("a.webm", "MJPG", "VP80"),  # WebM holds VP8/VP9/AV1 only
    ("a.avi", "", "MJPG"),  # no codec named by the source
    ("a.mp4", "mp4v", "mp4v"),
])
def test_open_writer_uses_the_containers_fallback(tmp_path, name, fourcc, written):
    writer, used, reason = video.open_writer(str(tmp_path / name), fourcc, 5.0, (WIDTH, HEIGHT))
    writer.release()
    assert used == written
    assert (reason is None) == (fourcc == written)


def test_a_frame_that_cannot_be_decoded_ends_the_video_with_a_warning(model, clips, tmp_path,
                                                                     caplog):
    with open(clips["avi"], "rb") as f:
        data = f.read()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[:int(len(data) * 0.6)])  # the AVI header still announces 14 frames
    with caplog.at_level(logging.WARNING):
        summary = video.predict_video(model, cut, tmp_path / "out", score_threshold=0.0,
                                      progress=False)
    read = summary["frames_read"]
    assert 2 <= read < FRAMES and summary["ended_at"] == read
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"frame {read} could not be decoded" in warning and str(cut) in warning
    assert [line["frame"] for line in read_lines(summary["jsonl"])] == list(range(read))
    assert len(decoded_frames(summary["output"])) == read


def test_a_failed_run_leaves_no_output(model, clips, tmp_path):
    class FailsOnThirdBatch:
        label_map, config, calls = model.label_map, model.config, 0

        def predict_images(self, *args, **kwargs):
            self.calls += 1
            if self.calls == 3:
                raise KeyboardInterrupt
            return model.predict_images(*args, **kwargs)

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        video.predict_video(FailsOnThirdBatch(), clips["mp4"], out, progress=False)
    assert os.listdir(out) == []


@pytest.fixture
def bad_inputs(tmp_path, clips):
    (tmp_path / "random.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    (tmp_path / "empty.avi").write_bytes(b"")
    (tmp_path / "folder.mkv").mkdir()
    shutil.copy(clips["mp4"], tmp_path / "clip.flv")
    return {"random.mp4": "cannot be opened as a video", "empty.avi": "the file is empty",
            "missing.mov": "no such file", "folder.mkv": "is a folder",
            "clip.flv": "unsupported extension '.flv'"}


def test_bad_videos_are_refused_in_one_line_naming_the_file(model, tmp_path, bad_inputs):
    for name, problem in bad_inputs.items():
        path = str(tmp_path / name)
        with pytest.raises(ValueError) as error:
            video.predict_video(model, path, tmp_path / "out", progress=False)
        message = str(error.value)
        assert "\n" not in message and message.startswith(path), message
        assert problem in message and "expected a video file (.mp4" in message, message
    assert not (tmp_path / "out").exists()


def test_refuses_to_replace_the_input_and_bad_arguments(model, clips):
    folder = os.path.dirname(clips["mp4"])
    with pytest.raises(ValueError, match="would replace the input"):
        video.predict_video(model, clips["mp4"], folder, progress=False)
    for kwargs in ({"every": 0}, {"batch_size": 0}, {"every": 1.5}):
        with pytest.raises(ValueError, match=f"{next(iter(kwargs))}=.*expected an integer"):
            video.predict_video(model, clips["mp4"], "unused", progress=False, **kwargs)
