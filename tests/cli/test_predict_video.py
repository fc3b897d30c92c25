"""`mrcnn-tf predict` on videos: videos named or globbed next to images, --every, outputs of
videos sharing a stem, and one-line refusals (exit 2) of bad videos and --every < 1, all before
the model loads. Runs in this process (`helpers.run_inprocess`) on a small untrained model."""

import json
import os
import shutil

import cv2
import numpy as np
import pytest

from helpers import assert_one_line_error, run_inprocess, save_small_model
from mrcnn_tf.data import shapes

HEIGHT, WIDTH = 48, 64


def _write_video(path, fourcc, frames, fps=8.0):
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fourcc), fps,
                             (WIDTH, HEIGHT))
    for index in range(frames):
        image = shapes.generate_shapes_example(index, seed=2, image_size=WIDTH)["image"]
        writer.write(np.ascontiguousarray(image[8:8 + HEIGHT, :, ::-1]))
    writer.release()
    return str(path)


def _frame_count(path):
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A model, a folder with an image and a video, and two clips named "clip"."""
    root = tmp_path_factory.mktemp("inputs")
    model = save_small_model(root / "model.keras")
    (root / "photos").mkdir()
    image = shapes.generate_shapes_example(0, seed=1, image_size=WIDTH)["image"]
    cv2.imwrite(str(root / "photos" / "shape.png"), image[:, :, ::-1])
    _write_video(root / "photos" / "not_run.mp4", "mp4v", 2)
    (root / "clips").mkdir()
    _write_video(root / "clips" / "clip.MP4", "mp4v", 7)
    _write_video(root / "clips" / "clip.avi", "MJPG", 5)
    return root, model


def test_videos_named_globbed_and_mixed_with_images(capsys, tmp_path, inputs):
    root, model = inputs
    out = tmp_path / "out"
    code, stdout, err = run_inprocess(
        capsys, "predict", "--weights", model, "--inputs",
        f"{root / 'photos'},{root / 'clips' / '*.avi'},{root / 'clips' / 'clip.MP4'}",
        "--out", str(out), "--every", "2", "--score_threshold", "0")
    assert code == 0, err
    # The folder gives its image only; the .MP4 (extensions in any case) and the globbed .avi
    # share the stem "clip", so the second in sorted order gets "clip_2".
    assert sorted(os.listdir(out)) == ["clip.MP4", "clip.jsonl", "clip_2.avi", "clip_2.jsonl",
                                       "results.json", "shape.png"]
    for name, frames in (("clip", 7), ("clip_2", 5)):
        with open(out / f"{name}.jsonl") as f:
            lines = [json.loads(line) for line in f]
        assert [line["frame"] for line in lines] == list(range(0, frames, 2))
        assert all(line["detections"] for line in lines)
    assert _frame_count(out / "clip.MP4") == 4 and _frame_count(out / "clip_2.avi") == 3
    assert "1 images" in stdout
    assert f"{root / 'clips' / 'clip.MP4'}: 4 of 7 frames run" in stdout
    assert "5 frames read, 3 run" in err  # the summary line of the progress output


@pytest.fixture
def bad_videos(tmp_path, inputs):
    (tmp_path / "random.mp4").write_bytes(np.random.default_rng(1).bytes(3000))
    (tmp_path / "empty.webm").write_bytes(b"")
    shutil.copy(inputs[0] / "clips" / "clip.MP4", tmp_path / "clip.wmv")
    return {"random.mp4": "cannot be opened as a video", "empty.webm": "the file is empty",
            "missing.mp4": "no such file", "clip.wmv": "unsupported video extension '.wmv'"}


def test_bad_videos_exit_2_in_one_line_naming_the_file(capsys, tmp_path, inputs, bad_videos):
    root, model = inputs
    for name, problem in bad_videos.items():
        path = str(tmp_path / name)
        # Next to a good video and image: refused before any of them is run.
        code, _, err = run_inprocess(capsys, "predict", "--weights", model, "--inputs",
                                     f"{root / 'photos'},{path}", "--out", str(tmp_path / "o"))
        assert_one_line_error(code, err, path, problem)
        assert not os.path.exists(tmp_path / "o" / "shape.png")


def test_every_below_1_and_an_output_over_the_input_are_refused(capsys, inputs):
    root, model = inputs
    clip = str(root / "clips" / "clip.MP4")
    code, _, err = run_inprocess(capsys, "predict", "--weights", model, "--inputs", clip,
                                 "--every", "0")
    assert_one_line_error(code, err, "--every=0", "expected an integer >= 1")
    code, _, err = run_inprocess(capsys, "predict", "--weights", model, "--inputs", clip,
                                 "--out", str(root / "clips"))
    assert_one_line_error(code, err, clip, "would replace the input")


def test_help_names_every_and_videos(capsys):
    code, stdout, _ = run_inprocess(capsys, "predict", "--help")
    assert code == 0
    assert "--every" in stdout and ".mp4" in stdout and "folder gives its images only" in stdout
