"""The subcommands that read --weights (predict, inspect, export), through
mrcnn_tf/cli/common.py: a .keras file, a run folder, or a .weights.h5 file with --config
(`load_model`); weights made for another config; unwritable output folders (`check_writable`);
and what predict and inspect write.

They run in this process through `mrcnn_tf.cli.main.run` and share one small saved model,
built once for this file.
"""

import json
import os

import cv2
import pytest

from helpers import assert_one_line_error, run_inprocess, small_model_config
from mrcnn_tf.data import shapes


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A small shapes model saved as .keras, and its folder."""
    import keras

    from mrcnn_tf.modeling.mask_rcnn import MaskRCNN
    from mrcnn_tf.modeling.optimizer import make_optimizer
    folder = tmp_path_factory.mktemp("model")
    keras.utils.set_random_seed(0)
    config = small_model_config()
    model = MaskRCNN(config, class_names=list(shapes.CLASS_NAMES))
    model.build()
    # Compiled, as a trained model is saved: its file then names the learning rate schedule.
    model.compile(optimizer=make_optimizer(config))
    model.save(str(folder / "model.keras"))
    model.save_weights(str(folder / "model.weights.h5"))
    return folder


def test_unwritable_output_folders(capsys, tmp_path, saved_model):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, _, err = run_inprocess(capsys, "predict", "--weights", str(saved_model / "model.keras"),
                                 "--inputs", str(blocker), "--out", str(blocker / "out"))
    assert_one_line_error(code, err, "--out=", "not a writable folder")
    code, _, err = run_inprocess(capsys, "inspect", "--config", "shapes_tiny",
                                 "--synthetic_index", "0", "--out", str(blocker / "x"))
    assert_one_line_error(code, err, "--out=", "not a writable folder")


def test_weights_made_for_another_config(capsys, tmp_path, saved_model):
    keras_path = str(saved_model / "model.keras")
    code, _, err = run_inprocess(capsys, "export", "--weights", keras_path, "--config",
                                 "shapes_tiny", "--override", "num_classes=5", "--override",
                                 "fpn_channels=32", "--out", str(tmp_path / "e"))
    assert_one_line_error(code, err, "another config", "num_classes=3 (this config: 5)")
    # A bare weights file checked against the config it is loaded into.
    code, _, err = run_inprocess(capsys, "export", "--weights",
                                 str(saved_model / "model.weights.h5"), "--config",
                                 "shapes_tiny", "--out", str(tmp_path / "e"))
    assert_one_line_error(code, err, "another config")
    code, _, err = run_inprocess(capsys, "export", "--weights",
                                 str(saved_model / "model.weights.h5"), "--out",
                                 str(tmp_path / "e"))
    assert_one_line_error(code, err, "needs --config")


def _write_images(folder, count, size=64):
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        image = shapes.generate_shapes_example(i, seed=5, image_size=size)["image"]
        cv2.imwrite(os.path.join(folder, f"img{i}.png"), image[:, :, ::-1])


def test_predict_writes_overlays_and_coco_results(capsys, tmp_path, saved_model):
    _write_images(tmp_path / "images", 2)
    out = tmp_path / "predictions"
    code, stdout, err = run_inprocess(capsys, "predict", "--weights", str(saved_model),
                                      "--inputs", str(tmp_path / "images"), "--out", str(out),
                                      "--score_threshold", "0.0")
    assert code == 0, err
    assert sorted(os.listdir(out)) == ["img0.png", "img1.png", "results.json"]
    assert cv2.imread(str(out / "img0.png")).shape == (64, 64, 3)
    with open(out / "results.json") as f:
        results = json.load(f)
    # Score threshold 0 and an untrained model with score_threshold 0: every image answers.
    assert {r["image_id"] for r in results} == {1, 2}
    assert {"bbox", "segmentation", "score", "category_id", "file_name"} <= set(results[0])
    assert "2 images" in stdout
    code, _, err = run_inprocess(capsys, "predict", "--weights", str(saved_model), "--inputs",
                                 str(tmp_path / "none-*.png"), "--out", str(out))
    assert_one_line_error(code, err, "none-*.png")


def test_inspect_writes_every_view(capsys, tmp_path, saved_model):
    out = tmp_path / "inspect"
    code, stdout, err = run_inprocess(capsys, "inspect", "--weights",
                                      str(saved_model / "model.keras"), "--synthetic_index",
                                      "3", "--out", str(out))
    assert code == 0, err
    names = sorted(os.listdir(out))
    assert names == sorted(["anchors.png", "proposals.png", "rois.png", "mask_targets.png",
                            "detections.png", "ground_truth.png"])
    for name in names:
        assert cv2.imread(str(out / name)) is not None, name
        assert str(out / name) in stdout
    code, _, err = run_inprocess(capsys, "inspect", "--weights",
                                 str(saved_model / "model.keras"), "--out", str(out))
    assert_one_line_error(code, err, "expected exactly one of")
