"""The `mrcnn-tf` subcommands train, predict, inspect and their errors.

Most run in this process through `mrcnn_tf.cli.main.run` (TensorFlow is already loaded);
training runs as a real process because it switches on TensorFlow's global op determinism.
"""

import glob
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from helpers import small_model_config
from mrcnn_tf.cli import main as cli_main
from mrcnn_tf.data import shapes


def run_inprocess(capsys, *args):
    """Runs `mrcnn-tf ARGS` here; returns (exit code, stdout, stderr)."""
    flags.FLAGS.unparse_flags()
    code = 0
    try:
        cli_main.run(["mrcnn-tf", *args])
    except SystemExit as exit_:
        code = exit_.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith("mrcnn-tf")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


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


@pytest.mark.parametrize("command", sorted(cli_main.COMMANDS))
def test_help_lists_every_flag_with_its_default(capsys, command):
    code, out, _ = run_inprocess(capsys, command, "--help")
    assert code == 0
    module = cli_main.COMMANDS[command]
    for name in module.FLAG_NAMES:
        assert f"--{name}:" in out, name
    defaults = [line for line in out.splitlines() if line.startswith("      (default: ")]
    assert len(defaults) == len(module.FLAG_NAMES)


def test_help_of_the_train_subcommand_in_a_real_process():
    result = subprocess.run([sys.executable, "-m", "mrcnn_tf.cli", "train", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "--mixed_precision:" in result.stdout and "(default: 'float32')" in result.stdout


def test_unknown_preset_flag_and_override(capsys):
    assert_one_line_error(*run_inprocess(capsys, "train", "--config", "nope")[::2],
                          "--config='nope'", "coco_r50_fpn")
    assert_one_line_error(*run_inprocess(capsys, "train", "--config", "shapes_tiny",
                                         "--bogus", "1")[::2], "bogus")
    assert_one_line_error(*run_inprocess(capsys, "train", "--config", "shapes_tiny",
                                         "--override", "num_clases=3")[::2],
                          "num_clases", "num_classes")
    assert_one_line_error(*run_inprocess(capsys, "train", "--config", "shapes_tiny",
                                         "--override", "num_classes=many")[::2],
                          "num_classes=many", "integer")


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


def _events(folder):
    """{tag: [values...]} of the TensorBoard event files under `folder`."""
    tags = {}
    for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(value)
    return tags


def test_train_on_coco_folders_writes_the_whole_run_folder(tmp_path):
    annotations, images = shapes.write_shapes_coco(str(tmp_path / "data"), 6, seed=2,
                                                   image_size=64)
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "mrcnn_tf.cli", "train", "--config", "shapes_tiny",
               "--override", "image_min_size=64", "--override", "image_max_size=64",
               "--train_annotations", annotations, "--train_image_dir", images,
               "--val_annotations", annotations, "--val_image_dir", images,
               "--epochs", "2", "--steps_per_epoch", "2", "--batch_size", "2",
               "--keep_checkpoints", "1", "--tensorboard_images", "2",
               "--run_dir", str(run_dir)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "last evaluation: epoch 2" in result.stdout
    assert "nothing skipped" in result.stdout  # the data report at the end

    with open(run_dir / "config.json") as f:
        assert json.load(f)["image_max_size"] == 64
    with open(run_dir / "label_map.json") as f:
        assert [c["name"] for c in json.load(f)["categories"]] == list(shapes.CLASS_NAMES)
    with open(run_dir / "run.json") as f:
        run_info = json.load(f)
    assert run_info["schedule"]["batch_size"] == 2 and run_info["mrcnn_tf"]
    # This CPU's device plan: crop_and_resize, op determinism on (the default), no XLA.
    plan = run_info["device_plan"]
    assert (plan["device_type"], plan["roi_align_implementation"], plan["op_determinism"],
            plan["xla"]) == ("CPU", "crop_and_resize", True, False)
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["epoch-0002.keras"]
    with open(run_dir / "best.json") as f:
        best = json.load(f)
    assert best["epoch"] in (1, 2) and 0.0 <= best["segm_AP"] <= 1.0
    assert (run_dir / "best.keras").exists() and (run_dir / "model.keras").exists()
    with open(run_dir / "metrics.json") as f:
        metrics = json.load(f)
    assert len(metrics["history"]["loss"]) == 2
    assert all(np.isfinite(metrics["history"]["loss"]))

    train_tags = _events(str(run_dir / "tensorboard" / "train"))
    for tag in ("epoch_loss", "epoch_mask_loss", "epoch_rpn_class_loss",
                "epoch_learning_rate", "epoch_segm_AP", "batch_loss"):
        assert tag in train_tags, sorted(train_tags)
    eval_tags = _events(str(run_dir / "tensorboard" / "eval"))
    assert len(eval_tags["segm_AP"]) == 2 and len(eval_tags["bbox_AP"]) == 2
    assert {"predictions/0", "predictions/1"} <= set(eval_tags)
    assert "predictions/2" not in eval_tags

    # The same folder with another config is refused, in one line.
    result = subprocess.run(command + ["--override", "mask_head_num_convs=1"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    assert "another config" in result.stderr and "mask_head_num_convs" in result.stderr
    assert "Traceback" not in result.stderr
