"""`mrcnn-tf train` (mrcnn_tf/cli/train.py): preset, flag and override errors in one line, and
a short run on COCO folders that writes the whole run folder.

The errors run in this process through `mrcnn_tf.cli.main.run` (TensorFlow is already loaded);
training runs as a real process because it switches on TensorFlow's global op determinism.
"""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from helpers import assert_one_line_error, run_inprocess
from mrcnn_tf.data import shapes


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


def test_ablation_options_that_cannot_work_together_are_one_line_errors(capsys, tmp_path):
    def train(*overrides):
        args = ["train", "--config", "shapes_tiny", "--synthetic_train_images", "2",
                "--run_dir", str(tmp_path / "run")]
        for override in overrides:
            args += ["--override", override]
        return run_inprocess(capsys, *args)[::2]

    assert_one_line_error(*train("mask_loss=softmax", "mask_class_agnostic=true"),
                          "mask_loss='softmax'", "mask_class_agnostic=True")
    assert_one_line_error(*train("mask_head_type=mlp", "mask_upsample=nearest"),
                          "mask_upsample='nearest'", "mask_head_type='mlp'")
    assert_one_line_error(*train("roi_pooler=roi_max"), "roi_pooler='roi_max'", "roi_pool")
    assert_one_line_error(*train("roi_levels=4,3"), "roi_levels=(4, 3)")
    assert not (tmp_path / "run").exists()  # refused before anything was written


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
    # This CPU's device plan: dynamic shapes (crop_and_resize), op determinism on (the
    # default), no XLA.
    plan = run_info["device_plan"]
    assert (plan["device_type"], plan["static_shapes"], plan["op_determinism"],
            plan["xla"]) == ("CPU", False, True, False)
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
