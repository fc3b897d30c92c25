"""`mrcnn-tf export` (mrcnn_tf/cli/export.py): numbered SavedModel versions and a float16
TFLite file from a saved .keras model; a missing weights file is named.

The exports run as real processes; the refusals, which end before any model is loaded or
any global setting changes, run in this process through `mrcnn_tf.cli.main.run` (a process
each would cost TensorFlow's start-up, about 5 s of CPU, to read one line)."""

from helpers import run_cli, run_inprocess


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


def test_export_saved_model_from_the_command_line(tmp_path, capsys):
    """One export through the command line (each costs a process and a trace); the numbering
    of later versions is export_saved_model's, tested in tests/export/test_saved_model.py."""
    weights = _save_shapes_model(tmp_path)
    out = tmp_path / "exports" / "shapes"
    (out / "1").mkdir(parents=True)  # an earlier version: this export must become 2
    result = run_cli("export", "--weights", weights, "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "2" / "saved_model.pb").exists()
    code, _, err = run_inprocess(capsys, "export", "--weights", str(tmp_path / "missing.keras"),
                                 "--out", str(out))
    assert code == 2 and "missing.keras" in err


def test_export_tflite_from_the_command_line(tmp_path):
    """A full-integer int8 file calibrated on a folder of images: an unreadable one is skipped
    with a warning naming it, and the file is written (float16 and int8_dynamic go through
    the same command; tests/export/test_tflite.py covers every quantization)."""
    import cv2
    import numpy as np

    weights = _save_shapes_model(tmp_path)
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for i in range(3):
        image = np.random.default_rng(i).integers(0, 256, (48 + 16 * i, 64, 3), np.uint8)
        cv2.imwrite(str(calibration / f"{i}.png"), image)
    (calibration / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "model.tflite"
    result = run_cli("export", "--weights", weights, "--out", str(out), "--format", "tflite",
                     "--quantization", "int8", "--calibration", str(calibration))
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.stat().st_size > 0 and "TFLite (int8)" in result.stdout
    assert "skipped" in result.stderr and "broken.jpg" in result.stderr


def test_export_bfloat16_saved_model_computes_in_bfloat16(tmp_path):
    """--precision bfloat16 exports the same weights computing in bfloat16: the SavedModel's
    convolutions run on bfloat16 tensors, with the backbone's norms folded into them (no
    BatchNorm op left), its outputs stay float32, and its scores differ from the float32
    model's by bfloat16 rounding only."""
    import numpy as np
    import tensorflow as tf

    from helpers import skip_unless_cpu_runs
    from mrcnn_tf.modeling.weights import load_model

    skip_unless_cpu_runs("mixed_bfloat16")
    weights = _save_shapes_model(tmp_path)
    out = tmp_path / "exports"
    result = run_cli("export", "--weights", weights, "--out", str(out), "--precision",
                     "bfloat16")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "precision: mixed_bfloat16 (--precision=bfloat16)" in result.stdout
    image = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), np.uint8)
    signature = tf.saved_model.load(str(out / "1")).signatures["serving_default"]
    served = signature(image_tensor=tf.constant(image))
    graph = signature.graph.as_graph_def()
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    conv_dtypes = {tf.dtypes.as_dtype(n.attr["T"].type) for n in nodes if n.op == "Conv2D"}
    assert tf.bfloat16 in conv_dtypes, conv_dtypes
    assert not [n.name for n in nodes if "BatchNorm" in n.op or "rsqrt" in n.op.lower()]
    float32 = load_model(weights)(image)
    assert served["detection_scores"].dtype == tf.float32
    # The serving outputs are [0, 1]-normalized boxes; compare the scores, which both give.
    difference = np.abs(served["detection_scores"].numpy() - float32["scores"].numpy()).max()
    assert 0 < difference < 0.05, difference


def test_tflite_refuses_bfloat16(tmp_path, capsys):
    """TFLite computes in float32: --precision bfloat16 is refused before the model loads,
    naming the flag and the quantizations to use instead."""
    code, _, err = run_inprocess(capsys, "export", "--weights", str(tmp_path / "model.keras"),
                                 "--out", str(tmp_path / "m.tflite"), "--format", "tflite",
                                 "--precision", "bfloat16")
    assert code == 2
    assert "--precision=bfloat16" in err and "--quantization" in err


def test_int8_needs_calibration_images(tmp_path, capsys):
    """--quantization int8 without --calibration, or --calibration naming no image, is refused
    before the model loads, naming the flag; --calibration is refused where nothing is
    calibrated."""
    base = ("export", "--weights", str(tmp_path / "model.keras"), "--out",
            str(tmp_path / "m.tflite"), "--format", "tflite")
    code, _, err = run_inprocess(capsys, *base, "--quantization", "int8")
    assert code == 2 and "needs --calibration IMAGES" in err
    code, _, err = run_inprocess(capsys, *base, "--quantization", "int8", "--calibration",
                                 str(tmp_path / "none"))
    assert code == 2 and "--calibration: input" in err
    code, _, err = run_inprocess(capsys, *base, "--calibration", str(tmp_path))
    assert code == 2 and "only --format tflite --quantization int8" in err
