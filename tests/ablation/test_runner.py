"""Which runs `run_study` trains, finds on disk or trains again (training stubbed out)."""

import dataclasses
import json

import pytest
import tensorflow as tf

from mrcnn_tf.ablation import runner, studies


@pytest.fixture
def trained(monkeypatch):
    """Records the (variant, seed, steps) of every run trained; scores each 0.5."""
    calls = []

    def fake_train(settings, train_examples, eval_examples):
        calls.append((settings["variant"], settings["seed"], settings["steps"]))
        return {**settings, "train_seconds": 1.0, "eval_seconds": 1.0, "final_loss": 1.0,
                "metrics": {name: 0.5 for name in runner.RUN_METRICS}}

    monkeypatch.setattr(runner, "train_and_evaluate", fake_train)
    no_images = dataclasses.replace(runner.SMALL_SHAPES, generate=lambda *args: {},
                                    dataset=lambda *args: tf.data.Dataset.range(0))
    monkeypatch.setattr(runner, "SMALL_SHAPES", no_images)
    return calls


def test_runs_on_disk_with_the_same_settings_are_not_repeated(tmp_path, trained):
    study = studies.get_study("mask_classes")
    first = runner.run_study(study, str(tmp_path), seeds=2, steps=5)
    assert trained == [("class_specific", 0, 5), ("class_specific", 1, 5),
                       ("class_agnostic", 0, 5), ("class_agnostic", 1, 5)]
    again = runner.run_study(study, str(tmp_path), seeds=2, steps=5)
    assert len(trained) == 4 and again == first
    # Other settings are other runs; a third seed adds only its own runs.
    runner.run_study(study, str(tmp_path), seeds=3, steps=5)
    assert trained[4:] == [("class_specific", 2, 5), ("class_agnostic", 2, 5)]
    runner.run_study(study, str(tmp_path), seeds=1, steps=6)
    assert trained[6:] == [("class_specific", 0, 6), ("class_agnostic", 0, 6)]


def test_an_unreadable_run_file_is_run_again(tmp_path, trained, caplog):
    study = studies.get_study("mask_loss")
    runner.run_study(study, str(tmp_path), seeds=1, steps=5)
    path = tmp_path / "runs" / "softmax" / "seed-0.json"
    path.write_text('{"study": "mask_lo')  # cut short
    runner.run_study(study, str(tmp_path), seeds=1, steps=5)
    assert trained[-1] == ("softmax", 0, 5)
    assert json.loads(path.read_text())["metrics"]["segm/AP"] == 0.5
    assert "seed-0.json: unreadable" in caplog.text


@pytest.mark.parametrize("flag, kwargs", [("seeds", {"seeds": 0}), ("steps", {"steps": 0}),
                                          ("train_images", {"train_images": 0})])
def test_bad_counts_name_the_flag(tmp_path, flag, kwargs):
    with pytest.raises(ValueError, match=f"--{flag}=0: expected an integer >= 1"):
        runner.run_study(studies.get_study("mask_loss"), str(tmp_path), **kwargs)
