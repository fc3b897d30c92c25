"""Preset directories on the command line: `export --format preset` writes one, `--weights`
takes one, and a broken one is one line (exit 2)."""

import os

import numpy as np

from helpers import assert_one_line_error, run_inprocess, save_small_model
from mrcnn_tf.modeling.mask_rcnn import MaskRCNN


def test_export_preset_then_predict_with_it(tmp_path, capsys):
    import cv2  # noqa: PLC0415
    weights = save_small_model(tmp_path / "model.keras")
    out = tmp_path / "preset"
    code, stdout, err = run_inprocess(capsys, "export", "--format", "preset",
                                      "--weights", weights, "--out", str(out))
    assert code == 0, err
    assert sorted(os.listdir(out)) == ["config.json", "label_map.json", "metadata.json",
                                       "model.weights.h5"]
    loaded = MaskRCNN.from_preset(str(out))
    import keras  # noqa: PLC0415
    original = keras.models.load_model(weights)
    for a, b in zip(original.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)

    image = (np.random.RandomState(0).rand(64, 64, 3) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    code, stdout, err = run_inprocess(capsys, "predict", "--weights", str(out), "--inputs",
                                      str(tmp_path / "a.png"), "--out", str(tmp_path / "pred"))
    assert code == 0, err
    assert "1 images" in stdout and os.path.isfile(tmp_path / "pred" / "results.json")

    os.remove(out / "label_map.json")
    code, _, err = run_inprocess(capsys, "predict", "--weights", str(out), "--inputs",
                                 str(tmp_path / "a.png"), "--out", str(tmp_path / "pred"))
    assert_one_line_error(code, err, "--weights", str(out), "missing label_map.json")


def test_export_preset_refuses_a_precision(tmp_path, capsys):
    code, _, err = run_inprocess(capsys, "export", "--format", "preset", "--precision",
                                 "bfloat16", "--weights", str(tmp_path / "m.keras"),
                                 "--out", str(tmp_path / "p"))
    assert_one_line_error(code, err, "--precision=bfloat16", "a preset holds the float32")
