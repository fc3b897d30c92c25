"""Client for a Mask R-CNN SavedModel served by TensorFlow Serving (REST or gRPC).

The server runs the export of `mrcnn_tf.export.export_saved_model`; this module sends encoded
image bytes to its `serve_encoded` signature and turns the answer back into NumPy arrays:

  num_detections     float32 [B]
  detection_boxes    float32 [B, D, 4]   (ymin, xmin, ymax, xmax) / (H, W, H, W), in [0, 1]
  detection_scores   float32 [B, D]
  detection_classes  float32 [B, D]      dataset category ids, 0 on padding rows
  detection_masks    float32 [B, D, m, m] box-relative (or [B, D, H, W] for a full-image export);
                     absent for a model without a mask head (config.mask_on False)
  detection_keypoints        float32 [B, D, K, 3] (y, x, score), y, x / (H, W); keypoint
  detection_keypoint_scores  float32 [B, D, K]    models only (config.num_keypoints = K > 0)

`detections_for_image` converts one image's rows into pixel boxes and full-image masks for
drawing, and `run_client` does the whole round trip for a list of image files.

REST needs nothing beyond this package's own requirements. gRPC needs `grpcio` and
`tensorflow-serving-api`, imported on first use so that REST users do not have to install them.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from typing import Any, Mapping, Sequence

import numpy as np

from mrcnn_tf import postprocess
from mrcnn_tf.data.images import decode_image
from mrcnn_tf.labels import LabelMap

OUTPUT_KEYS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes",
               "detection_masks")
ENCODED_INPUT = "encoded_image_string_tensor"
_GRPC_INSTALL_HINT = ("gRPC prediction needs the TensorFlow Serving API protos: "
                      "pip install tensorflow-serving-api")


class ServingError(RuntimeError):
    """The server refused or failed a predict request; the message includes its reason."""


def _check_images(images_bytes: Sequence[bytes]) -> list[bytes]:
    images = list(images_bytes)
    if not images:
        raise ValueError("no images to send: images_bytes is empty")
    for i, data in enumerate(images):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"images_bytes[{i}] is {type(data).__name__}, expected bytes "
                            "(the encoded file contents)")
    return [bytes(data) for data in images]


def _stack_outputs(rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """REST row-format predictions (one dict per image) -> {name: float32 [B, ...]}."""
    if not rows or not isinstance(rows[0], Mapping):
        # A single-output signature answers with bare values; ours has named outputs.
        raise ServingError(f"unexpected predictions format: {str(rows)[:200]}")
    names = list(rows[0])
    # JSON numbers come back as Python floats; float32 is the signatures' output dtype, and
    # float32 -> JSON -> float32 round-trips exactly, so values equal the server's.
    return {k: np.stack([np.asarray(r[k], np.float32) for r in rows]) for k in names}


def predict_rest(url: str, model_name: str, images_bytes: Sequence[bytes],
                 signature: str = "serve_encoded", timeout: float = 30) -> dict[str, np.ndarray]:
    """Sends encoded images to TF Serving's REST predict endpoint.

    POSTs `{"signature_name": signature, "instances": [{"b64": ...}, ...]}` (row format; a
    `{"b64": ...}` object is how TF Serving's JSON carries binary DT_STRING values) to
    `{url}/v1/models/{model_name}:predict`.

    Args:
      url: the server's REST base, e.g. "http://localhost:8501".
      model_name: the served model's name (TF Serving's `--model_name`).
      images_bytes: B encoded images (JPEG/PNG/BMP/GIF file contents); sizes may differ.
      signature: the signature taking `encoded_image_string_tensor` string [B].
      timeout: seconds to wait for the answer.
    Returns:
      {output name: float32 array with leading dimension B}: OUTPUT_KEYS for a Mask
      R-CNN, or the keys of the module docstring the served model has.
    Raises:
      ServingError (a RuntimeError): HTTP error (with the server's "error" message), an
        unreachable server, or a response without predictions.
    """
    images = _check_images(images_bytes)
    body = json.dumps({
        "signature_name": signature,
        "instances": [{"b64": base64.b64encode(data).decode("ascii")} for data in images],
    }).encode("utf-8")
    endpoint = f"{url.rstrip('/')}/v1/models/{model_name}:predict"
    request = urllib.request.Request(endpoint, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read()
    except urllib.error.HTTPError as e:
        text = e.read().decode("utf-8", "replace")
        try:
            # TF Serving answers failures as {"error": "..."}; show that, not the raw body.
            message = json.loads(text).get("error", text)
        except (ValueError, AttributeError):
            message = text
        raise ServingError(f"{endpoint} answered HTTP {e.code}: {message}") from e
    except (urllib.error.URLError, OSError) as e:
        raise ServingError(f"cannot reach {endpoint}: {e}") from e
    try:
        decoded = json.loads(payload)
    except ValueError as e:
        raise ServingError(f"{endpoint} answered non-JSON: {payload[:200]!r}") from e
    if "predictions" in decoded:
        outputs = _stack_outputs(decoded["predictions"])
    elif "outputs" in decoded:  # columnar answer, in case a proxy re-formats it
        outputs = {k: np.asarray(v, np.float32) for k, v in decoded["outputs"].items()}
    else:
        raise ServingError(f"{endpoint} answered without predictions: {str(decoded)[:200]}")
    if len(outputs["num_detections"]) != len(images):
        raise ServingError(f"sent {len(images)} images but got "
                           f"{len(outputs['num_detections'])} predictions")
    return outputs


def _import_grpc_apis():
    """(grpc, predict_pb2, prediction_service_pb2_grpc), or ImportError with an install hint."""
    try:
        import grpc
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    except ImportError as e:
        raise ImportError(f"{_GRPC_INSTALL_HINT} ({e})") from e
    return grpc, predict_pb2, prediction_service_pb2_grpc


def make_predict_request(model_name: str, images_bytes: Sequence[bytes],
                         signature: str = "serve_encoded"):
    """Builds a `tensorflow.serving.PredictRequest` for the encoded-image signature.

    The request's `inputs["encoded_image_string_tensor"]` is a DT_STRING tensor of shape [B]
    holding the B images' bytes.
    """
    import tensorflow as tf

    images = _check_images(images_bytes)
    _, predict_pb2, _ = _import_grpc_apis()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    request.inputs[ENCODED_INPUT].CopyFrom(
        tf.make_tensor_proto(images, dtype=tf.string, shape=[len(images)]))
    return request


def predict_grpc(target: str, model_name: str, images_bytes: Sequence[bytes],
                 signature: str = "serve_encoded", timeout: float = 30) -> dict[str, np.ndarray]:
    """Sends encoded images to TF Serving's gRPC PredictionService (port 8500 by default).

    Args:
      target: "host:port" of the gRPC server (insecure channel).
      model_name, images_bytes, signature, timeout: as for `predict_rest`.
    Returns:
      {output name: array with leading dimension B}, as `predict_rest`.
    Raises:
      ImportError: grpcio or tensorflow-serving-api is not installed (says what to install).
      ServingError: the RPC failed; the message carries the server's status and details.
    """
    import tensorflow as tf

    grpc, _, prediction_service_pb2_grpc = _import_grpc_apis()
    request = make_predict_request(model_name, images_bytes, signature)
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout=timeout)
        except grpc.RpcError as e:
            raise ServingError(f"gRPC predict at {target} failed: {e.code().name}: "
                               f"{e.details()}") from e
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


def detections_for_image(outputs: Mapping[str, np.ndarray], index: int, height: int, width: int,
                         score_threshold: float = 0.5, full_image_masks: bool = False,
                         paste_rule: str = "detectron2",
                         label_map: LabelMap | None = None) -> dict[str, Any]:
    """One image's detections from a batch of serving outputs, in pixels, ready to draw.

    The served rows are finished as `predict` finishes its own
    (`mrcnn_tf.postprocess.finish_detections`: kept by score, then pasted, then labelled).

    Args:
      outputs: the dict of `predict_rest` / `predict_grpc` (OUTPUT_KEYS, leading dimension B).
      index: which image of the batch.
      height, width: that image's size in pixels, upright (boxes are normalized by it).
      score_threshold: keep detections scoring at least this.
      full_image_masks: the model was exported with full_image_masks=True, so
        detection_masks are [B, D, H, W] already in the image; otherwise (the default export)
        they are [B, D, m, m] inside each box and are pasted here.
      paste_rule: how to paste them: the served model's `paste_rule` (its
        assets/config.json; "torchvision" for imported torchvision weights), so the masks
        equal what `predict` gives for the same model.
      label_map: the served model's labels (its assets/label_map.json), for "class_names".
    Returns:
      dict with n kept detections, highest score first:
        boxes         float32 [n, 4] (y1, x1, y2, x2) pixels
        category_ids  int64   [n]    dataset category ids
        scores        float32 [n]
        class_names   n str          (with a label map; "id <id>" for an unknown id)
        masks         bool    [n, height, width]   (when the outputs have detection_masks)
        keypoints     float32 [n, K, 3] (y, x, score), continuous pixels (when the outputs
                      have detection_keypoints)
    """
    n = int(outputs["num_detections"][index])
    scale = np.asarray([height, width, height, width], np.float32)
    rows = {
        "boxes": np.asarray(outputs["detection_boxes"][index][:n], np.float32) * scale,
        "scores": outputs["detection_scores"][index][:n],
        "category_ids": np.rint(outputs["detection_classes"][index][:n]),
    }
    if "detection_masks" in outputs:
        key = "image_masks" if full_image_masks else "masks"
        rows[key] = outputs["detection_masks"][index][:n]
    if "detection_keypoints" in outputs:
        keypoints = np.asarray(outputs["detection_keypoints"][index][:n], np.float32)
        rows["keypoints"] = keypoints * np.float32([height, width, 1.0])  # score unscaled
    return postprocess.finish_detections(rows, height, width, score_threshold, paste_rule,
                                         label_map)


def _overlay_path(out_dir: str, image_path: str, used: set[str]) -> str:
    """out_dir/<stem>.png, with _2, _3, ... when two inputs share a stem."""
    stem = os.path.splitext(os.path.basename(image_path))[0] or "image"
    name, i = f"{stem}.png", 1
    while name in used:
        i += 1
        name = f"{stem}_{i}.png"
    used.add(name)
    return os.path.join(out_dir, name)


def run_client(url_or_target: str, model_name: str, image_paths: Sequence[str],
               protocol: str = "rest", out_dir: str | None = None, score_threshold: float = 0.5,
               label_map: Mapping[int, str] | None = None, signature: str = "serve_encoded",
               timeout: float = 30, full_image_masks: bool = False,
               paste_rule: str = "detectron2") -> list[dict[str, Any]]:
    """Sends each image file to the server, prints its detections, optionally draws them.

    Each image goes in its own request (its file bytes, unchanged), so one slow or bad image
    does not hold up or fail the others' answers before it. One line is printed per kept
    detection: `<path>  <category id> [<name>]  <score>  y1 x1 y2 x2` (pixels).

    Args:
      url_or_target: REST base URL ("http://host:8501") or gRPC "host:8500".
      model_name: the served model's name.
      image_paths: image files (JPEG/PNG/BMP/GIF).
      protocol: "rest" or "grpc".
      out_dir: when given, `out_dir/<stem>.png` gets an overlay of each image's detections
        (written atomically; the folder is created).
      score_threshold: detections below it are neither printed nor drawn.
      label_map: {dataset category id: name} for printing and labels; ids are also accepted as
        strings (as JSON keys are).
      signature, timeout: as for `predict_rest`.
      full_image_masks, paste_rule: as for `detections_for_image`.
    Returns:
      one dict per image: {"image": path, "height", "width"} plus the arrays of
      `detections_for_image` (boxes, category_ids, scores, class_names, and masks and/or
      keypoints as the
      model serves them).
    """
    from mrcnn_tf import io_utils, visualize  # noqa: PLC0415 (OpenCV only when drawing)

    if protocol not in ("rest", "grpc"):
        raise ValueError(f"protocol must be 'rest' or 'grpc', got {protocol!r}")
    predict = predict_rest if protocol == "rest" else predict_grpc
    names = {int(k): str(v) for k, v in (label_map or {}).items()}
    labels = LabelMap(tuple(names), tuple(names.values()))
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
    used: set[str] = set()
    results = []
    for path in image_paths:
        path = os.fspath(path)
        with open(path, "rb") as f:
            data = f.read()
        # Decoded here too, upright as serve_encoded turns it (EXIF): boxes are
        # un-normalized by that size, and drawn on those pixels.
        image = decode_image(data, path)[0]
        height, width = image.shape[:2]
        outputs = predict(url_or_target, model_name, [data], signature=signature,
                          timeout=timeout)
        found = detections_for_image(outputs, 0, height, width, score_threshold,
                                     full_image_masks, paste_rule, labels)
        for box, cid, score in zip(found["boxes"], found["category_ids"], found["scores"]):
            label = f"{cid} {names[cid]}" if cid in names else f"{cid}"
            print(f"{path}\t{label}\t{score:.3f}\t"
                  f"{box[0]:.1f} {box[1]:.1f} {box[2]:.1f} {box[3]:.1f}")
        if out_dir is not None:
            n = len(found["scores"])
            # draw_instances labels contiguous ids through a name list; giving instance i the
            # id i + 1 and its own name lets dataset ids (which may be sparse or 0) show as is.
            drawn_names = ["background"] + found["class_names"]
            # Keypoints only when served, so mask-only models draw as before.
            extra = {"keypoints": found["keypoints"]} if "keypoints" in found else {}
            overlay = visualize.draw_instances(image, found["boxes"], np.arange(1, n + 1),
                                               scores=found["scores"], masks=found.get("masks"),
                                               class_names=drawn_names, **extra)
            io_utils.write_png_atomic(_overlay_path(out_dir, path, used), overlay)
        results.append({"image": path, "height": height, "width": width, **found})
    return results
