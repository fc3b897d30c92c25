"""`mrcnn-tf export` (mrcnn_tf/cli/export.py): numbered SavedModel versions and a float16
TFLite file from a saved .keras model; a missing weights file is named."""

from helpers import run_cli


def _save_shapes_model(folder):
    """Saves an untrained 64 px shapes_tiny model (seed 0) as folder/model.keras; its path."""
    import keras

    from mrcnn_tf.config import get_config
    from mrcnn_tf.modeling.mask_rcnn import MaskRCNN

    keras.utils.set_random_seed(0)
    config = get_config("shapes_tiny", image_min_size=64, image_max_size=64)
    model = MaskRCNN(config)
    model.build()
    model.save(str(folder / "model.keras"))
    return str(folder / "model.keras")


def test_export_saved_model_from_the_command_line(tmp_path):
    """One export through the command line (each costs a process and a trace); the numbering
    of later versions is export_saved_model's, tested in tests/export/test_saved_model.py."""
    weights = _save_shapes_model(tmp_path)
    out = tmp_path / "exports" / "shapes"
    (out / "1").mkdir(parents=True)  # an earlier version: this export must become 2
    result = run_cli("export", "--weights", weights, "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "2" / "saved_model.pb").exists()
    result = run_cli("export", "--weights", str(tmp_path / "missing.keras"), "--out", str(out))
    assert result.returncode == 2 and "missing.keras" in result.stderr


def test_export_tflite_from_the_command_line(tmp_path):
    weights = _save_shapes_model(tmp_path)
    out = tmp_path / "model.tflite"
    result = run_cli("export", "--weights", weights, "--out", str(out),
                     "--format", "tflite", "--quantization", "float16")
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.stat().st_size > 0 and "float16" in result.stdout
