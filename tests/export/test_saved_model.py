"""SavedModel export: signatures, fresh-process parity with Keras, REST body, assets, versions,
awkward and bad inputs, full-image masks."""

import base64
import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.export import export_saved_model
from mrcnn_tf.export import saved_model as saved_model_lib
from mrcnn_tf.modeling.mask_rcnn import MaskRCNN
from mrcnn_tf.modeling.optimizer import make_optimizer
from mrcnn_tf.ops import masks as mask_ops

from helpers import (CATEGORY_IDS, box_iou, rest_body_inputs,  # noqa: E402
                     small_labelled_model, small_model_config)

OUTPUTS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes",
           "detection_masks")




def textured_images(batch, height, width, seed):
    """Smooth blobs on noise, so PNG round trips and resizes have structure to keep."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    images = rng.integers(0, 60, (batch, height, width, 3)).astype(np.float32)
    for b in range(batch):
        cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
        blob = ((yy - cy) ** 2 / (0.2 * height) ** 2 + (xx - cx) ** 2 / (0.2 * width) ** 2) < 1
        images[b][blob] += rng.integers(100, 190, 3)
    return np.clip(images, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def model():
    """A model as training leaves it: compiled, with its optimizer's slots made."""
    model = small_labelled_model()
    model.compile(optimizer=make_optimizer(model.config, batch_size=2))
    model.build()
    model.optimizer.build(model.trainable_variables)
    return model


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("exports") / "mrcnn"


@pytest.fixture(scope="module")
def exported(model, base_dir):
    return export_saved_model(model, str(base_dir))


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported)


@pytest.fixture(scope="module")
def second_export(model, base_dir, exported):
    """A second export of `model` into base_dir, next to a folder whose name is no version,
    with full-image masks: the versions test and the full-image masks test share it (an
    export costs 10-20 s of tracing)."""
    (base_dir / "notes").mkdir()  # non-integer names are not versions
    return export_saved_model(model, str(base_dir), full_image_masks=True)




def assert_same_detections(served, reference, height, width, mask_atol=1e-3):
    """served: serving outputs of one image (NumPy, normalized boxes, dataset ids);
    reference: Keras outputs of the same image (pixels, contiguous ids)."""
    n = int(reference["num_detections"])
    assert n > 0, "the comparison needs detections (score_threshold is 0)"
    assert int(served["num_detections"]) == n
    classes = np.asarray([0] + CATEGORY_IDS, np.float32)[reference["class_ids"]]
    np.testing.assert_array_equal(served["detection_classes"], classes)
    np.testing.assert_allclose(served["detection_scores"], reference["scores"], atol=1e-3)
    pixels = served["detection_boxes"] * np.asarray([height, width, height, width], np.float32)
    for i in range(n):
        assert box_iou(pixels[i], reference["boxes"][i]) >= 0.99, (i, pixels[i],
                                                                    reference["boxes"][i])
    np.testing.assert_allclose(served["detection_masks"][:n], reference["masks"][:n],
                               atol=mask_atol)
    # Padding rows are all zero, classes included.
    assert not served["detection_classes"][n:].any() and not served["detection_boxes"][n:].any()


def keras_outputs(model, images):
    return {k: v.numpy() for k, v in model(tf.constant(images)).items()}


def row(outputs, i):
    return {k: np.asarray(v)[i] for k, v in outputs.items()}




FRESH_PROCESS_SCRIPT = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np
import tensorflow as tf

loaded = tf.saved_model.load(sys.argv[1])
inputs = np.load(sys.argv[2])
out = loaded.signatures["serving_default"](image_tensor=tf.constant(inputs["images"]))
result = {"default/" + k: v.numpy() for k, v in out.items()}
encoded = [open(path, "rb").read() for path in sys.argv[4:]]
out = loaded.signatures["serve_encoded"](encoded_image_string_tensor=tf.constant(encoded))
result.update({"encoded/" + k: v.numpy() for k, v in out.items()})
# Loading and running must not have needed the library: TF Serving does not have it.
result["imported_mrcnn_tf"] = np.asarray("mrcnn_tf" in sys.modules)
np.savez(sys.argv[3], **result)
"""


@pytest.fixture(scope="module")
def fresh_process(exported, tmp_path_factory):
    """Runs both signatures in a new Python process that imports only TensorFlow.

    Returns the images fed (a [2, 48, 80, 3] batch, and a 30 x 100 image sent as PNG with
    the first of the batch) and the outputs, keyed "default/NAME" and "encoded/NAME".
    """
    work = tmp_path_factory.mktemp("fresh")
    images = textured_images(2, 48, 80, seed=1)
    other = textured_images(1, 30, 100, seed=2)[0]  # a second size in one request
    np.savez(work / "inputs.npz", images=images)
    pngs = []
    for i, image in enumerate((images[0], other)):
        pngs.append(work / f"{i}.png")
        pngs[-1].write_bytes(tf.io.encode_png(image).numpy())
    (work / "run.py").write_text(FRESH_PROCESS_SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(work / "run.py"), exported,
                           str(work / "inputs.npz"), str(work / "out")] + [str(p) for p in pngs],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return images, other, dict(np.load(work / "out.npz"))


def split(outputs, prefix):
    return {k.split("/")[1]: v for k, v in outputs.items() if k.startswith(prefix + "/")}


def test_fresh_process_matches_keras(model, fresh_process):
    images, _, outputs = fresh_process
    assert not outputs["imported_mrcnn_tf"]
    served = split(outputs, "default")
    assert set(served) == set(OUTPUTS)
    d = model.config.detections_per_image
    assert served["detection_boxes"].shape == (2, d, 4)
    assert served["detection_masks"].shape == (2, d, 28, 28)
    for k in OUTPUTS:
        assert served[k].dtype == np.float32, k
    reference = keras_outputs(model, images)
    for i in range(2):
        assert_same_detections(row(served, i), row(reference, i), 48, 80)
    # Normalized boxes stay inside the image; scores come highest first, as documented.
    assert served["detection_boxes"].min() >= 0.0 and served["detection_boxes"].max() <= 1.0
    assert (np.diff(served["detection_scores"], axis=1) <= 0).all()


def test_fresh_process_encoded_images_of_two_sizes(model, fresh_process):
    images, other, outputs = fresh_process
    encoded, default = split(outputs, "encoded"), split(outputs, "default")
    # PNG is lossless: the first image's detections equal serving_default's on its pixels.
    for k in OUTPUTS:
        np.testing.assert_allclose(encoded[k][0], default[k][0], atol=1e-5, err_msg=k)
    # The second image (30 x 100) differs in size from the first within one request.
    assert_same_detections(row(encoded, 1), row(keras_outputs(model, other[None]), 0), 30, 100)


def test_rest_b64_body_matches_decoded_pixels(loaded):
    images = textured_images(2, 40, 56, seed=9)
    body = json.loads(json.dumps({"signature_name": "serve_encoded", "instances": [
        {"b64": base64.b64encode(tf.io.encode_png(image).numpy()).decode("ascii")}
        for image in images]}))
    request = tf.constant(rest_body_inputs(body), tf.string)
    assert request.shape == (2,) and request.dtype == tf.string
    encoded = loaded.signatures[body["signature_name"]](encoded_image_string_tensor=request)
    default = loaded.signatures["serving_default"](image_tensor=tf.constant(images))
    assert encoded["num_detections"].numpy().min() > 0
    for k in OUTPUTS:
        np.testing.assert_allclose(encoded[k].numpy(), default[k].numpy(), atol=1e-5,
                                   err_msg=k)


def test_rest_decoding_handles_named_and_columnar_bodies():
    payload = b"\x89PNG fake"
    b64 = base64.b64encode(payload).decode("ascii")
    for body in ({"instances": [{"b64": b64}]},
                 {"instances": [{"encoded_image_string_tensor": {"b64": b64}}]},
                 {"inputs": [{"b64": b64}]},
                 {"inputs": {"encoded_image_string_tensor": [{"b64": b64}]}}):
        assert rest_body_inputs(body) == [payload], body


def test_saved_model_cli_lists_both_signatures(exported):
    cli = pathlib.Path(sys.executable).parent / "saved_model_cli"
    command = ([str(cli)] if cli.exists()
               else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"])
    proc = subprocess.run(command + ["show", "--all", "--dir", exported], capture_output=True,
                          text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    blocks = {}
    for name in ("serving_default", "serve_encoded"):
        start = text.index(f"signature_def['{name}']")
        end = text.find("signature_def[", start + 1)
        blocks[name] = text[start:end if end > 0 else len(text)]
    assert "inputs['image_tensor']" in blocks["serving_default"]
    assert "dtype: DT_UINT8" in blocks["serving_default"]
    assert "shape: (-1, -1, -1, 3)" in blocks["serving_default"]
    assert "inputs['encoded_image_string_tensor']" in blocks["serve_encoded"]
    assert "dtype: DT_STRING" in blocks["serve_encoded"]
    assert "shape: (-1)" in blocks["serve_encoded"]
    for name, block in blocks.items():
        listed = sorted(line.split("'")[1] for line in block.splitlines()
                        if line.strip().startswith("outputs['"))
        assert listed == sorted(OUTPUTS), (name, listed)
        assert block.count("inputs['") == 1, name


def test_export_saves_the_inference_weights_only(model, exported):
    """No optimizer slots, step counters or metrics: the variables are the model's weights,
    and the variables files are at most 5% over their bytes."""
    assert model.optimizer.variables, "the model must carry optimizer state for this test"
    reader = tf.train.load_checkpoint(os.path.join(exported, "variables", "variables"))
    saved = {name: tuple(shape) for name, shape in reader.get_variable_to_shape_map().items()
             if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}
    assert not [name for name in saved if "optimizer" in name]
    assert sorted(saved.values()) == sorted(tuple(w.shape) for w in model.weights)
    weight_bytes = sum(w.numpy().nbytes for w in model.weights)
    saved_bytes = sum(f.stat().st_size
                      for f in pathlib.Path(exported, "variables").iterdir())
    assert saved_bytes <= 1.05 * weight_bytes, (saved_bytes, weight_bytes)


def test_assets_hold_label_map_and_config(model, exported):
    assets = pathlib.Path(exported) / "assets"
    label_map = json.loads((assets / "label_map.json").read_text())
    assert label_map == model.label_map.to_dict()
    assert [c["dataset_id"] for c in label_map["categories"]] == CATEGORY_IDS
    assert [c["name"] for c in label_map["categories"]] == ["square", "circle", "triangle"]
    config = json.loads((assets / "config.json").read_text())
    assert config == json.loads(json.dumps(model.config.to_dict()))


def test_versions_increase_and_no_temp_folder_remains(base_dir, exported, second_export):
    assert exported == str(base_dir / "1")
    assert second_export == str(base_dir / "2")
    assert sorted(os.listdir(base_dir)) == ["1", "2", "notes"]
    assert (base_dir / "2" / "saved_model.pb").exists()


def test_failed_export_leaves_nothing(model, tmp_path, monkeypatch):
    def broken_save(*args, **kwargs):
        raise RuntimeError("disk full")

    (tmp_path / "7").mkdir()
    monkeypatch.setattr(saved_model_lib.tf.saved_model, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        export_saved_model(model, str(tmp_path))
    assert os.listdir(tmp_path) == ["7"]
    assert saved_model_lib.next_version(str(tmp_path)) == 8
    assert saved_model_lib.next_version(str(tmp_path / "missing")) == 1


@pytest.mark.parametrize("height,width", [(1, 1), (4000, 300), (300, 4000)])
def test_extreme_sizes(model, loaded, height, width):
    image = textured_images(1, height, width, seed=3)
    served = {k: v.numpy() for k, v in
              loaded.signatures["serving_default"](image_tensor=tf.constant(image)).items()}
    assert served["detection_boxes"].min() >= 0.0 and served["detection_boxes"].max() <= 1.0
    # Normalized by (height, width) in that order: scaling back gives Keras' pixel boxes.
    assert_same_detections(row(served, 0), row(keras_outputs(model, image), 0), height, width)


def test_wrong_dtype_or_shape_is_rejected(loaded):
    serve = loaded.signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="uint8"):
        serve(image_tensor=tf.zeros([1, 8, 8, 3], tf.float32))
    for shape in ([8, 8, 3], [1, 8, 8, 4]):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[\?,\?,\?,3\]"):
            serve(image_tensor=tf.zeros(shape, tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="string"):
        loaded.signatures["serve_encoded"](encoded_image_string_tensor=tf.zeros([1], tf.uint8))


def test_corrupt_bytes_raise_invalid_argument(loaded):
    png = tf.io.encode_png(textured_images(1, 20, 20, seed=4)[0]).numpy()
    for data in (b"not an image", png[: len(png) // 2]):
        with pytest.raises(tf.errors.InvalidArgumentError):
            loaded.signatures["serve_encoded"](encoded_image_string_tensor=tf.constant([data]))


def test_no_detections_gives_valid_empty_outputs(tmp_path):
    # Softmax scores of a 3-class untrained head stay far below 0.99.
    keras.utils.set_random_seed(0)
    strict = MaskRCNN(small_model_config(score_threshold=0.99), category_ids=CATEGORY_IDS)
    path = export_saved_model(strict, str(tmp_path))
    serve = tf.saved_model.load(path).signatures["serving_default"]
    out = serve(image_tensor=tf.constant(textured_images(2, 40, 50, seed=5)))
    assert out["num_detections"].numpy().tolist() == [0.0, 0.0]
    assert out["detection_boxes"].shape == (2, 10, 4)
    assert out["detection_masks"].shape == (2, 10, 28, 28)
    for k in OUTPUTS:
        assert np.isfinite(out[k].numpy()).all() and not out[k].numpy().any(), k


def test_full_image_masks_match_paste_masks(loaded, second_export):
    full = tf.saved_model.load(second_export)  # `model` exported with full_image_masks=True
    images = textured_images(2, 36, 52, seed=6)
    boxed = {k: v.numpy() for k, v in
             loaded.signatures["serving_default"](image_tensor=tf.constant(images)).items()}
    pasted = {k: v.numpy() for k, v in
              full.signatures["serving_default"](image_tensor=tf.constant(images)).items()}
    assert pasted["detection_masks"].shape == (2, 10, 36, 52)
    np.testing.assert_allclose(pasted["detection_boxes"], boxed["detection_boxes"], atol=1e-6)
    scale = np.asarray([36, 52, 36, 52], np.float32)
    for i in range(2):
        expected = mask_ops.paste_masks(boxed["detection_masks"][i],
                                        boxed["detection_boxes"][i] * scale, 36, 52).numpy()
        np.testing.assert_allclose(pasted["detection_masks"][i], expected, atol=1e-4)
    assert pasted["detection_masks"][:, :int(boxed["num_detections"][0])].max() > 0.1

    # Mixed sizes in one serve_encoded request: padded to the largest, zero beyond each image.
    small, large = textured_images(1, 20, 60, seed=7)[0], textured_images(1, 44, 30, seed=8)[0]
    encoded = tf.constant([tf.io.encode_png(small).numpy(), tf.io.encode_png(large).numpy()])
    out = {k: v.numpy() for k, v in
           full.signatures["serve_encoded"](encoded_image_string_tensor=encoded).items()}
    assert out["detection_masks"].shape == (2, 10, 44, 60)
    alone = {k: v.numpy() for k, v in
             loaded.signatures["serving_default"](image_tensor=tf.constant(small[None])).items()}
    expected = mask_ops.paste_masks(alone["detection_masks"][0],
                                    alone["detection_boxes"][0] * np.float32([20, 60, 20, 60]),
                                    20, 60).numpy()
    np.testing.assert_allclose(out["detection_masks"][0, :, :20, :60], expected, atol=1e-4)
    assert not out["detection_masks"][0, :, 20:].any()
    assert not out["detection_masks"][1, :, :, 30:].any()


def test_full_image_masks_follow_the_models_paste_rule(tmp_path):
    """An imported torchvision model pastes torchvision's way in predict_images; its export
    must paste the same way."""
    model = small_labelled_model(paste_rule="torchvision")
    path = export_saved_model(model, str(tmp_path), full_image_masks=True)
    serve = tf.saved_model.load(path).signatures["serving_default"]
    images = textured_images(1, 36, 52, seed=6)
    out = {k: v.numpy() for k, v in serve(image_tensor=tf.constant(images)).items()}
    count = int(out["num_detections"][0])
    assert count > 0
    reference = model(tf.constant(images))
    boxes = reference["boxes"][0, :count]
    masks = reference["masks"][0, :count]
    expected = mask_ops.paste_masks(masks, boxes, 36, 52, paste_rule="torchvision").numpy()
    np.testing.assert_allclose(out["detection_masks"][0, :count], expected, atol=1e-4)
    other = mask_ops.paste_masks(masks, boxes, 36, 52, paste_rule="detectron2").numpy()
    assert np.abs(other - expected).max() > 0.05  # the two rules differ on these masks


def _hostile_files():
    """{name: encoded bytes} of the awkward files a server meets: decodable ones first."""
    import cv2  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415
    import io  # noqa: PLC0415
    rgb = textured_images(1, 48, 64, seed=6)[0]
    cmyk = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(cmyk, "JPEG", quality=95)
    jpeg = cv2.imencode(".jpg", rgb[..., ::-1])[1].tobytes()
    return {
        "cmyk_jpeg": cmyk.getvalue(),
        "gray_png": cv2.imencode(".png", rgb[..., 0])[1].tobytes(),
        "png_16_bit": cv2.imencode(".png", rgb.astype(np.uint16) * 257)[1].tobytes(),
        "one_pixel_png": cv2.imencode(".png", rgb[:1, :1])[1].tobytes(),
        "random_bytes": np.random.default_rng(7).integers(0, 256, 5000, np.uint8).tobytes(),
        "empty": b"",
        "truncated_jpeg": jpeg[: len(jpeg) // 2],
    }


DECODABLE = ("cmyk_jpeg", "gray_png", "png_16_bit", "one_pixel_png")


def test_hostile_encoded_images_give_detections_or_invalid_argument(loaded):
    """Each decodable file gives valid outputs (boxes in [0, 1], scores in [0, 1]); each
    undecodable one an InvalidArgumentError; the signature answers a good image after all of
    them (what TF Serving turns into a 400 and keeps serving)."""
    serve = loaded.signatures["serve_encoded"]
    for name, data in _hostile_files().items():
        if name in DECODABLE:
            out = serve(encoded_image_string_tensor=tf.constant([data]))
            boxes, scores = out["detection_boxes"].numpy(), out["detection_scores"].numpy()
            assert np.isfinite(boxes).all() and 0 <= boxes.min() and boxes.max() <= 1, name
            assert 0 <= scores.min() and scores.max() <= 1, name
        else:
            with pytest.raises(tf.errors.InvalidArgumentError):
                serve(encoded_image_string_tensor=tf.constant([data]))
    good = tf.io.encode_png(textured_images(1, 40, 40, seed=8)[0]).numpy()
    assert serve(encoded_image_string_tensor=tf.constant([good]))["num_detections"].shape == (1,)


def test_a_16_bit_png_decodes_to_its_8_bit_pixels(loaded):
    """A 16-bit PNG is its 8-bit image scaled (v * 257), not clipped: the signature gives the
    detections of the 8-bit PNG of the same pixels."""
    import cv2  # noqa: PLC0415
    files = _hostile_files()
    rgb = textured_images(1, 48, 64, seed=6)[0]
    serve = loaded.signatures["serve_encoded"]
    deep = serve(encoded_image_string_tensor=tf.constant([files["png_16_bit"]]))
    plain = serve(encoded_image_string_tensor=tf.constant(
        [cv2.imencode(".png", rgb)[1].tobytes()]))
    for key in ("detection_scores", "detection_boxes"):
        np.testing.assert_allclose(deep[key].numpy(), plain[key].numpy(), atol=1e-5)
