"""Checkpoints that a kill cannot corrupt (training/checkpoints.py), on a tiny Dense model."""

import json
import os

import keras
import numpy as np
import pytest

from mrcnn_tf.training import checkpoints

X = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
Y = np.random.default_rng(1).normal(size=(8, 2)).astype(np.float32)


def make_model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse")
    return model


def fit(model, epochs, callbacks=(), initial_epoch=0):
    return model.fit(X, Y, batch_size=4, epochs=epochs, callbacks=list(callbacks), verbose=0,
                     shuffle=False, initial_epoch=initial_epoch)


def optimizer_state(model):
    """[(variable name, value)] of the optimizer (iterations, momenta, ...), in order.
    Names, not paths: paths hold the optimizer's and layers' unique-ified names."""
    return [(v.name, np.array(v)) for v in model.optimizer.variables]


def weights_of(model):
    return [np.array(w) for w in model.get_weights()]


def assert_same_arrays(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def listing(folder):
    return sorted(os.listdir(folder))


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


# -- AtomicBackupAndRestore --------------------------------------------------------------------

@pytest.fixture
def trained(tmp_path):
    """A model trained 2 epochs (4 steps) with a backup in tmp_path/backup."""
    backup = str(tmp_path / "backup")
    model = make_model()
    fit(model, 2, [checkpoints.AtomicBackupAndRestore(backup)])
    return model, backup


def test_backup_holds_state_and_one_weights_file(trained):
    model, backup = trained
    assert listing(backup) == ["epoch-000002.weights.h5", "state.json"]
    with open(os.path.join(backup, "state.json")) as f:
        assert json.load(f) == {"epoch": 2, "weights": "epoch-000002.weights.h5"}
    assert checkpoints.read_backup_state(backup) == {"epoch": 2,
                                                     "weights": "epoch-000002.weights.h5"}


def test_backup_restores_weights_optimizer_and_epoch(trained):
    model, backup = trained
    assert int(model.optimizer.iterations) == 4
    fresh = make_model(seed=1)
    assert not np.array_equal(fresh.get_weights()[0], model.get_weights()[0])
    callback = checkpoints.AtomicBackupAndRestore(backup)
    callback.set_model(fresh)
    callback.on_train_begin()
    assert fresh._initial_epoch == 2
    assert_same_arrays(weights_of(fresh), weights_of(model))
    want = optimizer_state(model)
    got = optimizer_state(fresh)
    assert len(got) == len(want)
    assert [name for name, _ in got][:2] == ["iteration", "learning_rate"]
    momenta = [v for name, v in want if "momentum" in name]
    assert len(momenta) == 4 and all(np.any(v != 0) for v in momenta)
    for (name, a), (_, b) in zip(got, want):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert int(fresh.optimizer.iterations) == 4


def test_resumed_fit_runs_only_the_remaining_epochs(trained, tmp_path):
    model, backup = trained
    # The unbroken run: 3 epochs from the start.
    unbroken = make_model()
    fit(unbroken, 3, [checkpoints.AtomicBackupAndRestore(str(tmp_path / "other"))])
    resumed = make_model(seed=7)
    history = fit(resumed, 3, [checkpoints.AtomicBackupAndRestore(backup)])
    assert len(history.history["loss"]) == 1  # epoch 3 only
    assert int(resumed.optimizer.iterations) == 6
    np.testing.assert_allclose(np.concatenate([w.ravel() for w in weights_of(resumed)]),
                               np.concatenate([w.ravel() for w in weights_of(unbroken)]),
                               rtol=1e-6, atol=1e-7)
    assert listing(backup) == ["epoch-000003.weights.h5", "state.json"]


def test_a_save_failing_mid_write_keeps_the_previous_backup(trained, monkeypatch):
    model, backup = trained
    before = {name: read_bytes(os.path.join(backup, name)) for name in listing(backup)}
    written = []

    def broken_save_weights(path, overwrite=True):
        written.append(path)
        with open(path, "wb") as f:
            f.write(b"\x89HDF\r\n\x1a\n half a file")
        raise OSError("disk full")

    callback = checkpoints.AtomicBackupAndRestore(backup)
    callback.set_model(model)
    monkeypatch.setattr(model, "save_weights", broken_save_weights)
    with pytest.raises(OSError, match="disk full"):
        callback.on_epoch_end(2)
    assert written and os.path.basename(written[0]).startswith(".")
    assert listing(backup) == sorted(before)  # no temporary file, no new weights
    for name, data in before.items():
        assert read_bytes(os.path.join(backup, name)) == data, name
    assert checkpoints.read_backup_state(backup)["epoch"] == 2


def test_read_backup_state(tmp_path):
    assert checkpoints.read_backup_state(str(tmp_path / "none")) is None
    (tmp_path / "state.json").write_text(json.dumps({"epoch": 3,
                                                     "weights": "epoch-000003.weights.h5"}))
    with pytest.raises(ValueError, match="epoch-000003.weights.h5.*not a file of"):
        checkpoints.read_backup_state(str(tmp_path))
    for garbage in ("{not json", '{"epoch": 2}', '{"epoch": "x", "weights": "w"}', "[]",
                    '{"epoch": 1, "weights": "../elsewhere.h5"}'):
        (tmp_path / "state.json").write_text(garbage)
        with pytest.raises(ValueError, match="state.json"):
            checkpoints.read_backup_state(str(tmp_path))


# -- restore_newest_intact ---------------------------------------------------------------------

@pytest.fixture
def saved_run(tmp_path):
    """A run folder after 3 epochs: backup at epoch 3, checkpoints of epochs 1..3, and the
    model's final weights and optimizer state."""
    model = make_model()
    fit(model, 3, [checkpoints.KeepLastCheckpoints(str(tmp_path / "checkpoints"), 3),
                   checkpoints.AtomicBackupAndRestore(str(tmp_path / "backup"))])
    return tmp_path, weights_of(model), optimizer_state(model)


def _restore(folder):
    model = make_model(seed=9)
    epoch = checkpoints.restore_newest_intact(model, str(folder / "backup"),
                                              str(folder / "checkpoints"))
    return model, epoch


def test_an_intact_backup_is_restored_whole(saved_run):
    folder, weights, optimizer = saved_run
    model, epoch = _restore(folder)
    assert epoch == 3
    assert_same_arrays(weights_of(model), weights)
    assert len(optimizer_state(model)) == len(optimizer)
    assert_same_arrays([v for _, v in optimizer_state(model)], [v for _, v in optimizer])


@pytest.mark.parametrize("damage", ["truncated weights", "garbage state", "missing weights"])
def test_a_damaged_backup_resumes_from_the_newest_intact_checkpoint(saved_run, damage,
                                                                    caplog):
    import logging  # noqa: PLC0415
    folder, _, _ = saved_run
    state = json.loads((folder / "backup" / "state.json").read_text())
    weights = folder / "backup" / state["weights"]
    if damage == "truncated weights":
        weights.write_bytes(read_bytes(weights)[:300])
    elif damage == "garbage state":
        (folder / "backup" / "state.json").write_text("\x00\x01 not json")
    else:
        weights.unlink()
    # The newest checkpoint is damaged too: the run goes back to epoch 2's.
    newest = folder / "checkpoints" / "epoch-0003.keras"
    newest.write_bytes(b"PK\x03\x04 garbage")
    expected = make_model(seed=5)
    expected.optimizer.build(expected.trainable_variables)
    expected.load_weights(str(folder / "checkpoints" / "epoch-0002.keras"))
    with caplog.at_level(logging.WARNING):
        model, epoch = _restore(folder)
    assert epoch == 2 and int(optimizer_state(model)[0][1]) == 4  # 2 epochs of 2 steps
    assert_same_arrays(weights_of(model), weights_of(expected))
    assert_same_arrays([v for _, v in optimizer_state(model)],
                       [v for _, v in optimizer_state(expected)])
    messages = " ".join(r.getMessage() for r in caplog.records)
    named = "state.json" if damage == "garbage state" else state["weights"]
    assert named in messages and "epoch-0003.keras" in messages
    assert "resuming after epoch 2 from" in messages


def test_nothing_readable_starts_from_zero_with_the_model_untouched_and_a_warning(
        saved_run, caplog):
    import logging  # noqa: PLC0415
    folder, _, _ = saved_run
    (folder / "backup" / "state.json").write_text("garbage")
    for path in (folder / "checkpoints").iterdir():
        path.write_bytes(read_bytes(path)[:100])
    untouched = weights_of(make_model(seed=9))
    with caplog.at_level(logging.WARNING):
        model, epoch = _restore(folder)
    assert epoch == 0
    assert_same_arrays(weights_of(model), untouched)
    assert "training starts from step 0" in " ".join(r.getMessage() for r in caplog.records)


def test_an_empty_run_folder_starts_from_zero_without_a_warning(tmp_path, caplog):
    import logging  # noqa: PLC0415
    with caplog.at_level(logging.WARNING):
        model, epoch = _restore(tmp_path)
    assert epoch == 0 and not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not checkpoints.has_saved_state(str(tmp_path))


# -- KeepLastCheckpoints -----------------------------------------------------------------------

def test_keep_last_checkpoints(tmp_path):
    folder = str(tmp_path / "checkpoints")
    model = make_model()
    keeper = checkpoints.KeepLastCheckpoints(folder, keep=2)
    fit(model, 4, [keeper])
    assert listing(folder) == ["epoch-0003.keras", "epoch-0004.keras"]
    assert keeper.checkpoints() == [os.path.join(folder, "epoch-0003.keras"),
                                    os.path.join(folder, "epoch-0004.keras")]
    loaded = keras.models.load_model(os.path.join(folder, "epoch-0004.keras"))
    assert_same_arrays(weights_of(loaded), weights_of(model))
    np.testing.assert_allclose(loaded.predict(X, verbose=0), model.predict(X, verbose=0))


def test_keep_last_checkpoints_orders_by_epoch_number(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name in ("epoch-9999.keras", "epoch-10000.keras", "epoch-0002.keras", "notes.keras",
                 ".tmp-epoch-10001.keras"):
        (folder / name).write_bytes(b"x")
    keeper = checkpoints.KeepLastCheckpoints(str(folder), keep=1)
    assert [os.path.basename(p) for p in keeper.checkpoints()] == [
        "epoch-0002.keras", "epoch-9999.keras", "epoch-10000.keras"]
    assert checkpoints.KeepLastCheckpoints(str(tmp_path / "missing")).checkpoints() == []


@pytest.mark.parametrize("keep", [0, -1])
def test_keep_last_checkpoints_rejects_keep_below_one(tmp_path, keep):
    with pytest.raises(ValueError, match=f"--keep_checkpoints={keep}"):
        checkpoints.KeepLastCheckpoints(str(tmp_path), keep=keep)


# -- BestCheckpoint ----------------------------------------------------------------------------

def saved_weights(path):
    return weights_of(keras.models.load_model(path, compile=False))


def nudge(model, value):
    """Sets every weight to `value`, so each epoch's model is recognisable."""
    model.set_weights([np.full_like(w, value) for w in model.get_weights()])


def read_json(path):
    with open(path) as f:
        return json.load(f)


def test_best_checkpoint_max_mode(tmp_path):
    path = str(tmp_path / "run" / "best.keras")
    info = str(tmp_path / "run" / "best.json")
    model = make_model()
    best = checkpoints.BestCheckpoint(path)  # segm_AP, max
    best.set_model(model)

    nudge(model, 1.0)
    best.on_epoch_end(0, {"segm_AP": 0.3, "loss": 1.0})
    assert read_json(info) == {"epoch": 1, "segm_AP": 0.3}
    nudge(model, 2.0)
    best.on_epoch_end(1, {"segm_AP": 0.2})  # worse
    best.on_epoch_end(2, {"loss": 0.1})  # not evaluated this epoch
    best.on_epoch_end(3, None)
    best.on_epoch_end(4, {"segm_AP": 0.3})  # a tie is not an improvement
    assert all(np.all(w == 1.0) for w in saved_weights(path))
    assert read_json(info) == {"epoch": 1, "segm_AP": 0.3}
    nudge(model, 3.0)
    best.on_epoch_end(5, {"segm_AP": np.float32(0.5)})
    assert all(np.all(w == 3.0) for w in saved_weights(path))
    assert read_json(info) == {"epoch": 6, "segm_AP": 0.5}
    assert sorted(os.listdir(tmp_path / "run")) == ["best.json", "best.keras"]

    # A resumed run reads the best back and keeps comparing against it.
    resumed = checkpoints.BestCheckpoint(path)
    assert resumed.best == 0.5
    resumed.set_model(model)
    nudge(model, 4.0)
    resumed.on_epoch_end(6, {"segm_AP": 0.4})
    assert all(np.all(w == 3.0) for w in saved_weights(path))
    assert read_json(info) == {"epoch": 6, "segm_AP": 0.5}
    resumed.on_epoch_end(7, {"segm_AP": 0.6})
    assert all(np.all(w == 4.0) for w in saved_weights(path))
    assert read_json(info) == {"epoch": 8, "segm_AP": 0.6}


def test_best_checkpoint_min_mode(tmp_path):
    path = str(tmp_path / "lowest.keras")
    model = make_model()
    best = checkpoints.BestCheckpoint(path, monitor="val_loss", mode="min")
    best.set_model(model)
    nudge(model, 1.0)
    best.on_epoch_end(0, {"val_loss": 2.0})
    nudge(model, 2.0)
    best.on_epoch_end(1, {"val_loss": 3.0})
    assert all(np.all(w == 1.0) for w in saved_weights(path))
    best.on_epoch_end(2, {"val_loss": 0.5})
    assert all(np.all(w == 2.0) for w in saved_weights(path))
    assert read_json(str(tmp_path / "lowest.json")) == {"epoch": 3, "val_loss": 0.5}
    assert checkpoints.BestCheckpoint(path, monitor="val_loss", mode="min").best == 0.5


def test_best_checkpoint_rejects_unknown_mode(tmp_path):
    with pytest.raises(ValueError, match="mode='auto'"):
        checkpoints.BestCheckpoint(str(tmp_path / "best.keras"), mode="auto")


# -- remove_unfinished -------------------------------------------------------------------------

def test_remove_unfinished_removes_only_temporary_files(tmp_path):
    temporary = [".tmp-x.keras", "backup/.tmp-epoch-000001.weights.h5",
                 "checkpoints/.name.abc.tmp", ".metrics.json.k3j2.tmp"]
    kept = ["x.keras", "best.json", "checkpoints/epoch-0001.keras", ".hidden", "notes.tmp",
            "tmp-x.keras", "backup/state.json"]
    for name in temporary + kept:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert checkpoints.remove_unfinished(str(tmp_path)) == len(temporary)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == sorted(kept)
    assert checkpoints.remove_unfinished(str(tmp_path)) == 0


def test_best_checkpoint_with_an_unreadable_record_warns_and_saves_the_next(tmp_path, caplog):
    import logging  # noqa: PLC0415
    (tmp_path / "best.json").write_text('{"segm_AP": ')
    with caplog.at_level(logging.WARNING):
        callback = checkpoints.BestCheckpoint(str(tmp_path / "best.keras"))
    assert callback.best is None
    assert any("best.json is unreadable" in r.getMessage() for r in caplog.records)
    callback.set_model(make_model())
    callback.on_epoch_end(0, {"segm_AP": 0.25})
    assert json.loads((tmp_path / "best.json").read_text()) == {"epoch": 1, "segm_AP": 0.25}
    assert (tmp_path / "best.keras").exists()
