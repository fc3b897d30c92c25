"""Every pooler and mask variant (Config.roi_pooler, mask_loss, mask_class_agnostic,
mask_head_type, mask_upsample) trains a step, round-trips through a .keras file, exports to a
SavedModel and converts to a builtin-ops TFLite file that detects what the Keras model does.

Two models cover the non-default choices between them (each conversion costs time), except
`roi_align_v1` (the default pooler's own ops with aligned=False; its numbers in both shape
policies are checked in tests/layers/test_pyramid_poolers.py) and `mask_upsample=bilinear` (the same layer as `nearest` with
another interpolation, a builtin RESIZE_BILINEAR; tests/modeling/test_mask_heads.py)."""

import contextlib
import io
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.data.shapes import generate_shapes_example
from mrcnn_tf.export import tflite
from mrcnn_tf.export.saved_model import export_saved_model
from mrcnn_tf.modeling.mask_rcnn import MaskRCNN
from mrcnn_tf.modeling.optimizer import make_optimizer

from helpers import box_iou, small_model_config, two_image_training_set  # noqa: E402

SIZE = 64
VARIANTS = {
    "roi_pool+softmax+nearest": dict(roi_pooler="roi_pool", roi_levels=(3, 3),
                                     mask_loss="softmax", mask_upsample="nearest"),
    "roi_warp+agnostic+mlp": dict(roi_pooler="roi_warp", mask_class_agnostic=True,
                                  mask_head_type="mlp", mask_head_fc_dim=64),
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def trained(request, tmp_path_factory):
    """(name, model after two training steps, a folder for its files)."""
    keras.utils.set_random_seed(0)
    config = small_model_config(SIZE, **VARIANTS[request.param])
    model = MaskRCNN(config, class_names=["square", "circle", "triangle"])
    model.compile(optimizer=make_optimizer(config, batch_size=2))
    _, data = two_image_training_set(config, SIZE)
    history = model.fit(data, epochs=1, steps_per_epoch=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["mask_loss"][-1] > 0
    return request.param, model, tmp_path_factory.mktemp(request.param.replace("+", "_"))


def _images():
    return [generate_shapes_example(i, image_size=SIZE)["image"] for i in range(2)]


def _mask_iou(a, b):
    a, b = a >= 0.5, b >= 0.5
    union = (a | b).sum(axis=(1, 2))
    return np.where(union > 0, (a & b).sum(axis=(1, 2)) / np.maximum(union, 1), 1.0)


def test_keras_file_round_trip(trained):
    name, model, folder = trained
    path = str(folder / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.config == model.config
    image = tf.constant(_images()[0][None])
    want, got = model(image), loaded(image)
    for key in ("boxes", "scores", "masks"):
        np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), atol=1e-5,
                                   err_msg=f"{name}: {key}")


def test_saved_model_serves_the_variant(trained):
    name, model, folder = trained
    served = tf.saved_model.load(export_saved_model(model, str(folder / "saved_model")))
    image = _images()[0]
    out = served.signatures["serving_default"](tf.constant(image[None]))
    want = model(tf.constant(image[None]))
    n = int(want["num_detections"][0])
    assert n > 0 and int(out["num_detections"][0]) == n, name
    np.testing.assert_allclose(out["detection_scores"].numpy()[0, :n],
                               want["scores"].numpy()[0, :n], atol=1e-4)
    np.testing.assert_allclose(out["detection_masks"].numpy()[0, :n],
                               want["masks"].numpy()[0, :n], atol=1e-3)


def test_tflite_has_builtin_ops_only_and_matches_keras(trained):
    name, model, folder = trained
    path = tflite.export_tflite(model, str(folder / "model.tflite"))["path"]
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        tf.lite.experimental.Analyzer.analyze(model_path=str(path), gpu_compatibility=False)
    ops = set(re.findall(r"Op#\d+ (\w+)", report.getvalue()))
    assert ops and not {op for op in ops if op.startswith("Flex") or op == "CUSTOM"}, name
    if model.config.roi_pooler == "roi_pool":
        assert "WHILE" in ops  # the running max over a bin's cells
    interpreter = tflite.make_interpreter(model_path=str(path))
    for image in _images():
        lite = tflite.run_tflite(interpreter, image)
        ref = {k: v.numpy()[0] for k, v in model(tf.constant(image[None])).items()}
        n = int(ref["num_detections"])
        assert n > 0 and int(lite["num_detections"][0]) == n, name
        np.testing.assert_allclose(lite["detection_scores"][0, :n], ref["scores"][:n],
                                   atol=1e-3)
        assert box_iou(lite["detection_boxes"][0, :n] * SIZE, ref["boxes"][:n]).min() >= 0.99
        assert _mask_iou(lite["detection_masks"][0, :n], ref["masks"][:n]).min() >= 0.98
