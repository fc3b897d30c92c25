"""Loading weights made for a config, with one-line errors for another's
(modeling/weights.py)."""

import os

import numpy as np
import pytest

from mrcnn_tf.modeling.mask_rcnn import MaskRCNN
from mrcnn_tf.modeling import weights

from helpers import small_model_config  # noqa: E402

CONFIG = small_model_config()


def built(config, seed=0):
    import keras  # noqa: PLC0415
    keras.utils.set_random_seed(seed)
    model = MaskRCNN(config)
    model.build()
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Models of this config and of two others, saved as .keras and .weights.h5."""
    folder = tmp_path_factory.mktemp("weights")
    models = {"same": built(CONFIG, seed=1),
              "classes": built(CONFIG.replace(num_classes=5), seed=2),
              "widths": built(CONFIG.replace(tiny_widths=(8, 16, 32, 64)), seed=3)}
    paths = {}
    for name, model in models.items():
        paths[name] = str(folder / f"{name}.keras")
        model.save(paths[name])
        paths[name + "_h5"] = str(folder / f"{name}.weights.h5")
        model.save_weights(paths[name + "_h5"])
    # A backup's file (AtomicBackupAndRestore): model and optimizer variables.
    import keras  # noqa: PLC0415
    compiled = models["same"]
    compiled.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    compiled.optimizer.build(compiled.trainable_variables)
    paths["same_with_optimizer_h5"] = str(folder / "same_with_optimizer.weights.h5")
    compiled.save_weights(paths["same_with_optimizer_h5"])
    return models, paths


@pytest.fixture(scope="module")
def fresh_model():
    model = built(CONFIG, seed=9)
    return model, model.get_weights()


@pytest.fixture
def fresh(fresh_model):
    """A model of CONFIG with its own initial weights (reset for every test)."""
    model, initial = fresh_model
    model.set_weights(initial)
    return model


def assert_same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb) > 50
    for x, y in zip(wa, wb):
        np.testing.assert_array_equal(x, y)


def differs(a, b):
    return any(not np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


# -- resolve_model_path ------------------------------------------------------------------------

def touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"x")
    return path


def test_run_folder_prefers_best_then_final_then_newest_epoch(tmp_path):
    run = str(tmp_path / "run")
    os.makedirs(run)
    with pytest.raises(ValueError, match=r"--weights=.*run: a folder without best.keras or "
                                         r"model.keras"):
        weights.resolve_model_path(run)
    touch(os.path.join(run, "checkpoints", "epoch-0002.keras"))
    touch(os.path.join(run, "checkpoints", "epoch-0010.keras"))
    touch(os.path.join(run, "checkpoints", ".tmp-epoch-0011.keras"))  # a kill's leftover
    assert weights.resolve_model_path(run) == os.path.join(run, "checkpoints", "epoch-0010.keras")
    touch(os.path.join(run, "model.keras"))
    assert weights.resolve_model_path(run) == os.path.join(run, "model.keras")
    touch(os.path.join(run, "best.keras"))
    assert weights.resolve_model_path(run) == os.path.join(run, "best.keras")


def test_run_folder_newest_epoch_is_by_number(tmp_path):
    """KeepLastCheckpoints writes epoch-{n:04d}: epoch 10000 has five digits."""
    run = str(tmp_path / "run")
    for name in ("epoch-9998.keras", "epoch-9999.keras", "epoch-10000.keras"):
        touch(os.path.join(run, "checkpoints", name))
    assert weights.resolve_model_path(run) == os.path.join(run, "checkpoints",
                                                           "epoch-10000.keras")


def test_resolve_missing_and_wrong_files(tmp_path):
    with pytest.raises(ValueError, match=r"--init_weights=.*nothing.keras: no such file"):
        weights.resolve_model_path(str(tmp_path / "nothing.keras"), "--init_weights")
    for name in ("model.h5", "model.pt", "model.keras.bak"):
        path = touch(str(tmp_path / name))
        with pytest.raises(ValueError, match=f"--weights={path}: expected a .keras model"):
            weights.resolve_model_path(path)
    for name in ("a.keras", "a.weights.h5"):
        path = touch(str(tmp_path / name))
        assert weights.resolve_model_path(path) == path


def test_load_model_needs_a_keras_file(saved):
    _, paths = saved
    with pytest.raises(ValueError, match="a .weights.h5 file has no config"):
        weights.load_model(paths["same_h5"])
    model = weights.load_model(paths["same"])
    assert model.config == CONFIG


def test_load_model_refuses_a_non_model(tmp_path):
    path = touch(str(tmp_path / "broken.keras"))
    with pytest.raises(ValueError, match=r"--weights=.*broken.keras: not a loadable"):
        weights.load_model(path)


# -- load_weights_into -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["same", "same_h5", "same_with_optimizer_h5"])
def test_load_weights_of_the_same_config(saved, fresh, kind):
    models, paths = saved
    assert differs(fresh, models["same"])
    weights.load_weights_into(fresh, paths[kind])
    assert_same_weights(fresh, models["same"])


def test_load_weights_from_a_run_folder(saved, fresh, tmp_path):
    models, paths = saved
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(paths["same"], run / "best.keras")
    weights.load_weights_into(fresh, str(run), "--init_weights")
    assert_same_weights(fresh, models["same"])


@pytest.mark.parametrize("kind, field", [
    ("classes", r"num_classes=5 \(this config: 3\)"),
    ("widths", r"tiny_widths=\(8, 16, 32, 64\) \(this config: \(16, 32, 64, 128\)\)"),
])
def test_keras_file_of_another_config(saved, fresh, kind, field):
    _, paths = saved
    before = fresh.get_weights()
    with pytest.raises(ValueError, match=f"--init_weights={paths[kind]}: made for another "
                                         f"config: {field}") as error:
        weights.load_weights_into(fresh, paths[kind], "--init_weights")
    assert "\n" not in str(error.value)
    for x, y in zip(before, fresh.get_weights()):  # untouched
        np.testing.assert_array_equal(x, y)


def test_new_classes_keep_everything_but_the_class_layers(saved, fresh):
    """Fine-tuning weights of 5 classes on 3: backbone, FPN, RPN and the heads' hidden layers
    come from the weights; the class-specific output layers keep their fresh values."""
    models, paths = saved
    source = models["classes"]
    initial = {v.path: v.numpy() for v in fresh.weights}
    weights.load_weights_into(fresh, paths["classes"], "--init_weights", new_classes=True)
    kept = fresh_count = 0
    for theirs, ours in zip(source.weights, fresh.weights):
        if any(layer in ours.path for layer in weights.CLASS_SPECIFIC_LAYERS):
            np.testing.assert_array_equal(ours.numpy(), initial[ours.path])
            fresh_count += 1
        else:
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
            kept += 1
    assert fresh_count == 6 and kept > 50  # kernel + bias of the three output layers


def test_new_classes_still_refuses_another_architecture(saved, fresh):
    _, paths = saved
    with pytest.raises(ValueError, match="tiny_widths"):
        weights.load_weights_into(fresh, paths["widths"], "--init_weights", new_classes=True)
    with pytest.raises(ValueError, match="needs a .keras model"):
        weights.load_weights_into(fresh, paths["classes_h5"], "--init_weights",
                                  new_classes=True)


@pytest.mark.parametrize("kind", ["classes_h5", "widths_h5"])
def test_weights_file_of_another_config(saved, fresh, kind):
    _, paths = saved
    with pytest.raises(ValueError, match=r"--weights=.*: made for another config: .*shapes "
                                         r"only in the model"):
        weights.load_weights_into(fresh, paths[kind])


def test_weights_file_that_is_not_hdf5(fresh, tmp_path):
    path = touch(str(tmp_path / "junk.weights.h5"))
    with pytest.raises(ValueError, match=r"--init_weights=.*junk.weights.h5: not an HDF5"):
        weights.load_weights_into(fresh, path, "--init_weights")


def test_architecture_differences():
    other = CONFIG.replace(num_classes=7, backbone="resnet50", fpn_channels=16,
                           learning_rate=0.5, image_min_size=32)
    found = weights.architecture_differences(other, CONFIG)
    assert [d.split("=")[0] for d in found] == ["num_classes", "backbone", "fpn_channels"]
    assert weights.architecture_differences(CONFIG.replace(batch_size=1), CONFIG) == []


def test_a_file_saved_before_the_model_was_built_is_refused(tmp_path):
    """keras.Model.save of an unbuilt model writes a config without weights (MaskRCNN.save
    refuses it; Keras' own save does not): loading it would give random weights silently."""
    import keras  # noqa: PLC0415
    path = str(tmp_path / "empty.keras")
    keras.Model.save(MaskRCNN(CONFIG), path)
    with pytest.raises(ValueError, match=r"--weights=.*empty.keras: the file holds no weights"):
        weights.load_model(path)


def test_a_keras_file_with_code_in_it_is_refused_unrun(tmp_path):
    """.keras files load in Keras' safe mode: a file whose config carries Python code (a
    Lambda layer's bytecode) is refused with a one-line error, and the code never runs."""
    import keras  # noqa: PLC0415
    marker = tmp_path / "ran"
    model = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(
        lambda x, path=str(marker): (open(path, "w").close(), x)[1])])
    path = tmp_path / "code.keras"
    model.save(str(path))
    if marker.exists():
        marker.unlink()  # saving traced the lambda once
    with pytest.raises(ValueError) as error:
        weights.load_model(str(path))
    assert "\n" not in str(error.value)
    assert str(path) in str(error.value) and "safe_mode" in str(error.value)
    assert not marker.exists()
