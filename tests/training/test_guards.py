"""Training that cannot work stops in one line: frozen random layers are refused before the
run folder is touched (training.preflight), and a non-finite or exploding loss stops the run
mid-epoch, naming the step and the last good state (training.loss_guard)."""

import math
import os
import subprocess
import sys
import types

import pytest

from helpers import assert_one_line_error, run_inprocess
from mrcnn_tf.config import get_config
from mrcnn_tf.training import preflight
from mrcnn_tf.training.loss_guard import LossGuard, TrainingDiverged

RANDOM_R50 = get_config("coco_r50_fpn", backbone_weights=None)


def test_frozen_random_layers_are_refused_with_the_fixes():
    with pytest.raises(ValueError) as error:
        preflight.check_trainable(RANDOM_R50)
    message = str(error.value)
    assert "\n" not in message
    for needle in ("norm='frozen_bn'", "freeze_at=2 (frozen random: the stem and C2)",
                   "backbone_weights=imagenet", "--init_weights", "coco_r50_fpn_scratch",
                   "norm=gn"):
        assert needle in message, message
    with pytest.raises(ValueError, match="freeze_at=3 \\(frozen random: the stem and C2..C3"):
        preflight.check_trainable(RANDOM_R50.replace(norm="gn", freeze_at=3))
    with pytest.raises(ValueError, match="freeze_at=1 \\(frozen random: the stem\\)"):
        preflight.check_trainable(RANDOM_R50.replace(norm="gn", freeze_at=1))
    with pytest.raises(ValueError, match="norm='frozen_bn'"):
        preflight.check_trainable(RANDOM_R50.replace(freeze_at=0))


@pytest.mark.parametrize("config, init_weights, resumed", [
    (RANDOM_R50.replace(backbone_weights="imagenet"), None, False),  # pretrained
    (RANDOM_R50, "runs/imported", False),  # --init_weights
    (RANDOM_R50, None, True),  # a resumed run is no longer random
    (get_config("coco_r50_fpn_scratch"), None, False),  # the from-scratch recipe
    (get_config("shapes_tiny"), None, False),  # BatchNorm that trains, nothing frozen
])
def test_configs_that_can_learn_pass(config, init_weights, resumed):
    preflight.check_trainable(config, init_weights, resumed)


def test_the_scratch_preset_freezes_nothing_and_normalizes_everything():
    c = get_config("coco_r50_fpn_scratch")
    assert (c.backbone_weights, c.norm, c.freeze_at, c.fpn_norm_kind) == (None, "gn", 0, "gn")
    assert (c.box_head_norm, c.mask_head_norm, c.box_head_num_convs) == ("gn", "gn", 4)


def test_train_refuses_before_writing_the_run_folder(capsys, tmp_path):
    code, _, err = run_inprocess(
        capsys, "train", "--config", "coco_r50_fpn", "--override", "backbone_weights=none",
        "--override", "num_classes=3", "--synthetic_train_images", "2",
        "--run_dir", str(tmp_path / "run"))
    assert_one_line_error(code, err, "frozen_bn", "coco_r50_fpn_scratch")
    assert not (tmp_path / "run").exists()


def _guard(tmp_path=None, **kwargs):
    guard = LossGuard(str(tmp_path) if tmp_path else None, steps_per_epoch=10, **kwargs)
    guard.set_model(types.SimpleNamespace(stop_training=False))
    return guard


def _feed(guard, losses, epoch=0, extra=None):
    guard.on_epoch_begin(epoch)
    for batch, loss in enumerate(losses):
        guard.on_train_batch_end(batch, {"loss": loss, "class_loss": loss / 2, **(extra or {})})


def test_a_non_finite_loss_stops_at_its_step_naming_the_last_checkpoint(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    for epoch in (1, 2):
        (tmp_path / "checkpoints" / f"epoch-000{epoch}.keras").write_bytes(b"x")
    guard = _guard(tmp_path)
    with pytest.raises(TrainingDiverged) as error:
        _feed(guard, [1.0, 0.9, math.nan], epoch=2)
    message = str(error.value)
    assert "\n" not in message and guard.model.stop_training
    assert "step 23 (epoch 3)" in message and "loss=nan" in message
    assert os.path.join(str(tmp_path), "checkpoints", "epoch-0002.keras") in message
    assert "learning_rate" in message and "gradient_clip_norm" in message


def test_a_non_finite_part_of_the_loss_is_named(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"mask_loss=inf.*none, no epoch finished"):
        _feed(_guard(tmp_path), [1.0, 1.0], extra={"mask_loss": math.inf})


def test_an_exploding_loss_stops_after_patience_steps():
    guard = _guard()
    _feed(guard, [2.0, 25.0, 30.0])  # two steps over 10x: not yet
    with pytest.raises(TrainingDiverged, match=r"step 4 .*exploded, 40 against 2"):
        guard.on_train_batch_end(3, {"loss": 40.0})


@pytest.mark.parametrize("losses", [
    [3.0, 2.5, 2.0, 1.2, 0.8, 0.5, 0.4],  # a run that learns
    [2.0, 25.0, 3.0, 25.0, 25.0, 2.0, 25.0],  # spikes, never 3 in a row
])
def test_sane_runs_are_not_stopped(losses):
    guard = _guard()
    _feed(guard, losses)
    assert not guard.model.stop_training


def test_mixed_float16_leaves_non_finite_steps_to_loss_scaling():
    guard = _guard(check_finite=False)
    _feed(guard, [1.0, math.inf, math.nan, 1.0])
    assert not guard.model.stop_training


def test_a_diverging_cli_run_stops_in_one_line(tmp_path):
    """A learning rate of 1e30 breaks the weights within a few steps: the run stops with exit
    code 1 and one line naming the step, and writes no backup of the broken state."""
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "mrcnn_tf.cli", "train", "--config", "shapes_tiny",
               "--override", "image_min_size=64", "--override", "image_max_size=64",
               "--override", "learning_rate=1e30", "--override", "warmup_steps=0",
               "--synthetic_train_images", "4", "--epochs", "2", "--steps_per_epoch", "4",
               "--batch_size", "2", "--run_dir", str(run_dir)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    lines = [l for l in result.stderr.splitlines() if l.startswith("mrcnn-tf train:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "training stopped at step" in lines[0]
    assert "non-finite" in lines[0] or "exploded" in lines[0]
    assert not (run_dir / "backup" / "state.json").exists() or "epoch 2" in lines[0]
