"""The run folder (trainer.prepare_run_folder) refuses to mix two runs, and TrainOptions.check
rejects bad flags. trainer.train() itself runs only in subprocesses (test_resume_and_distribute):
it changes process-wide TensorFlow settings."""

import dataclasses
import json
import os

import keras
import pytest
import tensorflow as tf

import mrcnn_tf
from mrcnn_tf.config import Config, get_config
from mrcnn_tf.evaluation.coco_eval import LabelMap
from mrcnn_tf.training import trainer
from mrcnn_tf.training.trainer import TrainOptions

CONFIG = get_config("shapes_tiny", image_min_size=64, image_max_size=64)
LABELS = LabelMap((0, 7, 3), ("square", "circle", "triangle"))


def options(run_dir, **changes):
    values = dict(run_dir=str(run_dir), epochs=3, steps_per_epoch=5, batch_size=2, seed=4)
    values.update(changes)
    return TrainOptions(**values)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def test_prepare_writes_config_labels_and_run(tmp_path):
    run = tmp_path / "runs" / "a"  # created, parents included
    opts = options(run)
    trainer.prepare_run_folder(str(run), CONFIG, LABELS, opts)
    assert sorted(os.listdir(run)) == ["config.json", "label_map.json", "run.json"]
    assert Config.from_dict(read_json(run / "config.json")) == CONFIG
    assert LabelMap.from_dict(read_json(run / "label_map.json")) == LABELS
    info = read_json(run / "run.json")
    assert info["mrcnn_tf"] == mrcnn_tf.__version__
    assert info["tensorflow"] == tf.__version__
    assert info["keras"] == keras.__version__
    assert info["schedule"] == {"epochs": 3, "steps_per_epoch": 5, "batch_size": 2, "seed": 4,
                                "mixed_precision": "float32", "jit_compile": False}
    assert info["schedule"] == opts.schedule()
    assert info["options"] == dataclasses.asdict(opts)
    assert isinstance(info["command"], list)


def test_prepare_again_with_the_same_run(tmp_path):
    trainer.prepare_run_folder(str(tmp_path), CONFIG, LABELS, options(tmp_path))
    # Options outside the schedule may change on resume (and are recorded).
    again = options(tmp_path, eval_every=2, keep_checkpoints=1, verbose=0)
    trainer.prepare_run_folder(str(tmp_path), CONFIG, LABELS, again)
    assert read_json(tmp_path / "run.json")["options"]["keep_checkpoints"] == 1
    assert Config.from_dict(read_json(tmp_path / "config.json")) == CONFIG


def test_prepare_refuses_another_config(tmp_path):
    trainer.prepare_run_folder(str(tmp_path), CONFIG, LABELS, options(tmp_path))
    before = (tmp_path / "config.json").read_bytes()
    other = CONFIG.replace(learning_rate=0.5, num_classes=4)
    with pytest.raises(ValueError) as error:
        trainer.prepare_run_folder(str(tmp_path), other, LabelMap.from_names("abcd"),
                                   options(tmp_path))
    message = str(error.value)
    assert message.startswith(f"--run_dir={tmp_path} holds a run with another config")
    assert "fields learning_rate, num_classes differ" in message
    assert "image_min_size" not in message
    assert (tmp_path / "config.json").read_bytes() == before  # nothing overwritten
    assert LabelMap.from_dict(read_json(tmp_path / "label_map.json")) == LABELS


@pytest.mark.parametrize("change, match", [
    ({"batch_size": 4}, r"--batch_size=2 there, 4 now"),
    ({"seed": 5}, r"--seed=4 there, 5 now"),
    ({"steps_per_epoch": 6}, r"--steps_per_epoch=5 there, 6 now"),
    ({"mixed_precision": "mixed_bfloat16"}, r"--mixed_precision=float32 there, mixed_bfloat16"),
])
def test_prepare_refuses_another_schedule(tmp_path, change, match):
    trainer.prepare_run_folder(str(tmp_path), CONFIG, LABELS, options(tmp_path))
    before = (tmp_path / "run.json").read_bytes()
    with pytest.raises(ValueError, match=f"--run_dir=.*another schedule \\({match}"):
        trainer.prepare_run_folder(str(tmp_path), CONFIG, LABELS, options(tmp_path, **change))
    assert (tmp_path / "run.json").read_bytes() == before


def test_prepare_lists_every_schedule_difference(tmp_path):
    trainer.prepare_run_folder(str(tmp_path), CONFIG, LABELS, options(tmp_path))
    with pytest.raises(ValueError) as error:
        trainer.prepare_run_folder(str(tmp_path), CONFIG, LABELS,
                                   options(tmp_path, batch_size=8, epochs=9))
    assert "--batch_size=2 there, 8 now" in str(error.value)
    assert "--epochs=3 there, 9 now" in str(error.value)


def test_prepare_refuses_an_unwritable_run_dir(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    run = blocker / "run"
    with pytest.raises(ValueError, match=f"--run_dir={run}: not a writable folder"):
        trainer.prepare_run_folder(str(run), CONFIG, LABELS, options(run))
    assert blocker.read_text() == "not a folder"


def test_train_options_check_accepts_defaults(tmp_path):
    assert options(tmp_path).check() is None
    assert options(tmp_path, tensorboard_images=0).check() is None


@pytest.mark.parametrize("field, value", [
    ("epochs", 0), ("steps_per_epoch", 0), ("batch_size", -2), ("eval_every", 0),
    ("keep_checkpoints", 0), ("tensorboard_images", -1),
])
def test_train_options_check_rejects(tmp_path, field, value):
    with pytest.raises(ValueError, match=f"^--{field}={value}: expected"):
        options(tmp_path, **{field: value}).check()


@pytest.mark.parametrize("name", ["config.json", "run.json"])
@pytest.mark.parametrize("damage", [b"", b"{\"trunc", b"\x00\xff garbage", b"[1, 2]"])
def test_prepare_rewrites_an_unreadable_record_with_a_warning(tmp_path, name, damage, caplog):
    import logging  # noqa: PLC0415
    trainer.prepare_run_folder(str(tmp_path), CONFIG, LABELS, options(tmp_path))
    (tmp_path / name).write_bytes(damage)
    with caplog.at_level(logging.WARNING):
        trainer.prepare_run_folder(str(tmp_path), CONFIG, LABELS, options(tmp_path))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(tmp_path / name) in w and "unreadable" in w for w in warnings), warnings
    assert Config.from_dict(read_json(tmp_path / "config.json")) == CONFIG
    assert read_json(tmp_path / "run.json")["schedule"] == options(tmp_path).schedule()
