"""Exports of Keypoint R-CNN models: the SavedModel's keypoint outputs equal the Keras model's
keypoints for both signatures, a maskless model exports without detection_masks, and the
TFLite file (builtin ops only) finds the Keras model's keypoints."""

import json
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from mrcnn_tf import serving_client
from mrcnn_tf.data.shapes import generate_shapes_example
from mrcnn_tf.export import export_saved_model, saved_model, tflite
from mrcnn_tf.modeling.mask_rcnn import MaskRCNN

from helpers import CATEGORY_IDS, box_iou, small_model_config  # noqa: E402

SIZE = 64
NAMES = ("left_tip", "right_tip", "middle")
# The keypoint-head sizes of tests/modeling/test_keypoint_rcnn.py's tiny model.
KEYPOINT_CONFIG = dict(num_keypoints=3, keypoint_names=NAMES, keypoint_skeleton=(0, 2, 1, 2),
                       keypoint_oks_sigmas=(0.05, 0.05, 0.05), keypoint_head_conv_dim=16,
                       keypoint_head_num_convs=2)
BASE_KEYS = {"num_detections", "detection_boxes", "detection_scores", "detection_classes"}
KEYPOINT_KEYS = {"detection_keypoints", "detection_keypoint_scores"}


def keypoint_model(mask_on):
    keras.utils.set_random_seed(0)
    model = MaskRCNN(small_model_config(SIZE, mask_on=mask_on, **KEYPOINT_CONFIG),
                     class_names=["square", "circle", "triangle"], category_ids=CATEGORY_IDS)
    model.build()
    return model


@pytest.fixture(scope="module")
def images():
    """Three 64 x 64 shapes images (uint8 [64, 64, 3])."""
    return [generate_shapes_example(i, image_size=SIZE)["image"] for i in range(3)]


@pytest.fixture(scope="module")
def maskless():
    return keypoint_model(mask_on=False)


def numpy_outputs(outputs):
    return {k: v.numpy() for k, v in outputs.items()}


def assert_keypoints_match(served, reference, sizes):
    """served: signature outputs of a batch (normalized keypoints); reference: the Keras
    model's outputs of the same images, one dict per image ([1, ...] arrays, pixels); sizes:
    (height, width) of each image. Returns the largest (pixel, score) differences."""
    d, k = reference[0]["keypoints"].shape[1:3]
    assert served["detection_keypoints"].shape == (len(sizes), d, k, 3)
    assert served["detection_keypoint_scores"].shape == (len(sizes), d, k)
    worst = np.zeros(2)
    for i, ((height, width), ref) in enumerate(zip(sizes, reference)):
        n = int(ref["num_detections"][0])
        assert n > 0 and int(served["num_detections"][i]) == n
        np.testing.assert_allclose(served["detection_scores"][i], ref["scores"][0], atol=1e-5)
        keypoints = served["detection_keypoints"][i]
        pixels = keypoints[..., :2] * np.float32([height, width])
        expected = ref["keypoints"][0]
        np.testing.assert_allclose(pixels, expected[..., :2], atol=1e-3)
        np.testing.assert_allclose(keypoints[..., 2], expected[..., 2], atol=1e-5)
        np.testing.assert_array_equal(served["detection_keypoint_scores"][i], keypoints[..., 2])
        # Normalized: real keypoints lie inside their boxes, so inside [0, 1]; padding is 0.
        assert 0.0 <= keypoints[:n, :, :2].min() and keypoints[:n, :, :2].max() <= 1.0
        assert not keypoints[n:].any()
        worst = np.maximum(worst, [np.abs(pixels - expected[..., :2]).max(),
                                   np.abs(keypoints[..., 2] - expected[..., 2]).max()])
    return worst


def run_signatures(loaded, batch, encoded_images):
    """(serving_default outputs of the uint8 batch, serve_encoded outputs of the PNGs)."""
    default = loaded.signatures["serving_default"](image_tensor=tf.constant(batch))
    pngs = [tf.io.encode_png(image).numpy() for image in encoded_images]
    encoded = loaded.signatures["serve_encoded"](encoded_image_string_tensor=tf.constant(pngs))
    return numpy_outputs(default), numpy_outputs(encoded)


def keras_rows(model, images):
    """The Keras outputs of each image on its own: one dict of [1, ...] arrays per image."""
    return [numpy_outputs(model(tf.constant(image[None]))) for image in images]


def test_saved_model_keypoints_match_keras(images, tmp_path):
    model = keypoint_model(mask_on=True)
    path = export_saved_model(model, str(tmp_path))
    loaded = tf.saved_model.load(path)
    # serve_encoded gets two sizes in one request: 64 x 64 and 40 x 64.
    batch, mixed = np.stack(images[:2]), [images[0], images[2][:40]]
    default, encoded = run_signatures(loaded, batch, mixed)
    expected_keys = BASE_KEYS | KEYPOINT_KEYS | {"detection_masks"}
    assert set(default) == set(encoded) == expected_keys
    assert set(saved_model.output_keys(model.config)) == expected_keys
    worst_default = assert_keypoints_match(default, keras_rows(model, images[:2]),
                                           [(SIZE, SIZE)] * 2)
    worst_encoded = assert_keypoints_match(encoded, keras_rows(model, mixed),
                                           [(SIZE, SIZE), (40, SIZE)])
    print(f"SavedModel vs Keras max |diff|: serving_default {worst_default[0]:.2e} px, "
          f"score {worst_default[1]:.2e}; serve_encoded {worst_encoded[0]:.2e} px, "
          f"score {worst_encoded[1]:.2e}")
    # The serving client turns them back into pixels, with or without a mask output.
    for outputs in (default, {k: v for k, v in default.items() if k != "detection_masks"}):
        found = serving_client.detections_for_image(outputs, 1, SIZE, SIZE, score_threshold=0)
        assert ("masks" in found) == ("detection_masks" in outputs)
        expected = model(images[1][None])["keypoints"][0, :int(default["num_detections"][1])]
        np.testing.assert_allclose(found["keypoints"], expected, atol=1e-3)
    # The keypoint names and skeleton travel with the model, in the config asset.
    config = json.loads((pathlib.Path(path) / "assets" / "config.json").read_text())
    assert config["keypoint_names"] == list(NAMES)
    assert config["keypoint_skeleton"] == [0, 2, 1, 2]


def signature_outputs(path):
    """{signature name: {output name: static shape}} of the SavedModel at `path`, read from
    saved_model.pb (as saved_model_cli does) without loading the functions."""
    proto = saved_model_pb2.SavedModel.FromString((pathlib.Path(path) / "saved_model.pb")
                                                  .read_bytes())
    return {name: {key: [dim.size for dim in info.tensor_shape.dim]
                   for key, info in signature.outputs.items()}
            for name, signature in proto.meta_graphs[0].signature_def.items()
            if not name.startswith("__")}


def test_maskless_model_exports_without_masks(maskless, tmp_path):
    with pytest.raises(ValueError, match="no mask head"):
        export_saved_model(maskless, str(tmp_path / "full"), full_image_masks=True)
    assert not (tmp_path / "full").exists()  # refused before anything is written
    # Keypoint numbers are checked on the masked model above: the same code computes them.
    # Here the signatures (serve_encoded's map_fn included) trace without masks.
    outputs = signature_outputs(export_saved_model(maskless, str(tmp_path / "boxed")))
    d = maskless.config.detections_per_image
    expected = {"num_detections": [-1], "detection_boxes": [-1, d, 4],
                "detection_scores": [-1, d], "detection_classes": [-1, d],
                "detection_keypoints": [-1, d, 3, 3], "detection_keypoint_scores": [-1, d, 3]}
    assert outputs == {"serving_default": expected, "serve_encoded": expected}
    assert set(saved_model.output_keys(maskless.config)) == set(expected)


def test_tflite_keypoints_match_keras(maskless, images, tmp_path):
    info = tflite.export_tflite(maskless, tmp_path / "keypoints.tflite")
    interpreter = tflite.make_interpreter(model_path=info["path"])
    signature = interpreter.get_signature_list()[tflite.SIGNATURE_KEY]
    assert set(signature["outputs"]) == BASE_KEYS | KEYPOINT_KEYS
    assert set(tflite.output_names(maskless.config)) == BASE_KEYS | KEYPOINT_KEYS
    worst, total = np.zeros(3), 0
    heatmap = maskless.config.keypoint_heatmap_size
    for image, ref in zip(images, keras_rows(maskless, images)):
        lite = tflite.run_tflite(interpreter, image)
        n = int(ref["num_detections"][0])
        total += n
        assert int(lite["num_detections"][0]) == n
        keypoints = lite["detection_keypoints"][0]
        assert keypoints.shape == (maskless.config.detections_per_image, 3, 3)
        np.testing.assert_array_equal(lite["detection_keypoint_scores"][0], keypoints[..., 2])
        boxes = lite["detection_boxes"][0, :n] * SIZE
        for i in range(n):
            # TFLite's float arithmetic can reorder near-tied detections: match rows by box.
            ious = box_iou(boxes, ref["boxes"][0, i])
            j = int(np.argmax(ious))
            assert ious[j] >= 0.99, (i, ious[j])
            pixels = keypoints[j, :, :2] * SIZE
            expected = ref["keypoints"][0, i]
            # One heatmap bin of this box (or a pixel, when the bin is smaller): an argmax
            # between two near-equal neighbouring bins may go either way.
            box = ref["boxes"][0, i]
            bin_hw = np.maximum((box[2:] - box[:2]) / heatmap, 1.0)
            diff = np.abs(pixels - expected[:, :2])
            assert (diff <= bin_hw + 1e-3).all(), (i, diff, bin_hw)
            score_diff = np.abs(keypoints[j, :, 2] - expected[:, 2]).max()
            assert score_diff <= 1e-2, (i, score_diff)
            worst = np.maximum(worst, [diff.max(), score_diff, 1.0 - ious[j]])
        assert not keypoints[n:].any()
    assert total > 0, "no detections to compare: the test would prove nothing"
    print(f"TFLite vs Keras max |diff|: keypoints {worst[0]:.2e} px, score {worst[1]:.2e}, "
          f"1 - box IoU {worst[2]:.2e} ({total} detections)")


def test_tflite_copy_of_a_torchvision_decode_model_decodes_detectron2s_way(maskless):
    """torchvision's per-RoI float64 bicubic decode has no builtin form: the TFLite copy keeps
    the weights and switches to the static decode (and to the builtin RoIAlign)."""
    source = MaskRCNN(maskless.config.replace(keypoint_decode_rule="torchvision"))
    source.build()
    source.set_weights(maskless.get_weights())
    copy = tflite.builtin_inference_model(source)
    assert copy is not source
    assert copy.config.keypoint_decode_rule == "detectron2"
    assert copy.config.static_shapes
    for a, b in zip(source.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(a, b)
    ready = tflite.builtin_inference_model(copy)
    assert ready is copy  # nothing left to change
