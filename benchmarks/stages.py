"""The timed functions of a MaskRCNN: end-to-end inference and its four stages.

Each is a `tf.function` built from the model's own sublayers, in the order `MaskRCNN.detect`
runs them, so a stage's time is the time of exactly that code:

  backbone_fpn    resize/pad + normalize + backbone + FPN        images -> P2..P6
  rpn_proposals   RPN head + anchors + ProposalLayer (top-k, NMS) P2..P6 -> proposals
  box_detection   box RoIAlign + box head + DetectionLayer (NMS)  proposals -> detections
  mask_paste      mask RoIAlign + mask head + sigmoid + paste     detections -> full-image masks

Each stage is fed the real outputs of the stage before it (computed once), so NMS and RoIAlign
see realistic boxes. `masks_on_boxes` runs a model's mask stage on given (another model's)
detections. The pasted masks are thresholded at 0.5 into booleans in the graph, as
`MaskRCNN.predict_images` returns them.
"""

import tensorflow as tf

from mrcnn_tf.ops import resize as resize_ops
from mrcnn_tf.modeling.branches import mask_probabilities
from mrcnn_tf.ops import boxes as box_ops
from mrcnn_tf.ops import masks as mask_ops

STAGE_NAMES = ("backbone_fpn", "rpn_proposals", "box_detection", "mask_paste")


def paste_full_image(masks, boxes, height, width, paste_rule):
    """Box-relative mask probabilities -> boolean full-image masks.

    Args:
      masks: [B, D, m, m] float probabilities; boxes: [B, D, 4] original-image pixels.
      height, width: original image size (ints).
    Returns: [B, D, height, width] bool (probability >= 0.5).
    """
    batch, d, m = tf.shape(masks)[0], tf.shape(masks)[1], tf.shape(masks)[2]
    flat = mask_ops.paste_binary_masks(tf.reshape(masks, tf.stack([batch * d, m, m])),
                                       tf.reshape(boxes, tf.stack([batch * d, 4])), height,
                                       width, paste_rule=paste_rule)
    return tf.reshape(flat, tf.stack([batch, d, height, width]))


def image_signature(size):
    """Input signature of the timed functions: uint8 [B, size, size, 3], B dynamic.

    One trace serves every batch size (tracing the whole model costs seconds); the image size
    stays static, as the resize and the anchor grid are computed from it."""
    return [tf.TensorSpec([None, size, size, 3], tf.uint8, name="images")]


def make_inference_function(model, size):
    """tf.function: uint8 images [B, size, size, 3] -> {"num_detections" [B], "boxes"
    [B, D, 4] (image pixels), "class_ids" [B, D], "scores" [B, D], "masks" [B, n, size, size]
    bool}: `model(images)` (resize, network, NMS) then the mask paste.

    The paste covers the first n = max_b num_detections[b] rows (at least one), as the model's
    mask head does (`MaskRCNN.head_rows`): with score threshold 0 that is all D rows, and at a
    realistic threshold a user pastes only the detections there are."""
    paste_rule = model.config.paste_rule

    @tf.function(input_signature=image_signature(size))
    def inference(images):
        outputs = model(images, training=False)
        rows = tf.maximum(tf.reduce_max(outputs["num_detections"]), 1)
        masks = paste_full_image(outputs["masks"][:, :rows], outputs["boxes"][:, :rows], size,
                                 size, paste_rule)
        # Boxes, classes and scores are computed anyway: returning them costs nothing and
        # lets the precision comparison use the timed function's own detections.
        return {"num_detections": outputs["num_detections"], "boxes": outputs["boxes"],
                "class_ids": outputs["class_ids"], "scores": outputs["scores"], "masks": masks}

    return inference


def make_stage_functions(model, size):
    """The four stage tf.functions of `model` (module docstring), keyed by STAGE_NAMES.

    Signatures (images are [B, size, size, 3], B dynamic):
      backbone_fpn(images uint8 [B, size, size, 3]) -> dict features (list of 5 [B, h_l, w_l, C]),
        image_shape [B, 2], scale [B, 2], padded_hw [2]
      rpn_proposals(features, image_shape, padded_hw) -> dict proposals [B, R, 4], valid [B, R]
      box_detection(features, proposals, valid, image_shape) -> DetectionLayer dict
        (boxes [B, D, 4], scores [B, D], class_ids [B, D], num_detections [B])
      mask_paste(features, boxes, class_ids, scores, scale, original_hw) -> masks
        [B, D, H, W] bool
    """
    config = model.config

    @tf.function(input_signature=image_signature(size))
    def backbone_fpn(images):
        resized, image_shape, scale = resize_ops.preprocess_for_inference(images, config)
        normalized = model.normalize_images(resized, image_shape)
        features = model.fpn(model.backbone(normalized, training=False), training=False)
        return {"features": features, "image_shape": image_shape, "scale": scale,
                "padded_hw": tf.shape(resized)[1:3]}

    @tf.function(reduce_retracing=True)
    def rpn_proposals(features, image_shape, padded_hw):
        objectness, deltas = model.rpn_head(features, training=False)
        anchors = model.anchors(features, padded_hw)
        proposals, valid = model.proposals(objectness, deltas, anchors, image_shape,
                                           training=False)
        return {"proposals": proposals, "valid": valid}

    @tf.function(reduce_retracing=True)
    def box_detection(features, proposals, valid, image_shape):
        class_logits, box_deltas = model.box_head(model.box_pooler(features[:4], proposals),
                                                  training=False)
        return model.detector(proposals, valid, class_logits, box_deltas, image_shape)

    @tf.function(reduce_retracing=True)
    def mask_paste(features, boxes, class_ids, scores, scale, original_hw):
        # All D rows: with score threshold 0 every row is a detection, so this is also what
        # MaskRCNN.detect runs when it skips the padding rows.
        mask_logits = model.mask_head(model.mask_pooler(features[:4], boxes), training=False)
        masks = mask_probabilities(model.config, mask_logits, class_ids)
        masks = masks * tf.cast(scores > 0, tf.float32)[:, :, None, None]
        # Back to original-image pixels, as MaskRCNN.call does, before pasting.
        original = tf.cast(original_hw, tf.float32)
        image_boxes = box_ops.clip(boxes / tf.tile(scale, [1, 2])[:, None, :],
                                   tf.tile(original[None], [tf.shape(boxes)[0], 1]))
        return paste_full_image(masks, image_boxes, original_hw[0], original_hw[1],
                                config.paste_rule)

    return {"backbone_fpn": backbone_fpn, "rpn_proposals": rpn_proposals,
            "box_detection": box_detection, "mask_paste": mask_paste}


def stage_calls(stages, images):
    """Runs the stages once in order and returns a zero-argument callable per stage that
    repeats that stage on the recorded inputs, plus the outputs of the last one.

    Args: stages from `make_stage_functions`; images uint8 [B, H, W, 3] tensor.
    Returns: (dict name -> callable that runs the stage and fetches a small piece of its
      output to NumPy, so it returns only when the stage is done; masks [B, D, H, W];
      the box_detection outputs).
    """
    height, width = int(images.shape[1]), int(images.shape[2])
    original_hw = tf.constant([height, width], tf.int32)
    s1 = stages["backbone_fpn"](images)
    s2 = stages["rpn_proposals"](s1["features"], s1["image_shape"], s1["padded_hw"])
    s3 = stages["box_detection"](s1["features"], s2["proposals"], s2["valid"],
                                 s1["image_shape"])

    def run_mask():
        return stages["mask_paste"](s1["features"], s3["boxes"], s3["class_ids"],
                                    s3["scores"], s1["scale"], original_hw)

    masks = run_mask()
    calls = {
        "backbone_fpn": lambda: stages["backbone_fpn"](images)["padded_hw"].numpy(),
        "rpn_proposals": lambda: stages["rpn_proposals"](
            s1["features"], s1["image_shape"], s1["padded_hw"])["valid"].numpy(),
        "box_detection": lambda: stages["box_detection"](
            s1["features"], s2["proposals"], s2["valid"],
            s1["image_shape"])["num_detections"].numpy(),
        "mask_paste": lambda: run_mask()[:, :, 0, 0].numpy(),
    }
    return calls, masks, s3


def masks_on_boxes(stages, images, detections):
    """Another model's full-image masks for given detections: this model's backbone_fpn on
    `images`, then its mask_paste on the detections' boxes and classes (used to compare a
    mixed-precision mask head with float32's on float32's own boxes).

    Args: stages from `make_stage_functions`; images uint8 [B, H, W, 3]; detections dict
      (as `make_inference_function` returns) boxes [B, D, 4] in original-image pixels,
      class_ids [B, D], scores [B, D] (rows with score 0 are padding and get empty masks).
    Returns: [B, D, H, W] bool.
    """
    s1 = stages["backbone_fpn"](images)
    # Back to the resized frame the heads work in; mask_paste divides by the scale again.
    boxes = detections["boxes"] * tf.tile(s1["scale"], [1, 2])[:, None, :]
    original_hw = tf.constant([int(images.shape[1]), int(images.shape[2])], tf.int32)
    return stages["mask_paste"](s1["features"], boxes, detections["class_ids"],
                                detections["scores"], s1["scale"], original_hw)
