"""MaskRCNN.from_preset / save_to_preset / compile() and mrcnn_tf.load (modeling/task.py,
modeling/preset_files.py)."""

import json
import os
import shutil

import keras
import numpy as np
import pytest

import mrcnn_tf
from helpers import CATEGORY_IDS, small_labelled_model, small_model_config
from mrcnn_tf.modeling import backbones, preset_files
from mrcnn_tf.modeling import mask_rcnn as mask_rcnn_module
from mrcnn_tf.modeling.mask_rcnn import MaskRCNN

IMAGE = (np.random.RandomState(3).rand(70, 90, 3) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def model():
    model = small_labelled_model()
    model.build()
    return model


@pytest.fixture(scope="module")
def preset_dir(model, tmp_path_factory):
    return model.save_to_preset(tmp_path_factory.mktemp("presets") / "small")


def assert_same_weights(a, b):
    assert len(a.weights) == len(b.weights)
    for x, y in zip(a.weights, b.weights):
        # The same layer (paths start with the model's own, uniquified, name).
        assert x.path.split("/")[1:] == y.path.split("/")[1:]
        np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=x.path)


def test_save_to_preset_writes_the_four_files(model, preset_dir):
    assert sorted(os.listdir(preset_dir)) == ["config.json", "label_map.json", "metadata.json",
                                              "model.weights.h5"]
    with open(os.path.join(preset_dir, "metadata.json")) as f:
        metadata = json.load(f)
    assert metadata["format"] == "mrcnn_tf.preset"
    assert metadata["parameter_count"] == model.count_params()
    assert metadata["num_classes"] == 3 and metadata["mrcnn_tf_version"] == mrcnn_tf.__version__
    # Nothing left beside it: the staging folder was renamed or removed.
    assert os.listdir(os.path.dirname(preset_dir)) == ["small"]


def test_from_preset_directory_gives_the_same_model(model, preset_dir):
    loaded = MaskRCNN.from_preset(preset_dir)
    assert loaded.built and loaded.config == model.config
    assert loaded.class_names == model.class_names
    assert loaded.category_ids == CATEGORY_IDS
    assert_same_weights(model, loaded)
    ours, theirs = model.predict_images([IMAGE])[0], loaded.predict_images([IMAGE])[0]
    assert len(ours["boxes"]) > 0
    np.testing.assert_array_equal(ours["boxes"], theirs["boxes"])
    np.testing.assert_array_equal(ours["category_ids"], theirs["category_ids"])


def test_saving_again_into_the_directory_replaces_its_files(model, tmp_path):
    path = model.save_to_preset(tmp_path / "p")
    (tmp_path / "p" / "notes.txt").write_text("kept")
    other = small_labelled_model(score_threshold=0.25)
    other.build()
    other.save_to_preset(path)
    loaded = MaskRCNN.from_preset(path)
    assert loaded.config.score_threshold == 0.25
    assert_same_weights(other, loaded)
    assert (tmp_path / "p" / "notes.txt").read_text() == "kept"
    assert sorted(os.listdir(tmp_path)) == ["p"]


def test_overrides_and_new_classes(model, preset_dir):
    changed = MaskRCNN.from_preset(preset_dir, score_threshold=0.4, detections_per_image=5)
    assert changed.config.score_threshold == 0.4 and changed.config.detections_per_image == 5
    assert_same_weights(model, changed)
    # Two names instead of three: new classes, fresh class-specific layers, the rest loaded.
    fresh = MaskRCNN.from_preset(preset_dir, class_names=["cat", "dog"], category_ids=[7, 8])
    assert fresh.config.num_classes == 2 and fresh.class_names == ["cat", "dog"]
    assert fresh.category_ids == [7, 8]
    for theirs, weight in zip(model.weights, fresh.weights, strict=True):
        if any(layer in weight.path for layer in ("class_logits/", "box_deltas/",
                                                  "mask_head/predictor/")):
            assert weight.shape != theirs.shape
        else:
            np.testing.assert_array_equal(weight.numpy(), theirs.numpy(), weight.path)


def test_load_takes_presets_run_folders_and_keras_files(model, preset_dir, tmp_path):
    assert_same_weights(model, mrcnn_tf.load(preset_dir))
    # An import-weights / run folder: config.json, label_map.json, model.keras.
    folder = tmp_path / "run"
    folder.mkdir()
    model.save(str(folder / "model.keras"))
    for name in ("config.json", "label_map.json"):
        shutil.copy(os.path.join(preset_dir, name), folder / name)
    assert_same_weights(model, mrcnn_tf.load(folder))
    assert_same_weights(model, MaskRCNN.from_preset(str(folder)))
    reloaded = mrcnn_tf.load(folder / "model.keras", score_threshold=0.3)
    assert reloaded.config.score_threshold == 0.3
    assert_same_weights(model, reloaded)


def test_from_preset_name(monkeypatch):
    model = MaskRCNN.from_preset("shapes_tiny", class_names=["a", "b"], fpn_channels=32,
                                 box_head_fc_dim=64, mask_head_conv_dim=32)
    assert model.built and model.config.num_classes == 2 and model.class_names == ["a", "b"]
    assert model.config.name == "shapes_tiny"
    assert set(MaskRCNN.presets) == set(mrcnn_tf.PRESETS)
    assert all(isinstance(v, str) and v for v in MaskRCNN.presets.values())


def test_backbone_weights_that_cannot_be_fetched_give_one_line(monkeypatch):
    """No download is attempted: both the keras.applications builder and Keras' file fetcher
    are replaced by a failing stand-in, as an offline machine would fail."""
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None")
    monkeypatch.setattr(backbones, "_keras_application_resnet", offline)
    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(ValueError, match=r"preset 'coco_r50_fpn': backbone_weights='imagenet' "
                                         r"could not be loaded \(URL fetch failure.*"
                                         r"load_weights=False"):
        MaskRCNN.from_preset("coco_r50_fpn")


def test_a_loaded_model_never_fetches_its_backbone_weights(monkeypatch):
    """keras.models.load_model builds the model from its config and then loads its weights:
    the config's backbone_weights ("imagenet" for a run that started from them) is not
    loaded, so loading works offline."""
    seen = []
    real = mask_rcnn_module.build_backbone

    def recording(config):
        seen.append(config.backbone_weights)
        if config.backbone_weights is not None:  # never fetch anything in a test
            raise AssertionError("the backbone was asked to load pretrained weights")
        return real(config)
    monkeypatch.setattr(mask_rcnn_module, "build_backbone", recording)
    config = small_model_config().replace(backbone_weights="imagenet")
    model = MaskRCNN.from_config({"config": config.to_dict(), "class_names": None,
                                  "category_ids": None, "name": "m"})
    assert seen == [None]
    assert model.config.backbone_weights == "imagenet"  # the record of how training began


@pytest.mark.parametrize("make, needle", [
    (lambda d: os.remove(d / "label_map.json"), "missing label_map.json"),
    (lambda d: os.remove(d / "model.weights.h5"), "missing the weights"),
    (lambda d: (d / "config.json").write_text("{not json"), "config.json: not a mrcnn-tf config"),
    (lambda d: (d / "label_map.json").write_text('{"categories": []}'),
     "label_map.json: 0 classes, but config.json says num_classes=3"),
    (lambda d: (d / "saved_model.pb").write_bytes(b""), "a SavedModel export"),
])
def test_a_broken_preset_directory_gives_one_line(preset_dir, tmp_path, make, needle):
    broken = tmp_path / "broken"
    shutil.copytree(preset_dir, broken)
    make(broken)
    with pytest.raises(ValueError) as error:
        MaskRCNN.from_preset(str(broken))
    assert needle in str(error.value) and "\n" not in str(error.value)
    assert str(broken) in str(error.value)


@pytest.mark.parametrize("preset, needle", [
    ("coco_r50_fpm", "neither a preset name (expected one of coco_r101_fpn"),
    ("hf://someone/model", "remote presets are not fetched"),
])
def test_an_unknown_preset_gives_one_line(preset, needle):
    with pytest.raises(ValueError, match=None) as error:
        MaskRCNN.from_preset(preset)
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_load_refuses_a_bare_weights_file(model, tmp_path):
    path = str(tmp_path / "model.weights.h5")
    model.save_weights(path)
    with pytest.raises(ValueError, match="a weights file carries no config"):
        mrcnn_tf.load(path)
    with pytest.raises(ValueError, match="no such file"):
        mrcnn_tf.load(tmp_path / "missing.keras")


def test_compile_defaults_to_the_config_optimizer():
    model = small_labelled_model()
    model.compile()
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    config = model.config
    first = float(model.optimizer.learning_rate)  # step 0: the warmup's start
    assert first == pytest.approx(config.learning_rate * config.warmup_factor, rel=1e-6)
    model.compile(optimizer="adam")
    assert isinstance(model.optimizer, keras.optimizers.Adam)


def test_save_to_preset_refuses_an_unbuilt_model(tmp_path):
    with pytest.raises(ValueError, match="never built"):
        small_labelled_model().save_to_preset(tmp_path / "p")
    assert not os.path.exists(tmp_path / "p")
    assert os.listdir(tmp_path) == []


def test_preset_dir_reader_reports_weights_file(preset_dir):
    preset = preset_files.read_preset_dir(preset_dir)
    assert preset.weights_path.endswith("model.weights.h5")
    assert preset.label_map.dataset_ids == tuple(CATEGORY_IDS)


def test_the_short_python_example_trains_saves_and_loads(tmp_path):
    """The README's Python example through the package root, at a tiny size."""
    model = mrcnn_tf.MaskRCNN.from_preset("shapes_tiny", **small_model_config().to_dict()
                                          | {"name": "shapes_tiny"})
    model.compile()
    batches = mrcnn_tf.make_training_dataset(mrcnn_tf.shapes_dataset(4, image_size=64),
                                             model.config, batch_size=2, seed=0)
    history = model.fit(batches, epochs=1, steps_per_epoch=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    model.save_to_preset(tmp_path / "shapes")
    loaded = mrcnn_tf.load(tmp_path / "shapes")
    assert_same_weights(model, loaded)
    assert len(loaded.predict_images([IMAGE])) == 1


def test_weights_load_model_says_when_the_model_class_was_never_imported(tmp_path):
    """modeling/weights.py stands below mask_rcnn.py and does not import it."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    code = ("from mrcnn_tf.modeling import weights\n"
            "try:\n    weights.load_model('m.keras')\n"
            "except RuntimeError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")).stdout
    assert "import mrcnn_tf.modeling.mask_rcnn first" in out
