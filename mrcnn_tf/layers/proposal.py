"""ProposalLayer: RPN outputs -> a fixed number of object proposals per image."""

import keras
import tensorflow as tf

from mrcnn_tf.ops import boxes as box_ops
from mrcnn_tf.ops import nms

# Scores given to proposals that must never survive (too small); below NMS's threshold.
_DROPPED_SCORE = -1e9


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class ProposalLayer(keras.layers.Layer):
    """Decodes anchors + RPN deltas, clips, drops tiny boxes, keeps the top-k per level, then
    NMS (per level, as Detectron2 and torchvision) and the top proposals over all levels.

    Call args:
      objectness: list over levels of [B, H_l, W_l, A] logits.
      deltas: list over levels of [B, H_l, W_l, A * 4] (dy, dx, dh, dw).
      anchors: list over levels of [H_l * W_l * A, 4].
      image_shape: [B, 2] int32, the valid (unpadded) height and width of each image.
      training: picks the train or test top-k counts.
    Returns:
      proposals [B, post_nms_topk, 4] (y1, x1, y2, x2), no gradient; and
      valid [B, post_nms_topk] bool (False on padding slots).

    Precision: the layer's dtype policy is "float32" unless `dtype` is given, so under a mixed
    global policy the (float16 / bfloat16) RPN outputs are cast to float32 and box decoding,
    clipping, top-k and NMS all run in float32.
    """

    def __init__(self, pre_nms_topk_train=2000, pre_nms_topk_test=1000,
                 post_nms_topk_train=1000, post_nms_topk_test=1000, nms_threshold=0.7,
                 min_box_size=0.0, box_weights=(1.0, 1.0, 1.0, 1.0),
                 delta_clip=box_ops.DEFAULT_DELTA_CLIP, **kwargs):
        kwargs.setdefault("dtype", "float32")  # box arithmetic in float32 (class docstring)
        super().__init__(**kwargs)
        self.pre_nms_topk_train = pre_nms_topk_train
        self.pre_nms_topk_test = pre_nms_topk_test
        self.post_nms_topk_train = post_nms_topk_train
        self.post_nms_topk_test = post_nms_topk_test
        self.nms_threshold = nms_threshold
        self.min_box_size = min_box_size
        self.box_weights = tuple(box_weights)
        self.delta_clip = delta_clip

    @classmethod
    def from_model_config(cls, config, **kwargs):
        return cls(config.rpn_pre_nms_topk_train, config.rpn_pre_nms_topk_test,
                   config.rpn_post_nms_topk_train, config.rpn_post_nms_topk_test,
                   config.rpn_nms_threshold, config.rpn_min_box_size, config.rpn_box_weights,
                   config.bbox_delta_clip, **kwargs)

    def call(self, objectness, deltas, anchors, image_shape, training=False):
        pre_k = self.pre_nms_topk_train if training else self.pre_nms_topk_test
        post_k = self.post_nms_topk_train if training else self.post_nms_topk_test
        batch = tf.shape(objectness[0])[0]
        all_boxes, all_scores, all_levels = [], [], []
        for level, (logits, level_deltas, level_anchors) in enumerate(
                zip(objectness, deltas, anchors)):
            scores = tf.reshape(tf.cast(logits, tf.float32), tf.stack([batch, -1]))
            level_deltas = tf.reshape(tf.cast(level_deltas, tf.float32),
                                      tf.stack([batch, -1, 4]))
            k = tf.minimum(pre_k, tf.shape(scores)[1])
            top_scores, top_idx = tf.math.top_k(scores, k=k, sorted=False)
            top_deltas = tf.gather(level_deltas, top_idx, batch_dims=1)
            top_anchors = tf.gather(tf.cast(level_anchors, tf.float32), top_idx)
            boxes = box_ops.decode(top_deltas, top_anchors, self.box_weights, self.delta_clip)
            boxes = box_ops.clip(boxes, image_shape)
            heights, widths = box_ops.sizes(boxes)
            keep = (heights > self.min_box_size) & (widths > self.min_box_size)
            all_boxes.append(boxes)
            all_scores.append(tf.where(keep, top_scores, _DROPPED_SCORE))
            all_levels.append(tf.fill(tf.shape(top_scores), level))
        boxes = tf.concat(all_boxes, axis=1)
        scores = tf.concat(all_scores, axis=1)
        levels = tf.concat(all_levels, axis=1)
        nms_boxes = nms.offset_boxes_by_group(boxes, levels)
        indices, valid = nms.batched_nms_padded(
            nms_boxes, scores, post_k, self.nms_threshold, score_threshold=_DROPPED_SCORE / 2)
        proposals = tf.gather(boxes, indices, batch_dims=1)
        proposals = tf.where(valid[..., None], proposals, 0.0)
        return tf.stop_gradient(proposals), valid

    def get_config(self):
        config = super().get_config()
        config.update({
            "pre_nms_topk_train": self.pre_nms_topk_train,
            "pre_nms_topk_test": self.pre_nms_topk_test,
            "post_nms_topk_train": self.post_nms_topk_train,
            "post_nms_topk_test": self.post_nms_topk_test,
            "nms_threshold": self.nms_threshold,
            "min_box_size": self.min_box_size,
            "box_weights": list(self.box_weights),
            "delta_clip": self.delta_clip,
        })
        return config
