"""The heads after the box head, as branches (the shape of Detectron2's StandardROIHeads).

The box head is always there; each other head is a `Branch` that owns everything about it:
its layers (a RoIAlign pooler and a head), its loss name and weight, the batch keys its loss
reads, the model outputs it adds, the SavedModel outputs it serves and the COCO iou type it is
evaluated with. `branches(config)` is the one place that asks a config which heads exist; the
model, the exports and evaluation loop over its answer.

A branch's layers stay attributes of the model under their historical names (`mask_pooler` /
`mask_head` are saved as "mask_roi_align" / "mask_head"), so weight paths, saved models and
the weight importers are unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Tuple

import tensorflow as tf

from mrcnn_tf.config import Config
from mrcnn_tf.layers.pyramid_roi_align import PyramidRoIAlign
from mrcnn_tf.modeling import losses
from mrcnn_tf.modeling.mask_heads import make_mask_head
from mrcnn_tf.modeling.keypoint_head import KeypointHead
from mrcnn_tf.ops import keypoints as keypoint_ops


@dataclasses.dataclass(frozen=True)
class Branch:
    """One head after the box head.

    name: "mask" or "keypoint".
    loss_name: the key of its loss in `compute_losses` and the training logs.
    loss_weight_field: the Config field weighting that loss.
    batch_keys: training-batch keys its loss reads.
    output_keys: keys it adds to the model's outputs (`MaskRCNN.call` / `detect`).
    serving_outputs: the SavedModel / TFLite outputs it adds.
    iou_type: its COCO evaluation ("segm", "keypoints").
    build: config -> {model attribute: layer}.
    loss: (model, features, targets, training) -> scalar loss.
    infer: (model, features, detections, training) -> {output key: tensor}.
    """

    name: str
    loss_name: str
    loss_weight_field: str
    batch_keys: Tuple[str, ...]
    output_keys: Tuple[str, ...]
    serving_outputs: Tuple[str, ...]
    iou_type: str
    build: Callable
    loss: Callable
    infer: Callable


def pad_rows(values, used, detections):
    """values [B, used, ...] -> [B, D, ...]: zero rows after `used` (None: all D rows were
    computed) and on padding detections (score 0)."""
    static_d = detections["boxes"].shape[1]
    if used is not None:
        d = tf.shape(detections["boxes"])[1]
        values = tf.pad(values, [[0, 0], [0, d - used]] + [[0, 0]] * (values.shape.rank - 2))
        values.set_shape([None, static_d] + values.shape.as_list()[2:])
    real = tf.cast(detections["scores"] > 0, tf.float32)
    return values * tf.reshape(real, tf.concat([tf.shape(real), [1] * (values.shape.rank - 2)],
                                               axis=0))


def mask_classes(config: Config, class_ids):
    """The mask channel of each RoI: its class, or 0 for class-agnostic masks.

    Args: class_ids [B, N] int32. Returns: [B, N] int32.
    """
    return tf.zeros_like(class_ids) if config.mask_class_agnostic else class_ids


def mask_probabilities(config: Config, mask_logits, class_ids):
    """Each RoI's mask probabilities by the config's mask loss (sigmoid of its channel, or
    its channel of a per-pixel softmax).

    Args: mask_logits [B, N, m, m, M]; class_ids [B, N] int32 (detected classes).
    Returns: [B, N, m, m] float32.
    """
    probabilities = losses.MASK_LOSSES[config.mask_loss][1]
    return probabilities(mask_logits, mask_classes(config, class_ids))


def pooler(config: Config, size: int, name: str) -> PyramidRoIAlign:
    """A PyramidRoIAlign of `size` x `size` bins with the config's pooler, levels and sampling
    (the box head's and every branch's)."""
    return PyramidRoIAlign(size, config.roi_sampling_ratio, config.roi_pooler,
                           min_level=config.roi_levels[0], max_level=config.roi_levels[1],
                           static_shapes=config.static_shapes, name=name)


# -- mask --------------------------------------------------------------------------------------
def _build_mask(config: Config) -> Dict[str, object]:
    return {"mask_pooler": pooler(config, config.mask_pool_size, "mask_roi_align"),
            "mask_head": make_mask_head(config, name="mask_head")}


def _mask_loss(model, features, targets, training):
    """The config's mask loss (per-class sigmoid by default) of the GT class's m x m mask on
    the positive RoIs."""
    logits = model.mask_head(model.mask_pooler(features[:4], targets["mask_rois"]),
                             training=training)
    loss = losses.MASK_LOSSES[model.config.mask_loss][0]
    return loss(logits, targets["mask_targets"],
                mask_classes(model.config, targets["mask_classes"]), targets["mask_valid"])


def _mask_infer(model, features, detections, training):
    """{"masks": [B, D, m, m]} mask probabilities of the detections (0 on padding rows)."""
    used = model.head_rows(detections)
    boxes, class_ids = detections["boxes"], detections["class_ids"]
    if used is not None:
        boxes, class_ids = boxes[:, :used], class_ids[:, :used]
    logits = model.mask_head(model.mask_pooler(features[:4], boxes), training=training)
    masks = mask_probabilities(model.config, logits, class_ids)
    return {"masks": pad_rows(masks, used, detections)}


# -- keypoints ---------------------------------------------------------------------------------
def _build_keypoint(config: Config) -> Dict[str, object]:
    return {"keypoint_pooler": pooler(config, config.keypoint_pool_size,
                                       "keypoint_roi_align"),
            "keypoint_head": KeypointHead(config.num_keypoints, config.keypoint_head_conv_dim,
                                          config.keypoint_head_num_convs,
                                          name="keypoint_head")}


def _keypoint_loss(model, features, targets, training):
    """Softmax cross-entropy over each keypoint's heatmap. The same positive RoIs as the mask
    head (Detectron2 trains the keypoint head on the foreground proposals; those without a
    labelled keypoint inside add nothing)."""
    heatmaps = model.keypoint_head(model.keypoint_pooler(features[:4], targets["mask_rois"]),
                                   training=training)
    return keypoint_ops.keypoint_loss(heatmaps, targets["keypoint_targets"],
                                      targets["keypoint_valid"])


def _keypoint_infer(model, features, detections, training):
    """{"keypoints": [B, D, K, 3]} (y, x, score) of the detections in the frame of their
    boxes (0 on padding rows).

    By `config.keypoint_decode_rule`: "detectron2" takes the centre of each S x S heatmap's
    argmax bin (S = 56) inside the detection box, scored by that bin's softmax probability
    (`ops.keypoints.heatmaps_to_keypoints`, whose docstring bounds the error against
    Detectron2's per-RoI resize: half a bin); "torchvision" resizes the maps bicubically to the
    box's pixel size and scores the argmax pixel by its logit, as torchvision does
    (`ops.keypoints.heatmaps_to_keypoints_torchvision`).
    """
    config = model.config
    used = model.head_rows(detections)
    boxes = detections["boxes"] if used is None else detections["boxes"][:, :used]
    logits = model.keypoint_head(model.keypoint_pooler(features[:4], boxes),
                                 training=training)  # [B, n, S, S, K]
    shape = tf.shape(logits)
    size, k = config.keypoint_heatmap_size, config.num_keypoints
    flat = tf.reshape(logits, tf.stack([shape[0] * shape[1], size, size, k]))
    decode = keypoint_ops.KEYPOINT_DECODE_RULES[config.keypoint_decode_rule].decode
    keypoints = decode(flat, tf.reshape(boxes, [-1, 4]))
    keypoints = tf.reshape(keypoints, tf.stack([shape[0], shape[1], k, 3]))
    return {"keypoints": pad_rows(keypoints, used, detections)}


MASK = Branch(name="mask", loss_name="mask_loss", loss_weight_field="loss_weight_mask",
              batch_keys=("gt_masks",), output_keys=("masks",),
              serving_outputs=("detection_masks",), iou_type="segm", build=_build_mask,
              loss=_mask_loss, infer=_mask_infer)
KEYPOINT = Branch(name="keypoint", loss_name="keypoint_loss",
                  loss_weight_field="loss_weight_keypoint", batch_keys=("gt_keypoints",),
                  output_keys=("keypoints",),
                  serving_outputs=("detection_keypoints", "detection_keypoint_scores"),
                  iou_type="keypoints", build=_build_keypoint, loss=_keypoint_loss,
                  infer=_keypoint_infer)
ALL = (MASK, KEYPOINT)


def branches(config: Config) -> Tuple[Branch, ...]:
    """The branches of a model of `config`, in output order: MASK when config.mask_on,
    KEYPOINT when config.num_keypoints > 0 (both, either, or neither: Faster R-CNN)."""
    present = {"mask": config.mask_on, "keypoint": config.num_keypoints > 0}
    return tuple(branch for branch in ALL if present[branch.name])
