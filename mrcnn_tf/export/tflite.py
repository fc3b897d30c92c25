"""TFLite export of a MaskRCNN: one fixed-size image in, padded detections out, builtin ops only.

The exported graph is the model's own inference path (`MaskRCNN.call`: resize + pad +
normalize, backbone, FPN, RPN, proposals, box head, per-class NMS, then the mask and/or
keypoint heads the config has) traced for a single uint8 image of a fixed size, under the
static shape policy (`static_shapes=True`: the gather-only RoIAlign in every pooler, box,
mask and keypoint, and the heads on all rows). It converts with `tf.lite.OpsSet.TFLITE_BUILTINS`
alone: no Flex (select TensorFlow) ops and no custom ops, so the plain LiteRT interpreter runs
it on phones. Ops it lowers to include CONV_2D, RESIZE_BILINEAR, TOPK_V2, GATHER,
NON_MAX_SUPPRESSION_V4 (on the one image directly: no batch map, so no WHILE), SELECT_V2 and
arithmetic. The keypoint heatmap decode (`ops.keypoints.heatmaps_to_keypoints` on the 56 x 56
maps, no resize) adds ARG_MAX, FLOOR_DIV and FLOOR_MOD (and RESHAPE, TRANSPOSE, REDUCE_MAX,
EXP, SUM, which the rest of the graph has too).

Signature "serving_default", input "images" uint8 [1, H, W, 3] RGB 0..255, outputs
(D = config.detections_per_image, K = config.num_keypoints; rows past num_detections are
zero), the same names as the SavedModel's (`output_names(config)`):
  "num_detections"    float32 [1]
  "detection_boxes"   float32 [1, D, 4] (y1, x1, y2, x2) normalized by the input H and W
  "detection_scores"  float32 [1, D]
  "detection_classes" float32 [1, D] the dataset's own category ids (`model.category_ids`;
                      read only the first num_detections rows: 0 can be a real dataset id)
  "detection_masks"   float32 [1, D, mask_size, mask_size] box-relative mask probabilities
                      (paste into the image with `mrcnn_tf.ops.masks.paste_masks`); only when
                      config.mask_on
  "detection_keypoints"       float32 [1, D, K, 3] (y, x, score), y and x in continuous
                      pixels (pixel i covers [i, i + 1)) normalized by the input H and W as the
                      boxes; only when K > 0
  "detection_keypoint_scores" float32 [1, D, K] the score column; only when K > 0
"""

from __future__ import annotations

import os
import tempfile
from typing import Iterable, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from mrcnn_tf.export import saved_model
from mrcnn_tf.modeling import rebuild
from mrcnn_tf.modeling.mask_rcnn import MaskRCNN
from mrcnn_tf.ops import keypoints as keypoint_ops

QUANTIZATIONS = ("float32", "float16", "int8_dynamic", "int8")
SIGNATURE_KEY = "serving_default"
INPUT_NAME = "images"
# A Mask R-CNN's outputs (mask head, no keypoints); `output_names` gives any model's. The
# SavedModel signatures have the same names.
OUTPUT_NAMES = saved_model.OUTPUT_KEYS
output_names = saved_model.output_keys

__all__ = ["export_tflite", "convert_tflite", "quantize_calibrated", "int8_nodes",
           "builtin_inference_model", "make_interpreter",
           "run_tflite", "output_names", "QUANTIZATIONS", "OUTPUT_NAMES", "SIGNATURE_KEY",
           "INPUT_NAME"]


def builtin_inference_model(model):
    """Returns `model` itself if it already converts with builtin ops, else a copy that does.

    The copy is a new MaskRCNN built from `model.config` with `static_shapes=True` and
    `model`'s weights; both RoIAlign implementations give the same numbers
    (tests/ops/test_roi_align.py), so the copy detects what `model` detects.

    Keypoints: torchvision's decode (`keypoint_decode_rule="torchvision"`, imported
    torchvision weights) resizes every RoI's heatmaps to its own size in float64, which no
    TFLite builtin does; the copy decodes Detectron2's way instead (the centre of the 56 x 56
    argmax bin, within half a bin of torchvision's point, scored by its softmax probability
    rather than torchvision's logit), and a warning says so.
    """
    _check_model(model)
    model.build()
    changes = {}
    if not model.config.static_shapes:
        changes["static_shapes"] = True
    decode_rule = keypoint_ops.KEYPOINT_DECODE_RULES[model.config.keypoint_decode_rule]
    if model.config.num_keypoints and not decode_rule.static_shapes:
        logging.warning(f"export_tflite: keypoint_decode_rule="
                        f"{model.config.keypoint_decode_rule!r} has no TFLite "
                        "builtin form; the TFLite file decodes keypoints by the 'detectron2' "
                        "rule (argmax bin centre, within half a heatmap bin; scores are "
                        "softmax probabilities, not logits)")
        changes["keypoint_decode_rule"] = "detectron2"
    if not changes:
        return model
    return rebuild.rebuilt(model, model.config.replace(**changes))


def _check_model(model):
    if not isinstance(model, MaskRCNN):
        raise TypeError(f"export_tflite model: expected a mrcnn_tf MaskRCNN, got "
                        f"{type(model).__name__}")


class _Detector(saved_model.InferenceModule):
    """Wraps the model in the exported signature: uint8 [1, H, W, 3] -> the `output_names`
    dict."""

    def __init__(self, model, input_size):
        super().__init__(model)
        self.input_size = input_size
        # Row c holds the dataset id of model class c; row 0 (padding) maps to 0.
        self.category_table = tf.constant([0] + list(model.category_ids), tf.int32)

    def serve(self, images):
        """images: uint8 [1, H, W, 3] -> dict of `output_names` (see the module docstring)."""
        outputs = self._detect(images, training=False)
        height, width = self.input_size
        # Python floats: the normalization is folded into one constant multiply.
        boxes = outputs["boxes"] * tf.constant([1.0 / height, 1.0 / width] * 2, tf.float32)
        served = {
            # float32, as in the SavedModel and the TF Object Detection API convention.
            "num_detections": tf.cast(outputs["num_detections"], tf.float32),
            "detection_boxes": boxes,
            "detection_scores": outputs["scores"],
            "detection_classes": tf.cast(
                tf.gather(self.category_table, outputs["class_ids"]), tf.float32),
        }
        if "masks" in outputs:
            served["detection_masks"] = outputs["masks"]
        if "keypoints" in outputs:
            served.update(saved_model.keypoint_outputs(
                outputs["keypoints"], tf.constant([[height, width]], tf.float32)))
        return served


def _check_input_size(input_size, config):
    if input_size is None:
        return (config.image_max_size, config.image_max_size)
    size = tuple(int(s) for s in input_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"export_tflite input_size={input_size!r}: expected (height, width), "
                         "two positive ints")
    return size


def convert_tflite(model, quantization: str = "float32",
                   input_size: Optional[Sequence[int]] = None,
                   calibration_images: Optional[Iterable] = None,
                   calibrate_only: bool = False) -> bytes:
    """Converts `model` to TFLite flatbuffer bytes; see `export_tflite` for the arguments.

    calibrate_only (with "int8"): the calibrated float model instead (every tensor's range
    recorded, nothing quantized), which `quantize_calibrated` turns into the int8 file; to
    compare which nodes to keep in float32 without calibrating again.
    """
    if calibrate_only and quantization != "int8":
        raise ValueError(f"export_tflite calibrate_only with quantization={quantization!r}: "
                         "expected 'int8', the only quantization that is calibrated")
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"export_tflite quantization={quantization!r}: expected one of "
                         f"{QUANTIZATIONS}")
    if (quantization == "int8") != (calibration_images is not None):
        raise ValueError(f"export_tflite quantization={quantization!r}: calibration_images "
                         "are needed by 'int8' (full-integer: activation ranges come from "
                         "them) and by nothing else")
    _check_model(model)
    # Arguments are checked before the (slow) copy and trace.
    height, width = _check_input_size(input_size, model.config)
    inference_model = builtin_inference_model(model)
    detector = _Detector(inference_model, (height, width))
    serve = tf.function(detector.serve, input_signature=[
        tf.TensorSpec([1, height, width, 3], tf.uint8, name=INPUT_NAME)])
    # Converted from a SavedModel of the inference weights, which the converter freezes into
    # constants itself. Freezing first (convert_variables_to_constants_v2) and converting the
    # frozen function took 4x the memory: an R50-FPN at 1024 px peaked at 8.1 GB, the
    # converter copying the frozen graph's constants several times.
    with tempfile.TemporaryDirectory(prefix="mrcnn-tflite-") as folder:
        tf.saved_model.save(detector, folder,
                            signatures={SIGNATURE_KEY: serve.get_concrete_function()})
        # The converter reads the weights from the folder: the traced graph and the static
        # copy of the model can go before it makes its own copies.
        del detector, serve, inference_model
        converter = tf.lite.TFLiteConverter.from_saved_model(folder,
                                                             signature_keys=[SIGNATURE_KEY])
        if quantization == "int8":
            converter.representative_dataset = _representative_dataset(
                calibration_images, height, width)
        if calibrate_only:
            _set_int8(converter)
            return _calibrate(converter)
        return _convert(converter, quantization)


def _representative_dataset(images, height, width):
    """The converter's calibration inputs: each of `images` (uint8 [h, w, 3]) resized to the
    exported input size, as {"images": uint8 [1, height, width, 3]}. Raises ValueError naming
    the first image that is not uint8 [h, w, 3], or when there is none."""
    def generate():
        count = 0
        for index, image in enumerate(images):
            image = np.asarray(image)
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
                raise ValueError(f"export_tflite calibration image {index}: expected uint8 "
                                 f"[H, W, 3], got {image.dtype} {list(image.shape)}")
            if image.shape[:2] != (height, width):
                image = np.clip(np.round(tf.image.resize(image, (height, width)).numpy()),
                                0, 255).astype(np.uint8)
            count += 1
            yield {INPUT_NAME: image[None]}
        if not count:
            raise ValueError("export_tflite calibration_images: expected at least one image")
    return generate


def _convert(converter, quantization: str) -> bytes:
    """Sets the builtin op set and `quantization` on `converter`; returns the flatbuffer."""
    # Builtins only: a Flex op would need the TF-ops delegate, which the plain interpreter
    # (and most phone builds) do not have. An op without a builtin kernel fails conversion
    # here rather than at load time on the device.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8_dynamic":
        # No representative dataset: weights are stored as int8, activations stay float
        # (dynamic-range quantization).
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8":
        _set_int8(converter)
        return quantize_calibrated(_calibrate(converter))
    return converter.convert()


def _set_int8(converter):
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                           tf.lite.OpsSet.TFLITE_BUILTINS]


# The ops an "int8" file computes in int8: the convolutions, dense layers, transposed
# convolutions and pooling of the backbone, FPN and heads, where the FLOPs are. Everything
# else stays float32: the box and anchor arithmetic (pixel coordinates, a 1024 px image in 256
# steps of 4 px), the softmax scores, RoIAlign's bilinear weights, NMS. Quantizing those too
# took the demo model's box AP from 0.77 to 0.31 (python -m benchmarks tflite_accuracy).
INT8_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "MAX_POOL_2D")


def _calibrate(converter) -> bytes:
    """The converter run in calibrate-only mode: the float model with every tensor's range
    recorded from its representative dataset."""
    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True  # pylint: disable=protected-access
    return converter.convert()


def int8_nodes(calibrated: bytes) -> list:
    """[(op type, node name)] of a calibrated model's `INT8_OPS`, in graph order: the names
    `quantize_calibrated(float_nodes=...)` takes."""
    interpreter = tf.lite.Interpreter(model_content=calibrated)
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    return [(op["op_name"], names[op["outputs"][0]])
            for op in interpreter._get_ops_details()  # noqa: SLF001
            if op["op_name"] in INT8_OPS]


def quantize_calibrated(calibrated: bytes, float_nodes: Sequence[str] = ()) -> bytes:
    """Full-integer quantization of a calibrated model's `INT8_OPS` alone (weights per
    channel, activations per tensor), every other op type float32, and the `INT8_OPS` nodes
    named in `float_nodes` (`int8_nodes`' names) float32 too.

    The second of the two steps `tf.lite.experimental.QuantizationDebugger` takes for
    selective quantization (after `_calibrate`), without its instrumented debug model. Note
    that a node kept in float32 this way still has its input and output rounded to int8 and
    back where they carry calibration ranges (benchmarks/RESULTS.md, "Where full-integer int8
    loses its AP").
    """
    from tensorflow.lite.python import convert as lite_convert  # noqa: PLC0415
    ops = {op["op_name"] for op in
           tf.lite.Interpreter(model_content=calibrated)._get_ops_details()}  # noqa: SLF001
    return lite_convert.mlir_quantize(
        calibrated, disable_per_channel=False, fully_quantize=False,
        enable_numeric_verify=False, denylisted_ops=sorted(ops - set(INT8_OPS)),
        denylisted_nodes=list(float_nodes))


def export_tflite(model, path: str, quantization: str = "float32",
                  input_size: Optional[Sequence[int]] = None,
                  calibration_images: Optional[Iterable] = None) -> dict:
    """Writes `model` as a TFLite file that runs with builtin ops only.

    Args:
      model: a built (or buildable) `MaskRCNN`; left unchanged (a copy with the builtin
        RoIAlign is exported when it uses crop_and_resize).
      path: the .tflite file to write; written to a temporary file in the same folder and
        renamed, so a reader never sees a partial file.
      quantization: "float32"; "float16" (weights stored as float16, computed in float32 by
        the CPU interpreter); "int8_dynamic" (dynamic-range: int8 weights, float activations,
        no calibration data); "int8" (full integer for the convolutions, dense layers and
        pooling, `INT8_OPS`: int8 weights and activations; the box arithmetic, scores,
        RoIAlign and NMS stay float32; needs `calibration_images`).
      input_size: (H, W) of the one image the file accepts; default
        (config.image_max_size, config.image_max_size). Images of another size must be
        resized by the caller (the outputs are normalized, so they map back to any size).
      calibration_images: for "int8" only: an iterable of uint8 [h, w, 3] images like the
        ones the file will see (about 100 is typical), each resized to input_size; the
        converter runs the float model on them to set every activation's int8 range.
    Returns:
      dict "path" (str), "size_bytes" (int).
    """
    content = convert_tflite(model, quantization, input_size, calibration_images)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tflite-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return {"path": path, "size_bytes": len(content)}


def make_interpreter(model_path=None, model_content=None):
    """A LiteRT interpreter for an exported file (ai_edge_litert, else tf.lite's deprecated one).

    Returns an allocated interpreter; run it with `run_tflite`.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # the standalone runtime is optional; TF still ships one
        Interpreter = tf.lite.Interpreter
    interpreter = Interpreter(model_path=model_path, model_content=model_content)
    interpreter.allocate_tensors()
    return interpreter


def run_tflite(interpreter, image) -> dict:
    """Runs the exported signature on one image.

    Args:
      interpreter: from `make_interpreter`.
      image: uint8 [H, W, 3] or [1, H, W, 3] at the exported input size.
    Returns:
      dict of NumPy arrays keyed by `output_names(config)` of the exported model, with the
      batch dimension of 1.
    """
    runner = interpreter.get_signature_runner(SIGNATURE_KEY)
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[None]
    expected = tuple(runner.get_input_details()[INPUT_NAME]["shape"])
    if image.shape != expected or image.dtype != np.uint8:
        raise ValueError(f"run_tflite image: expected uint8 {expected}, got {image.dtype} "
                         f"{image.shape}")
    return runner(**{INPUT_NAME: image})
