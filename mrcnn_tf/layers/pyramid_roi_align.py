"""PyramidRoIAlign: pools each box from the FPN level that matches its size, with any of the
poolers of `mrcnn_tf.ops.poolers` (RoIAlign by default)."""

import keras
import tensorflow as tf

from mrcnn_tf.ops.poolers import ROI_POOLERS


def assign_levels(boxes, min_level=2, max_level=5, canonical_size=224.0, canonical_level=4):
    """FPN paper eq. (1): k = floor(k0 + log2(sqrt(w * h) / 224)), clamped to the levels.

    Args:
      boxes: [..., 4] in input-image pixels.
    Returns:
      [...] int32 level in [min_level, max_level].
    """
    y1, x1, y2, x2 = tf.unstack(boxes, 4, axis=-1)
    size = tf.sqrt(tf.maximum(y2 - y1, 0.0) * tf.maximum(x2 - x1, 0.0))
    # The epsilon keeps log2 finite for empty boxes (they go to the finest level).
    level = tf.floor(canonical_level + tf.math.log(size / canonical_size + 1e-6) / tf.math.log(2.0))
    return tf.cast(tf.clip_by_value(level, min_level, max_level), tf.int32)


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class PyramidRoIAlign(keras.layers.Layer):
    """RoIAlign (or another pooler) over the FPN levels P2..P5, each box from its own level,
    order preserved.

    Call args:
      features: list [P2, P3, P4, P5] of [B, H_l, W_l, C] (strides 4, 8, 16, 32).
      boxes: [B, N, 4] (y1, x1, y2, x2) in input-image pixels.
    Returns:
      [B, N, output_size, output_size, C].

    By default each box is pooled only on its own level with `tf.image.crop_and_resize` (boxes
    are split by level and stitched back in order: shapes inside follow the level counts).
    `static_shapes=True` uses the gather-only RoIAlign, which converts to TFLite builtin ops,
    compiles with XLA and has deterministic GPU gradients: the levels are flattened into one
    table that each box reads at its own level's rows, so every box is pooled once and every
    shape is fixed. Both give the same numbers (`Config.static_shapes`).

    `pooler` names one of `ops.poolers.ROI_POOLERS` ("roi_align", "roi_align_v1", "roi_warp",
    "roi_pool"; `Config.roi_pooler`), which has both forms. `min_level`..`max_level` are the
    levels read: a box's FPN level is clamped into them (`Config.roi_levels`; (3, 3) pools
    every box from P3). `features` always starts at P2.

    Precision: the layer's dtype policy is "float32" unless `dtype` is given. Under a mixed
    global policy the float16 / bfloat16 feature maps are cast to float32 on the way in (box
    coordinates, level assignment and the bilinear sums are float32; so is the output), and
    the box / mask heads cast the pooled features back to their compute dtype.
    """

    def __init__(self, output_size, sampling_ratio=2, pooler="roi_align", min_level=2,
                 max_level=5, static_shapes=False, **kwargs):
        kwargs.setdefault("dtype", "float32")  # RoIAlign in float32 (class docstring)
        aligned = kwargs.pop("aligned", None)  # the layer config before `pooler` existed
        if aligned is not None and pooler == "roi_align":
            pooler = "roi_align" if aligned else "roi_align_v1"
        if pooler not in ROI_POOLERS:
            raise ValueError(f"PyramidRoIAlign pooler={pooler!r}: expected one of "
                             f"{tuple(ROI_POOLERS)}")
        if not 2 <= min_level <= max_level:
            raise ValueError(f"PyramidRoIAlign levels {min_level}..{max_level}: expected "
                             "2 <= min_level <= max_level (features start at P2)")
        super().__init__(**kwargs)
        self.output_size = int(output_size)
        self.sampling_ratio = int(sampling_ratio)
        self.pooler = pooler
        self.min_level = int(min_level)
        self.max_level = int(max_level)
        self.static_shapes = bool(static_shapes)
        # CropAndResize has no XLA kernel: Keras then resolves compile(jit_compile="auto") to
        # False (it would be True on a GPU) and answers jit_compile=True with a warning
        # instead of failing in the first step. Use static_shapes (training.device_plan picks it under XLA).
        self.supports_jit = self.static_shapes

    def call(self, features, boxes):
        batch = tf.shape(boxes)[0]
        num_boxes = tf.shape(boxes)[1]
        # Pooling is float32 whatever the policy (Keras already casts the inputs under the
        # default float32 policy; this also covers direct .call()s).
        features = [tf.cast(f, tf.float32) for f in features]
        channels = features[0].shape[-1]
        flat_boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
        box_indices = tf.repeat(tf.range(batch), num_boxes)
        levels = assign_levels(flat_boxes, self.min_level, self.max_level) - self.min_level
        num_levels = self.max_level - self.min_level + 1
        maps = features[self.min_level - 2:self.max_level - 1]  # features[0] is P2
        scales = [1.0 / 2 ** (i + self.min_level) for i in range(num_levels)]
        pooler = ROI_POOLERS[self.pooler]
        if self.static_shapes:
            pooled = pooler.multilevel(maps, flat_boxes, box_indices, levels, scales,
                                       self.output_size, self.sampling_ratio)
        else:
            positions = tf.dynamic_partition(tf.range(tf.size(levels)), levels, num_levels)
            parts = []
            for i in range(num_levels):
                parts.append(pooler.single(
                    maps[i], tf.gather(flat_boxes, positions[i]),
                    tf.gather(box_indices, positions[i]), self.output_size, scales[i],
                    self.sampling_ratio))
            pooled = tf.dynamic_stitch(positions, parts)
        return tf.reshape(pooled, tf.stack(
            [batch, num_boxes, self.output_size, self.output_size, channels]))

    def get_config(self):
        config = super().get_config()
        config.update({
            "output_size": self.output_size, "sampling_ratio": self.sampling_ratio,
            "pooler": self.pooler, "min_level": self.min_level, "max_level": self.max_level,
            "static_shapes": self.static_shapes,
        })
        return config
