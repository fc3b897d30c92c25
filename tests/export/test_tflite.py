"""TFLite export: builtin ops only, and the file detects what the Keras model detects."""

import contextlib
import io
import os
import re
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.data.shapes import generate_shapes_example
from mrcnn_tf.export import tflite
from mrcnn_tf.modeling.mask_rcnn import MaskRCNN

from helpers import box_iou, small_model_config  # noqa: E402

SIZE = 64
# Dataset ids for classes 1..3, 0 among them: checks the class -> dataset id mapping, and that
# a real id of 0 is not mistaken for padding.
CATEGORY_IDS = [7, 0, 42]


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    config = small_model_config(SIZE)
    net = MaskRCNN(config, category_ids=CATEGORY_IDS)
    net.build()
    return net


@pytest.fixture(scope="module")
def images():
    return [generate_shapes_example(i, image_size=SIZE)["image"] for i in range(3)]


@pytest.fixture(scope="module")
def float32_export(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("tflite") / "model.tflite"
    return tflite.export_tflite(model, path, "float32")


def _op_names(path):
    """Every op of every subgraph (WHILE bodies included), from the TFLite analyzer's report."""
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        tf.lite.experimental.Analyzer.analyze(model_path=str(path), gpu_compatibility=False)
    return re.findall(r"Op#\d+ (\w+)", report.getvalue())


def _run(path, images):
    interpreter = tflite.make_interpreter(model_path=str(path))
    return [tflite.run_tflite(interpreter, image) for image in images]




def _mask_iou(a, b):
    """Row-wise IoU of [N, m, m] probability masks thresholded at 0.5 (1 when both empty)."""
    a, b = a >= 0.5, b >= 0.5
    inter = (a & b).sum(axis=(1, 2))
    union = (a | b).sum(axis=(1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def test_float32_uses_builtin_ops_only(float32_export):
    ops = _op_names(float32_export["path"])
    assert ops, "the analyzer report listed no ops"
    flex_or_custom = sorted({op for op in ops if op.startswith("Flex") or op == "CUSTOM"})
    assert not flex_or_custom
    # NMS lowered to the builtin; RoIAlign is the gather-only one (no CropAndResize anywhere);
    # weights are frozen constants, not uninitialized resource variables.
    assert "NON_MAX_SUPPRESSION_V4" in ops or "NON_MAX_SUPPRESSION_V5" in ops
    assert "GATHER" in ops and "RESIZE_BILINEAR" in ops
    assert "VAR_HANDLE" not in ops and "READ_VARIABLE" not in ops
    assert not any("CROP" in op for op in ops)


def test_export_writes_atomically_and_keeps_the_model(model, float32_export):
    path = float32_export["path"]
    assert os.path.getsize(path) == float32_export["size_bytes"] > 100_000
    assert os.listdir(os.path.dirname(path)) == ["model.tflite"]  # no temporary file left
    assert not model.config.static_shapes
    assert not model.box_pooler.static_shapes


def test_signature_names_and_shapes(float32_export, model):
    interpreter = tflite.make_interpreter(model_path=float32_export["path"])
    signature = interpreter.get_signature_list()[tflite.SIGNATURE_KEY]
    assert signature["inputs"] == ["images"]
    assert sorted(signature["outputs"]) == sorted(tflite.OUTPUT_NAMES)
    runner = interpreter.get_signature_runner(tflite.SIGNATURE_KEY)
    image_detail = runner.get_input_details()["images"]
    assert list(image_detail["shape"]) == [1, SIZE, SIZE, 3]
    assert image_detail["dtype"] == np.uint8
    d, m = model.config.detections_per_image, model.config.mask_size
    shapes = {name: list(detail["shape"])
              for name, detail in runner.get_output_details().items()}
    dtypes = {name: detail["dtype"] for name, detail in runner.get_output_details().items()}
    # The same dtypes as the SavedModel's outputs (TF Object Detection API convention).
    assert all(dtype == np.float32 for dtype in dtypes.values()), dtypes
    assert shapes == {"num_detections": [1], "detection_boxes": [1, d, 4],
                      "detection_scores": [1, d], "detection_classes": [1, d],
                      "detection_masks": [1, d, m, m]}


def test_float32_matches_keras(model, images, float32_export):
    results = _run(float32_export["path"], images)
    total = 0
    for image, lite in zip(images, results):
        ref = {k: v.numpy()[0] for k, v in model(tf.constant(image[None])).items()}
        n = int(ref["num_detections"])
        total += n
        assert int(lite["num_detections"][0]) == n
        expected_classes = np.asarray(CATEGORY_IDS)[ref["class_ids"][:n] - 1]
        np.testing.assert_array_equal(lite["detection_classes"][0, :n], expected_classes)
        np.testing.assert_allclose(lite["detection_scores"][0, :n], ref["scores"][:n],
                                   atol=1e-3)
        boxes = lite["detection_boxes"][0, :n] * SIZE  # normalized -> pixels of the input
        assert box_iou(boxes, ref["boxes"][:n]).min() >= 0.99
        assert _mask_iou(lite["detection_masks"][0, :n], ref["masks"][:n]).min() >= 0.98
        # Padding rows are zero.
        assert not lite["detection_scores"][0, n:].any()
        assert not lite["detection_masks"][0, n:].any()
    assert total > 0, "no detections to compare: the test would prove nothing"


def test_quantized_variants_are_smaller_and_close(model, images, float32_export, tmp_path):
    reference = _run(float32_export["path"], images)
    sizes = {}
    for quantization in ("float16", "int8_dynamic"):
        info = tflite.export_tflite(model, tmp_path / f"{quantization}.tflite", quantization)
        sizes[quantization] = info["size_bytes"]
        assert not {op for op in _op_names(info["path"]) if op.startswith("Flex")}
        for ref, lite in zip(reference, _run(info["path"], images)):
            n = int(ref["num_detections"][0])
            assert int(lite["num_detections"][0]) == n
            assert np.isfinite(lite["detection_masks"]).all()
            if quantization == "float16":
                # Weights rounded to float16, arithmetic still float32: same detections.
                np.testing.assert_array_equal(lite["detection_classes"],
                                              ref["detection_classes"])
                np.testing.assert_allclose(lite["detection_scores"], ref["detection_scores"],
                                           atol=1e-3)
                assert _mask_iou(lite["detection_masks"][0, :n],
                                 ref["detection_masks"][0, :n]).min() >= 0.95
            else:
                # int8 weights move the scores of this untrained model (all nearly tied) enough
                # to reorder detections, so compare the score distributions, not rows.
                np.testing.assert_allclose(np.sort(lite["detection_scores"][0, :n]),
                                           np.sort(ref["detection_scores"][0, :n]), atol=0.02)
    assert sizes["int8_dynamic"] < sizes["float16"] < float32_export["size_bytes"]
    # Weights dominate the file: float16 halves it, int8 quarters it (give or take the graph).
    assert sizes["float16"] < 0.7 * float32_export["size_bytes"]
    assert sizes["int8_dynamic"] < 0.45 * float32_export["size_bytes"]


def _op_dtypes(path):
    """[(op name, [input dtypes], [output dtypes])] of the main subgraph."""
    interpreter = tf.lite.Interpreter(model_path=str(path))
    tensors = interpreter.get_tensor_details()

    def dtypes(indices):
        return [tensors[i]["dtype"] for i in indices if i >= 0]

    return [(op["op_name"], dtypes(op["inputs"]), dtypes(op["outputs"]))
            for op in interpreter._get_ops_details()]


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
def test_int8_quantizes_the_feature_ops_and_keeps_coordinates_float(model, images,
                                                                    float32_export, tmp_path):
    """--quantization int8: every convolution and dense layer computes int8 -> int8 (ranges
    from the calibration images, one of another size, resized), the box arithmetic and NMS
    stay float32, no WHILE op is left for the calibrator to trip on, and the detections
    keep the float32 file's score distribution."""
    calibration = images + [generate_shapes_example(9, image_size=SIZE + 16)["image"]]
    info = tflite.export_tflite(model, tmp_path / "int8.tflite", "int8",
                                calibration_images=iter(calibration))
    ops = _op_dtypes(info["path"])
    names = {name for name, _, _ in ops}
    assert "WHILE" not in names and not {n for n in names if n.startswith("Flex")}
    quantized = [(name, outputs) for name, _, outputs in ops if name in tflite.INT8_OPS]
    assert quantized and all(outputs == [np.int8] for _, outputs in quantized), quantized
    assert {"CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"} <= {n for n, _ in quantized}
    nms = [inputs for name, inputs, _ in ops if name.startswith("NON_MAX_SUPPRESSION")]
    assert nms and all(inputs[:2] == [np.float32, np.float32] for inputs in nms)
    arithmetic = {outputs[0] for name, _, outputs in ops if name in ("EXP", "SUB", "MUL")}
    assert np.float32 in arithmetic and np.int8 not in arithmetic  # (int32: index math)
    assert info["size_bytes"] < 0.45 * float32_export["size_bytes"]
    for ref, lite in zip(_run(float32_export["path"], images), _run(info["path"], images)):
        n = int(ref["num_detections"][0])
        assert int(lite["num_detections"][0]) == n
        assert np.isfinite(lite["detection_masks"]).all()
        np.testing.assert_allclose(np.sort(lite["detection_scores"][0, :n]),
                                   np.sort(ref["detection_scores"][0, :n]), atol=0.05)


def test_int8_needs_usable_calibration_images(model, tmp_path):
    with pytest.raises(ValueError, match="calibration_images are needed by 'int8'"):
        tflite.export_tflite(model, tmp_path / "m.tflite", "int8")
    with pytest.raises(ValueError, match="calibration_images are needed by 'int8'"):
        tflite.export_tflite(model, tmp_path / "m.tflite", "float32", calibration_images=[])
    good = np.zeros([SIZE, SIZE, 3], np.uint8)
    with pytest.raises(ValueError, match=r"calibration image 1: expected uint8 \[H, W, 3\], "
                                         r"got float32 \[64, 64\]"):
        tflite.export_tflite(model, tmp_path / "m.tflite", "int8",
                             calibration_images=[good, np.zeros([SIZE, SIZE], np.float32)])
    assert not list(tmp_path.iterdir())


def test_bad_arguments(model, tmp_path):
    with pytest.raises(ValueError, match="quantization='int4'"):
        tflite.export_tflite(model, tmp_path / "m.tflite", "int4")
    with pytest.raises(ValueError, match="input_size"):
        tflite.export_tflite(model, tmp_path / "m.tflite", input_size=(64,))
    with pytest.raises(TypeError, match="MaskRCNN"):
        tflite.export_tflite(keras.Sequential([keras.layers.Dense(1)]), tmp_path / "m.tflite")
    assert not list(tmp_path.iterdir())


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
def test_interpreter_falls_back_to_tf_lite(float32_export, images, monkeypatch):
    # A None entry in sys.modules makes `import ai_edge_litert.interpreter` raise ImportError,
    # as on a machine without the package.
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    interpreter = tflite.make_interpreter(model_path=float32_export["path"])
    assert type(interpreter) is tf.lite.Interpreter
    outputs = tflite.run_tflite(interpreter, images[0])
    assert int(outputs["num_detections"][0]) > 0
    with pytest.raises(ValueError, match="expected uint8"):
        tflite.run_tflite(interpreter, images[0].astype(np.float32))
