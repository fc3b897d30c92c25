"""Serving client: REST against an in-process imitation of TF Serving's predict endpoint, gRPC
request building (and an in-process gRPC server when the TF Serving protos are installed),
pixel detections for drawing, run_client's output, and an optional real-server check."""

import http.server
import importlib
import json
import os
import re
import sys
import threading

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf import io_utils, serving_client
from mrcnn_tf.data.images import read_image
from mrcnn_tf.export import export_saved_model
from mrcnn_tf.ops import masks as mask_ops

from helpers import (CATEGORY_IDS, box_iou, rest_body_inputs,  # noqa: E402
                     small_labelled_model)

OUTPUTS = serving_client.OUTPUT_KEYS
D = 10




def textured_image(height, width, seed):
    """A bright blob on dark noise: uint8 [height, width, 3]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = rng.integers(0, 60, (height, width, 3)).astype(np.float32)
    blob = ((yy - 0.5 * height) ** 2 / (0.25 * height) ** 2
            + (xx - 0.4 * width) ** 2 / (0.25 * width) ** 2) < 1
    image[blob] += rng.integers(100, 190, 3)
    return np.clip(image, 0, 255).astype(np.uint8)


def png(image):
    return tf.io.encode_png(image).numpy()


@pytest.fixture(scope="module")
def model():
    return small_labelled_model()


@pytest.fixture(scope="module")
def loaded(model, tmp_path_factory):
    path = export_saved_model(model, str(tmp_path_factory.mktemp("exports") / "mrcnn"))
    return tf.saved_model.load(path)


def call_signature(loaded, name, encoded):
    out = loaded.signatures[name](encoded_image_string_tensor=tf.constant(encoded, tf.string))
    return {k: v.numpy() for k, v in out.items()}




class FakeServing:
    """http.server on 127.0.0.1 answering POST /v1/models/<name>:predict like TF Serving."""

    def __init__(self, loaded, model_name="mrcnn"):
        self.requests = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def answer(self, code, obj):
                data = json.dumps(obj).encode("utf-8")
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.requests.append((self.path, self.headers.get("Content-Type")))
                match = re.fullmatch(r"/v1/models/([^/:]+):predict", self.path)
                if not match or match.group(1) != model_name:
                    return self.answer(404, {"error": f"Servable not found for {self.path}"})
                try:
                    parsed = json.loads(body)
                    signature = parsed.get("signature_name", "serving_default")
                    if signature not in loaded.signatures:
                        raise ValueError(f"Serving signature name: \"{signature}\" not found")
                    out = call_signature(loaded, signature, rest_body_inputs(parsed))
                except (tf.errors.OpError, ValueError, KeyError) as e:
                    # TF Serving reports INVALID_ARGUMENT as HTTP 400 {"error": message}.
                    return self.answer(400, {"error": getattr(e, "message", str(e))})
                rows = [{k: v[i].tolist() for k, v in out.items()}
                        for i in range(len(out["num_detections"]))]
                self.answer(200, {"predictions": rows})

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(loaded):
    fake = FakeServing(loaded)
    yield fake
    fake.close()




# -- REST ------------------------------------------------------------------------------------

def test_predict_rest_equals_signature_and_keras(model, loaded, server):
    images = [textured_image(48, 80, seed=1), textured_image(30, 100, seed=2)]
    encoded = [png(image) for image in images]
    got = serving_client.predict_rest(server.url, "mrcnn", encoded)
    assert server.requests[-1] == ("/v1/models/mrcnn:predict", "application/json")
    direct = call_signature(loaded, "serve_encoded", encoded)
    assert set(got) == set(OUTPUTS)
    for k in OUTPUTS:
        assert got[k].dtype == np.float32 and got[k].shape == direct[k].shape, k
        # float32 survives the JSON round trip exactly.
        np.testing.assert_array_equal(got[k], direct[k], err_msg=k)
    assert got["detection_masks"].shape == (2, D, 28, 28)

    for i, image in enumerate(images):
        reference = {k: v.numpy() for k, v in model(tf.constant(image[None])).items()}
        n = int(reference["num_detections"][0])
        assert n > 0 and int(got["num_detections"][i]) == n
        classes = np.asarray([0] + CATEGORY_IDS, np.float32)[reference["class_ids"][0]]
        np.testing.assert_array_equal(got["detection_classes"][i], classes)
        np.testing.assert_allclose(got["detection_scores"][i], reference["scores"][0],
                                   atol=1e-3)
        h, w = image.shape[:2]
        pixels = got["detection_boxes"][i] * np.float32([h, w, h, w])
        for j in range(n):
            assert box_iou(pixels[j], reference["boxes"][0][j]) >= 0.99, j


def test_predict_rest_error_carries_server_message_and_server_keeps_serving(server):
    with pytest.raises(serving_client.ServingError,
                       match=r"(?s)HTTP 400: .*Unknown image file format"):
        serving_client.predict_rest(server.url, "mrcnn", [b"definitely not an image"])
    with pytest.raises(RuntimeError, match=r"HTTP 404: Servable not found"):
        serving_client.predict_rest(server.url, "other", [png(textured_image(8, 8, 0))])
    with pytest.raises(serving_client.ServingError, match=r"signature name: \"nope\""):
        serving_client.predict_rest(server.url, "mrcnn", [png(textured_image(8, 8, 0))],
                                    signature="nope")
    out = serving_client.predict_rest(server.url, "mrcnn", [png(textured_image(20, 20, 3))])
    assert out["detection_boxes"].shape == (1, D, 4)


def test_predict_rest_rejects_bad_arguments_and_unreachable_server():
    with pytest.raises(ValueError, match="empty"):
        serving_client.predict_rest("http://127.0.0.1:1", "m", [])
    with pytest.raises(TypeError, match="expected bytes"):
        serving_client.predict_rest("http://127.0.0.1:1", "m", ["a path, not bytes"])
    # Port 1 on localhost is not listening: the error names the endpoint.
    with pytest.raises(serving_client.ServingError, match=r"cannot reach .*:predict"):
        serving_client.predict_rest("http://127.0.0.1:1", "m", [b"x"], timeout=5)


# -- detections for drawing ------------------------------------------------------------------

def test_detections_for_image_pixels_ids_and_pasted_masks(loaded):
    image = textured_image(36, 52, seed=6)
    out = call_signature(loaded, "serve_encoded", [png(textured_image(10, 10, 0)), png(image)])
    scores = out["detection_scores"][1]
    threshold = float(scores[2])  # keeps exactly the top 3 (scores are sorted, distinct)
    assert scores[1] > threshold > scores[3]
    found = serving_client.detections_for_image(out, 1, 36, 52, score_threshold=threshold)
    assert found["boxes"].shape == (3, 4) and found["masks"].shape == (3, 36, 52)
    assert found["masks"].dtype == bool and found["masks"].any()
    np.testing.assert_array_equal(found["scores"], scores[:3])
    np.testing.assert_array_equal(found["category_ids"], out["detection_classes"][1][:3])
    assert set(found["category_ids"].tolist()) <= set(CATEGORY_IDS)
    expected_boxes = out["detection_boxes"][1][:3] * np.float32([36, 52, 36, 52])
    np.testing.assert_allclose(found["boxes"], expected_boxes, rtol=1e-6)
    expected_masks = mask_ops.paste_masks(out["detection_masks"][1][:3], expected_boxes,
                                          36, 52).numpy() >= 0.5
    np.testing.assert_array_equal(found["masks"], expected_masks)

    # A torchvision-imported model pastes its masks torchvision's way: so does the client.
    torchvision = serving_client.detections_for_image(out, 1, 36, 52, threshold,
                                                      paste_rule="torchvision")
    np.testing.assert_array_equal(torchvision["masks"], mask_ops.paste_masks(
        out["detection_masks"][1][:3], expected_boxes, 36, 52, "torchvision").numpy() >= 0.5)

    empty = serving_client.detections_for_image(out, 1, 36, 52, score_threshold=2.0)
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, 36, 52)

    # A full-image-mask export's masks are cropped to the image, not pasted again.
    full = dict(out, detection_masks=np.zeros((2, D, 40, 60), np.float32))
    full["detection_masks"][1, 0, 5:9, 7:11] = 0.9
    found = serving_client.detections_for_image(full, 1, 36, 52, threshold,
                                                full_image_masks=True)
    assert found["masks"].shape == (3, 36, 52) and found["masks"][0].sum() == 16


# -- run_client ------------------------------------------------------------------------------

def test_run_client_prints_detections_and_writes_overlays(server, tmp_path, capsys):
    paths = []
    for i, (h, w) in enumerate([(40, 56), (64, 32)]):
        paths.append(str(tmp_path / f"img{i}.png"))
        io_utils.write_png_atomic(paths[-1], textured_image(h, w, seed=10 + i))
    out_dir = tmp_path / "overlays"
    label_map = {"5": "square", 0: "circle", 9: "triangle"}  # str keys, as from JSON
    results = serving_client.run_client(server.url, "mrcnn", paths, out_dir=str(out_dir),
                                        score_threshold=0.0, label_map=label_map)
    lines = capsys.readouterr().out.splitlines()
    assert [r["image"] for r in results] == paths
    assert len(lines) == sum(len(r["scores"]) for r in results) > 0
    first = results[0]
    box = first["boxes"][0]
    name = {5: "square", 0: "circle", 9: "triangle"}[int(first["category_ids"][0])]
    assert lines[0] == (f"{paths[0]}\t{first['category_ids'][0]} {name}\t"
                        f"{first['scores'][0]:.3f}\t"
                        f"{box[0]:.1f} {box[1]:.1f} {box[2]:.1f} {box[3]:.1f}")
    assert sorted(os.listdir(out_dir)) == ["img0.png", "img1.png"]  # no temporary files left
    for path, result in zip(paths, results):
        original = read_image(path)
        overlay = read_image(out_dir / os.path.basename(path))
        assert overlay.shape == original.shape == (result["height"], result["width"], 3)
        assert (overlay != original).any()  # something was drawn

    with pytest.raises(ValueError, match="protocol"):
        serving_client.run_client(server.url, "mrcnn", paths, protocol="http")


def test_exif_rotated_phone_jpeg_gets_the_same_boxes_as_its_upright_pixels(model, server,
                                                                           tmp_path):
    """A phone JPEG stores its pixels turned and an EXIF orientation (6: turn 90 degrees
    clockwise to show it). The client reads the file upright (OpenCV applies EXIF), and
    serve_encoded turns it upright too, so the boxes it normalized by the upright size come
    back in the upright image's pixels: those of the model on the upright pixels."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data"))
    from coco_fixtures import jpeg_with_exif  # noqa: PLC0415
    upright = textured_image(40, 72, seed=21)
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # [72, 40]: as the sensor read it
    plain = tf.io.encode_jpeg(stored, quality=95).numpy()
    path = tmp_path / "phone.jpg"
    path.write_bytes(jpeg_with_exif(plain, 6))
    results = serving_client.run_client(server.url, "mrcnn", [str(path)], score_threshold=0.0)
    got = results[0]
    assert (got["height"], got["width"]) == (40, 72)
    # The model on the upright pixels TensorFlow decodes (its JPEG decoder, as the server's).
    pixels = np.rot90(tf.io.decode_jpeg(plain, channels=3).numpy(), k=-1)
    reference = {k: v.numpy() for k, v in model(tf.constant(pixels[None].copy())).items()}
    n = int(reference["num_detections"][0])
    assert n > 0 and len(got["scores"]) == n
    np.testing.assert_allclose(got["scores"], reference["scores"][0, :n], atol=1e-5)
    np.testing.assert_allclose(got["boxes"], reference["boxes"][0, :n], atol=1e-2)


# -- gRPC ------------------------------------------------------------------------------------

def test_grpc_missing_package_gives_install_hint(monkeypatch):
    # None in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "tensorflow_serving", None)
    monkeypatch.setitem(sys.modules, "tensorflow_serving.apis", None)
    with pytest.raises(ImportError, match="pip install tensorflow-serving-api"):
        serving_client.make_predict_request("mrcnn", [b"x"])
    with pytest.raises(ImportError, match="pip install tensorflow-serving-api"):
        serving_client.predict_grpc("127.0.0.1:1", "mrcnn", [b"x"])


def _require_serving_apis():
    try:
        importlib.import_module("grpc")
        importlib.import_module("tensorflow_serving.apis.predict_pb2")
    except ImportError as e:
        reason = f"tensorflow-serving-api / grpcio not installed ({e})"
        print(reason)
        pytest.skip(reason)


def test_make_predict_request():
    _require_serving_apis()
    images = [b"\x89PNG first", b"\xff\xd8 second\x00"]
    request = serving_client.make_predict_request("mrcnn", images, "serve_encoded")
    assert request.model_spec.name == "mrcnn"
    assert request.model_spec.signature_name == "serve_encoded"
    assert list(request.inputs) == ["encoded_image_string_tensor"]
    tensor = request.inputs["encoded_image_string_tensor"]
    assert tensor.dtype == tf.string.as_datatype_enum
    assert [d.size for d in tensor.tensor_shape.dim] == [2]
    assert list(tensor.string_val) == images  # bytes kept exactly, NUL included


def test_predict_grpc_against_in_process_server(loaded):
    _require_serving_apis()
    from concurrent import futures

    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            encoded = tf.make_ndarray(request.inputs["encoded_image_string_tensor"])
            try:
                out = call_signature(loaded, request.model_spec.signature_name,
                                     list(encoded))
            except tf.errors.InvalidArgumentError as e:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, e.message)
            response = predict_pb2.PredictResponse()
            for k, v in out.items():
                response.outputs[k].CopyFrom(tf.make_tensor_proto(v))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        encoded = [png(textured_image(30, 40, seed=21)), png(textured_image(50, 20, seed=22))]
        got = serving_client.predict_grpc(f"127.0.0.1:{port}", "mrcnn", encoded)
        direct = call_signature(loaded, "serve_encoded", encoded)
        for k in OUTPUTS:
            np.testing.assert_array_equal(got[k], direct[k], err_msg=k)
        with pytest.raises(serving_client.ServingError,
                           match=r"(?s)INVALID_ARGUMENT: .*Unknown image file format"):
            serving_client.predict_grpc(f"127.0.0.1:{port}", "mrcnn", [b"garbage"])
    finally:
        server.stop(grace=None)


# -- a real TF Serving, only when the user points at one -------------------------------------

def test_real_tf_serving_when_configured():
    url = os.environ.get("TFSERVING_URL")
    if not url:
        reason = ("TFSERVING_URL is not set (e.g. TFSERVING_URL=http://localhost:8501, "
                  "TFSERVING_MODEL=mrcnn): no real TF Serving to test against")
        print(reason)
        pytest.skip(reason)
    model_name = os.environ.get("TFSERVING_MODEL", "mrcnn")
    out = serving_client.predict_rest(url, model_name, [png(textured_image(48, 64, seed=30))],
                                      timeout=120)
    assert set(out) == set(OUTPUTS)
    d = out["detection_scores"].shape[1]
    assert out["num_detections"].shape == (1,) and 0 <= out["num_detections"][0] <= d
    assert out["detection_boxes"].shape == (1, d, 4)
    assert out["detection_classes"].shape == (1, d)
    assert out["detection_masks"].shape[:2] == (1, d) and out["detection_masks"].ndim == 4
    assert out["detection_boxes"].min() >= 0.0 and out["detection_boxes"].max() <= 1.0
    assert (np.diff(out["detection_scores"][0]) <= 0).all()
    n = int(out["num_detections"][0])
    assert not out["detection_scores"][0][n:].any()
