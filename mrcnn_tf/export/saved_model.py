"""SavedModel export for TensorFlow Serving: raw images in, TF Object Detection API outputs out.

`export_saved_model(model, "exports/NAME")` writes `exports/NAME/<version>/`, the layout TF
Serving watches (`--model_base_path=exports/NAME`). The SavedModel has two signatures:

  serving_default   image_tensor                 uint8  [B, H, W, 3]  (B, H, W dynamic; one
                                                                       size per request)
  serve_encoded     encoded_image_string_tensor  string [B]           JPEG/PNG/BMP/GIF bytes;
                                                                       images may differ in
                                                                       size; EXIF orientation
                                                                       applied

and both return, D = config.detections_per_image, K = config.num_keypoints:

  num_detections     float32 [B]            real detections per image (rows past it are 0)
  detection_boxes    float32 [B, D, 4]      (ymin, xmin, ymax, xmax) divided by the image's
                                            original height / width, so in [0, 1]
  detection_scores   float32 [B, D]
  detection_classes  float32 [B, D]         the dataset's own category ids (model.category_ids),
                                            0 on padding rows
  detection_masks    float32 [B, D, m, m]   box-relative mask probabilities (m = mask_size),
                     or [B, D, H, W]        with full_image_masks=True: pasted into the image.
                                            Only when config.mask_on: a model without a mask
                                            head (Keypoint R-CNN) has no such output.
  detection_keypoints
                     float32 [B, D, K, 3]   (y, x, score): y, x in continuous pixels (pixel i
                                            covers [i, i + 1)) divided by the image's original
                                            height / width, as the boxes; score the heatmap
                                            peak probability. Only when K > 0.
  detection_keypoint_scores
                     float32 [B, D, K]      the score column of detection_keypoints (K > 0).

All rows past num_detections are zero, keypoints included. The TF Object Detection API's
detection_keypoints are (y, x) only, [B, D, K, 2]; here the score rides along as a third
column, so [..., :2] reads the same way.

Resizing, padding, normalization, NMS and box scaling all run inside the graph, so a client
sends only image pixels or bytes. The label map and the model config travel as assets
(`<version>/assets/label_map.json`, `<version>/assets/config.json`); the config carries
`keypoint_names` and `keypoint_skeleton`, which name and connect the K keypoint columns.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from typing import Optional

import tensorflow as tf

from mrcnn_tf.modeling.branches import MASK, branches
from mrcnn_tf.ops import exif
from mrcnn_tf.ops import masks as mask_ops

# The outputs of a Mask R-CNN (mask head, no keypoints); `output_keys` gives any model's.
OUTPUT_KEYS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes",
               "detection_masks")
KEYPOINT_OUTPUT_KEYS = ("detection_keypoints", "detection_keypoint_scores")
BOX_OUTPUT_KEYS = OUTPUT_KEYS[:4]  # what every model serves
LABEL_MAP_ASSET = "label_map.json"
CONFIG_ASSET = "config.json"
_VERSION_RE = re.compile(r"^[0-9]+$")


def keypoint_outputs(keypoints, hw):
    """The keypoint outputs of a signature, normalized as the boxes are.

    Args:
      keypoints: float32 [B, D, K, 3] (y, x, score), y and x in original-image pixels.
      hw: float32 [B, 2] (height, width) of each original image.
    Returns:
      {"detection_keypoints": [B, D, K, 3] with y / H, x / W and the score as it is,
       "detection_keypoint_scores": [B, D, K]}.
    """
    divisor = tf.concat([hw, tf.ones_like(hw[:, :1])], axis=1)  # [B, 3]; the score: 1
    return {"detection_keypoints": keypoints / divisor[:, None, None, :],
            "detection_keypoint_scores": keypoints[..., 2]}


def output_keys(config) -> tuple:
    """The signature outputs of a model with this config: the box outputs, then each
    branch's (detection_masks for the mask branch, KEYPOINT_OUTPUT_KEYS for the keypoint
    branch)."""
    return BOX_OUTPUT_KEYS + tuple(k for branch in branches(config)
                                   for k in branch.serving_outputs)


def inference_variables(model) -> list:
    """The tf.Variables under `model.weights` (Keras' variables wrap them), for an exported
    module to track in place of the model.

    Tracking the model would also save its optimizer's state and its metrics, which serving
    never reads (a trained model's SavedModel about doubled). Tracking the Keras wrappers
    rather than the tf.Variables themselves saves the same values, but the TFLite converter
    then cannot freeze them: they stay VAR_HANDLE / READ_VARIABLE ops and the file has no
    weights.
    """
    return [weight.value for weight in model.weights]


class InferenceModule(tf.Module):
    """An exported module's base: `self._detect` calls the model, untracked, and only the
    model's inference weights are tracked (see `inference_variables`). A variable the call
    reads beyond these fails the save, naming it, instead of passing silently."""

    def __init__(self, model, name: Optional[str] = None):
        super().__init__(name=name)
        self._detect = model.__call__
        self.model_weights = inference_variables(model)


class _ServingModule(InferenceModule):
    """The exported object: the model's call and weights, its category ids, the assets and two
    signatures."""

    def __init__(self, model, full_image_masks: bool, asset_dir: str):
        super().__init__(model, name="mrcnn_serving")
        self.full_image_masks = bool(full_image_masks)
        self.detections_per_image = int(model.config.detections_per_image)
        self.mask_size = int(model.config.mask_size)
        self.num_keypoints = int(model.config.num_keypoints)
        # The model's outputs beyond the box head's ("masks", "keypoints").
        self.branch_outputs = tuple(k for branch in branches(model.config)
                                    for k in branch.output_keys)
        self.paste_rule = str(model.config.paste_rule)
        # Row c holds the dataset id of contiguous class c; row 0 (background) maps padding
        # rows to 0, as the TF Object Detection API does.
        self.dataset_ids = tf.constant([0] + [int(i) for i in model.category_ids], tf.float32)
        self.label_map_asset = tf.saved_model.Asset(os.path.join(asset_dir, LABEL_MAP_ASSET))
        self.config_asset = tf.saved_model.Asset(os.path.join(asset_dir, CONFIG_ASSET))

    # -- the two signatures ----------------------------------------------------------------
    @tf.function(input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.uint8, name="image_tensor")])
    def serve_images(self, image_tensor):
        """image_tensor uint8 [B, H, W, 3], all one size -> the dict of `output_keys`."""
        # A loaded signature checks the dtype of its inputs but not their shape: without this
        # a [H, W, 3] or 4-channel request would fail deep inside the resize or normalization
        # with a message that does not name the input.
        image_tensor = tf.ensure_shape(image_tensor, [None, None, None, 3],
                                       name="check_image_tensor_shape")
        with tf.control_dependencies([tf.debugging.assert_positive(
                tf.shape(image_tensor)[1:3],
                message="image_tensor: height and width must be at least 1")]):
            image_tensor = tf.identity(image_tensor)
        outputs = self._detect(image_tensor, training=False)
        size = tf.shape(image_tensor)[1:3]
        sizes = tf.tile(size[None], [tf.shape(image_tensor)[0], 1])
        return self._postprocess(outputs, sizes)

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name="encoded_image_string_tensor")])
    def serve_encoded(self, encoded_image_string_tensor):
        """encoded_image_string_tensor string [B] -> the dict of `output_keys`.

        Each image is decoded and detected on its own (map_fn), so one request may mix image
        sizes; per-image outputs have the fixed shapes [D, ...] and stack into a batch. A JPEG
        or PNG is turned upright by its EXIF orientation first (ops/exif.py), as `predict` and
        the serving client read files, so boxes are in the upright image's pixels.
        """
        encoded_image_string_tensor = tf.ensure_shape(
            encoded_image_string_tensor, [None], name="check_encoded_image_shape")
        # map_fn needs every output's per-image shape up front; the model's keys depend on its
        # branches (masks for the mask branch, keypoints for the keypoint branch).
        signature = self._per_image_signature()

        def detect_one(encoded):
            image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8,
                                       expand_animations=False)
            image = exif.apply_orientation(image, exif.exif_orientation(encoded))
            out = self._detect(image[None], training=False)
            one = {k: out[k][0] for k in signature if k != "sizes"}
            one["sizes"] = tf.shape(image)[0:2]
            return one

        outputs = tf.map_fn(detect_one, encoded_image_string_tensor,
                            fn_output_signature=signature)
        sizes = outputs.pop("sizes")
        return self._postprocess(outputs, sizes)

    def _per_image_signature(self):
        """{MaskRCNN.call output key, and "sizes" (the decoded height, width): the TensorSpec
        of one image's value}, for serve_encoded's map_fn."""
        d, m, k = self.detections_per_image, self.mask_size, self.num_keypoints
        signature = {"boxes": tf.TensorSpec([d, 4], tf.float32),
                     "class_ids": tf.TensorSpec([d], tf.int32),
                     "scores": tf.TensorSpec([d], tf.float32),
                     "num_detections": tf.TensorSpec([], tf.int32),
                     "sizes": tf.TensorSpec([2], tf.int32)}
        shapes = {"masks": [d, m, m], "keypoints": [d, k, 3]}
        signature.update({key: tf.TensorSpec(shapes[key], tf.float32)
                          for key in self.branch_outputs})
        return signature

    # -- shared output formatting ----------------------------------------------------------
    def _postprocess(self, outputs, sizes):
        """Model outputs (pixels, contiguous ids) -> TF Object Detection API outputs.

        Args:
          outputs: the dict of `MaskRCNN.call`: boxes [B, D, 4] original pixels, class_ids
            [B, D] int32 1..K (0 padding), scores [B, D], num_detections [B]; masks
            [B, D, m, m] with the mask branch; keypoints [B, D, K, 3] (y, x, score) original
            pixels with the keypoint branch.
          sizes: int32 [B, 2] original (height, width) of each image.
        Returns:
          the dict of `output_keys(config)` (see the module docstring).
        """
        boxes = outputs["boxes"]
        # max(.., 1) is a no-op for real images (decode and the signature give sizes >= 1) but
        # keeps the division finite if an empty image ever reached here.
        hw = tf.cast(tf.maximum(sizes, 1), tf.float32)
        served = {
            "num_detections": tf.cast(outputs["num_detections"], tf.float32),
            "detection_boxes": boxes / tf.tile(hw, [1, 2])[:, None, :],
            "detection_scores": outputs["scores"],
            "detection_classes": tf.gather(self.dataset_ids, outputs["class_ids"]),
        }
        if "masks" in outputs:
            masks = outputs["masks"]
            served["detection_masks"] = (self._paste(masks, boxes, sizes)
                                         if self.full_image_masks else masks)
        if "keypoints" in outputs:
            served.update(keypoint_outputs(outputs["keypoints"], hw))
        return served

    def _paste(self, masks, boxes, sizes):
        """Box-relative masks [B, D, m, m] -> full-image masks [B, D, Hmax, Wmax].

        Images of one serve_encoded request may differ in size: all are pasted into the
        largest (Hmax, Wmax) and zeroed beyond their own height and width. A pasted pixel
        depends only on its box and its own position, so inside each image the values equal
        paste_masks(masks, boxes, H, W, config.paste_rule) exactly (predict_images' paste).
        """
        batch, d = tf.shape(masks)[0], tf.shape(masks)[1]
        m = tf.shape(masks)[2]
        max_h, max_w = tf.reduce_max(sizes[:, 0]), tf.reduce_max(sizes[:, 1])
        flat = mask_ops.paste_masks(tf.reshape(masks, tf.stack([batch * d, m, m])),
                                    tf.reshape(boxes, tf.stack([batch * d, 4])), max_h, max_w,
                                    paste_rule=self.paste_rule)
        pasted = tf.reshape(flat, tf.stack([batch, d, max_h, max_w]))
        rows = tf.range(max_h)[None, :] < sizes[:, 0:1]  # [B, Hmax]
        cols = tf.range(max_w)[None, :] < sizes[:, 1:2]  # [B, Wmax]
        inside = tf.cast(rows[:, :, None] & cols[:, None, :], tf.float32)
        return pasted * inside[:, None]


def next_version(export_dir: str) -> int:
    """1 + the largest integer-named folder in export_dir (1 if there is none)."""
    if not os.path.isdir(export_dir):
        return 1
    versions = [int(n) for n in os.listdir(export_dir)
                if _VERSION_RE.match(n) and os.path.isdir(os.path.join(export_dir, n))]
    return max(versions, default=0) + 1


def export_saved_model(model, export_dir: str, full_image_masks: bool = False) -> str:
    """Exports a MaskRCNN as a versioned SavedModel for TF Serving.

    The SavedModel is written to a temporary folder beside the version folder
    (`export_dir/.tmp-<version>-*`, a name TF Serving ignores) and renamed to
    `export_dir/<version>` only when complete, so a server polling export_dir never loads a
    half-written version.

    Args:
      model: a built or unbuilt `mrcnn_tf.modeling.mask_rcnn.MaskRCNN`.
      export_dir: the model's base path (TF Serving's `base_path`); created if missing.
      full_image_masks: output masks pasted into the image, [B, D, H, W], instead of the
        box-relative [B, D, m, m]. Costs B * D * H * W floats per request.
    Returns:
      the path of the new version folder, `export_dir/<version>`.
    Raises:
      TypeError: `model` is not a MaskRCNN.
      ValueError: full_image_masks=True for a model without a mask head (config.mask_on
        False): there are no masks to paste, and silently exporting without them would hide
        a wrong deployment setting.
    """
    for attr in ("config", "category_ids", "label_map"):
        if not hasattr(model, attr):
            raise TypeError(f"export_saved_model: expected a MaskRCNN model, got "
                            f"{type(model).__name__} (no .{attr})")
    if full_image_masks and MASK not in branches(model.config):
        raise ValueError("export_saved_model full_image_masks=True: the model has no mask head "
                         "(config.mask_on is False), so it has no masks to paste; export with "
                         "full_image_masks=False")
    if not model.built:
        model.build()
    os.makedirs(export_dir, exist_ok=True)
    version = next_version(export_dir)
    final = os.path.join(export_dir, str(version))
    tmp = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=export_dir)
    try:
        with tempfile.TemporaryDirectory() as asset_dir:
            # The Asset objects copy these files into <version>/assets/ at save time.
            with open(os.path.join(asset_dir, LABEL_MAP_ASSET), "w") as f:
                json.dump(model.label_map.to_dict(), f, indent=1)
            with open(os.path.join(asset_dir, CONFIG_ASSET), "w") as f:
                json.dump(model.config.to_dict(), f, indent=1)
            module = _ServingModule(model, full_image_masks, asset_dir)
            signatures = {
                "serving_default": module.serve_images.get_concrete_function(),
                "serve_encoded": module.serve_encoded.get_concrete_function(),
            }
            tf.saved_model.save(module, tmp, signatures=signatures)
        # os.rename is atomic on one filesystem, and tmp is a sibling of final; it fails
        # rather than merge into a non-empty version another exporter wrote meanwhile.
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
