"""DetectionLayer: box-head outputs -> final per-class detections, padded."""

import keras
import tensorflow as tf

from mrcnn_tf.ops import boxes as box_ops
from mrcnn_tf.ops import nms


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class DetectionLayer(keras.layers.Layer):
    """Decodes every RoI's per-class box, clips to the image, then keeps (RoI, class) pairs
    scoring above the threshold, runs NMS per class and keeps the top detections per image.

    Call args:
      rois: [B, R, 4]; roi_valid: [B, R] bool.
      class_logits: [B, R, K + 1] (index 0 background).
      box_deltas: [B, R, (K + 1) * 4] per-class (dy, dx, dh, dw) encoded with box_weights.
      image_shape: [B, 2] valid height and width to clip to.
    Returns a dict, D = detections_per_image:
      "boxes" [B, D, 4], "scores" [B, D], "class_ids" [B, D] int32 in 1..K (0 on padding),
      "num_detections" [B] int32; padding rows are zero.

    Precision: the layer's dtype policy is "float32" unless `dtype` is given, so under a mixed
    global policy softmax, box decoding and NMS run in float32 and the outputs are float32.
    """

    def __init__(self, num_classes, detections_per_image=100, score_threshold=0.05,
                 nms_threshold=0.5, pre_nms_topk=5000, min_size=0.0,
                 box_weights=(10.0, 10.0, 5.0, 5.0), delta_clip=box_ops.DEFAULT_DELTA_CLIP,
                 **kwargs):
        kwargs.setdefault("dtype", "float32")  # box arithmetic in float32 (class docstring)
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.detections_per_image = int(detections_per_image)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.pre_nms_topk = int(pre_nms_topk)
        self.min_size = float(min_size)
        self.box_weights = tuple(box_weights)
        self.delta_clip = float(delta_clip)

    @classmethod
    def from_model_config(cls, config, **kwargs):
        return cls(config.num_classes, config.detections_per_image, config.score_threshold,
                   config.detection_nms_threshold, config.detection_pre_nms_topk,
                   config.min_detection_size, config.box_coder_weights,
                   config.bbox_delta_clip, **kwargs)

    def call(self, rois, roi_valid, class_logits, box_deltas, image_shape):
        batch = tf.shape(rois)[0]
        num_rois = tf.shape(rois)[1]
        k = self.num_classes
        rois = tf.cast(rois, tf.float32)
        probs = tf.nn.softmax(tf.cast(class_logits, tf.float32), axis=-1)[:, :, 1:]  # [B,R,K]
        deltas = tf.reshape(tf.cast(box_deltas, tf.float32),
                            tf.stack([batch, num_rois, k + 1, 4]))[:, :, 1:]
        boxes = box_ops.decode(deltas, rois[:, :, None, :], self.box_weights, self.delta_clip)
        boxes = box_ops.clip(tf.reshape(boxes, tf.stack([batch, -1, 4])), image_shape)
        heights, widths = box_ops.sizes(boxes)
        keep = ((heights > self.min_size) & (widths > self.min_size)
                & tf.reshape(tf.tile(roi_valid[:, :, None], [1, 1, k]), tf.stack([batch, -1])))
        scores = tf.where(keep, tf.reshape(probs, tf.stack([batch, -1])), 0.0)
        classes = tf.tile(tf.range(1, k + 1)[None, None, :], tf.stack([batch, num_rois, 1]))
        classes = tf.reshape(classes, tf.stack([batch, -1]))

        # Keep the best candidates only: NMS cost grows with the candidate count, and boxes
        # beyond the top few thousand almost never survive to the final top-D.
        top_k = tf.minimum(self.pre_nms_topk, tf.shape(scores)[1])
        scores, top_idx = tf.math.top_k(scores, k=top_k)
        boxes = tf.gather(boxes, top_idx, batch_dims=1)
        classes = tf.gather(classes, top_idx, batch_dims=1)

        indices, valid = nms.batched_nms_padded(
            nms.offset_boxes_by_group(boxes, classes), scores, self.detections_per_image,
            self.nms_threshold, score_threshold=self.score_threshold)
        out_boxes = tf.where(valid[..., None], tf.gather(boxes, indices, batch_dims=1), 0.0)
        out_scores = tf.where(valid, tf.gather(scores, indices, batch_dims=1), 0.0)
        out_classes = tf.where(valid, tf.gather(classes, indices, batch_dims=1), 0)
        return {
            "boxes": out_boxes,
            "scores": out_scores,
            "class_ids": out_classes,
            "num_detections": tf.reduce_sum(tf.cast(valid, tf.int32), axis=1),
        }

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_classes": self.num_classes,
            "detections_per_image": self.detections_per_image,
            "score_threshold": self.score_threshold,
            "nms_threshold": self.nms_threshold,
            "pre_nms_topk": self.pre_nms_topk,
            "min_size": self.min_size,
            "box_weights": list(self.box_weights),
            "delta_clip": self.delta_clip,
        })
        return config
