"""The three heads: RPN (shared over FPN levels), box head and mask head.

Precision: under a mixed global policy the hidden convs / dense layers compute in float16 or
bfloat16, while every head returns float32: the last layers of the RPN and box heads (1x1
convs / dense layers with few outputs, a small share of the work) have the "float32" policy,
so the scores ranked by top-k / NMS and the deltas decoded into boxes keep float32 precision;
the mask head's logits are cast to float32 (its 1x1 predictor stays in the compute dtype,
which spares a float32 copy of the upsampled 28x28 maps; a mask is thresholded at 0.5 anyway).
"""

import keras
import tensorflow as tf


def _normal(stddev):
    return keras.initializers.RandomNormal(stddev=stddev)


class RPNHead(keras.layers.Layer):
    """3x3 conv + ReLU shared over levels, then 1x1 convs for objectness and box deltas.

    Call args: features, list of [B, H_l, W_l, C].
    Returns: (objectness list of [B, H_l, W_l, A], deltas list of [B, H_l, W_l, A * 4]),
      float32.
    """

    def __init__(self, num_anchors, channels, **kwargs):
        super().__init__(**kwargs)
        self.num_anchors = int(num_anchors)
        self.channels = int(channels)
        # Initialization as in Detectron2 / torchvision: N(0, 0.01), zero bias.
        self.conv = keras.layers.Conv2D(channels, 3, padding="same", activation="relu",
                                        kernel_initializer=_normal(0.01), name="conv")
        self.objectness = keras.layers.Conv2D(num_anchors, 1, kernel_initializer=_normal(0.01),
                                              dtype="float32", name="objectness")
        self.deltas = keras.layers.Conv2D(num_anchors * 4, 1, kernel_initializer=_normal(0.01),
                                          dtype="float32", name="deltas")

    def build(self, input_shape):
        shape = input_shape[0] if isinstance(input_shape, (list, tuple)) and isinstance(
            input_shape[0], (list, tuple)) else input_shape
        self.conv.build(shape)
        hidden = tuple(shape[:-1]) + (self.channels,)
        self.objectness.build(hidden)
        self.deltas.build(hidden)
        self.built = True

    def call(self, features):
        objectness, deltas = [], []
        for x in features:
            hidden = self.conv(x)
            objectness.append(self.objectness(hidden))
            deltas.append(self.deltas(hidden))
        return objectness, deltas

    def get_config(self):
        config = super().get_config()
        config.update({"num_anchors": self.num_anchors, "channels": self.channels})
        return config


class BoxHead(keras.layers.Layer):
    """Two fully connected layers, then class logits and per-class box deltas.

    Call args: pooled [B, N, 7, 7, C].
    Returns: class_logits [B, N, K + 1], box_deltas [B, N, (K + 1) * 4], float32.
    """

    def __init__(self, num_classes, fc_dim=1024, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.fc_dim = int(fc_dim)
        self.fc1 = keras.layers.Dense(fc_dim, activation="relu", name="fc1")
        self.fc2 = keras.layers.Dense(fc_dim, activation="relu", name="fc2")
        self.class_logits = keras.layers.Dense(num_classes + 1, kernel_initializer=_normal(0.01),
                                               dtype="float32", name="class_logits")
        self.box_deltas = keras.layers.Dense((num_classes + 1) * 4,
                                             kernel_initializer=_normal(0.001), dtype="float32",
                                             name="box_deltas")

    def build(self, input_shape):
        flat = int(input_shape[-1] * input_shape[-2] * input_shape[-3])
        self.fc1.build((None, flat))
        self.fc2.build((None, self.fc_dim))
        self.class_logits.build((None, self.fc_dim))
        self.box_deltas.build((None, self.fc_dim))
        self.built = True

    def call(self, pooled):
        batch = tf.shape(pooled)[0]
        num = tf.shape(pooled)[1]
        flat_dim = pooled.shape[2] * pooled.shape[3] * pooled.shape[4]
        x = tf.reshape(pooled, tf.stack([batch * num, flat_dim]))
        x = self.fc2(self.fc1(x))
        logits = tf.reshape(self.class_logits(x), tf.stack([batch, num, self.num_classes + 1]))
        deltas = tf.reshape(self.box_deltas(x), tf.stack([batch, num, (self.num_classes + 1) * 4]))
        return logits, deltas

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "fc_dim": self.fc_dim})
        return config


class MaskHead(keras.layers.Layer):
    """num_convs x (3x3 conv + ReLU), a 2x2 stride-2 transposed conv + ReLU, then a 1x1 conv
    with one mask logit map per class (masks and classes do not compete).

    Call args: pooled [B, N, 14, 14, C].
    Returns: mask logits [B, N, 28, 28, K + 1] float32.
    """

    def __init__(self, num_classes, conv_dim=256, num_convs=4, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.conv_dim = int(conv_dim)
        self.num_convs = int(num_convs)
        self.convs = [
            keras.layers.Conv2D(conv_dim, 3, padding="same", activation="relu",
                                kernel_initializer="he_normal", name=f"conv{i + 1}")
            for i in range(num_convs)
        ]
        self.upsample = keras.layers.Conv2DTranspose(
            conv_dim, 2, strides=2, activation="relu", kernel_initializer="he_normal",
            name="upsample")
        self.predictor = keras.layers.Conv2D(num_classes + 1, 1, kernel_initializer=_normal(0.001),
                                             name="predictor")

    def build(self, input_shape):
        shape = (None,) + tuple(input_shape[2:])
        for conv in self.convs:
            conv.build(shape)
            shape = shape[:-1] + (self.conv_dim,)
        self.upsample.build(shape)
        self.predictor.build((None, shape[1] * 2, shape[2] * 2, self.conv_dim))
        self.built = True

    def call(self, pooled):
        batch = tf.shape(pooled)[0]
        num = tf.shape(pooled)[1]
        x = tf.reshape(pooled, tf.concat([[batch * num], tf.shape(pooled)[2:]], axis=0))
        for conv in self.convs:
            x = conv(x)
        x = tf.cast(self.predictor(self.upsample(x)), tf.float32)
        return tf.reshape(x, tf.concat([[batch, num], tf.shape(x)[1:]], axis=0))

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "conv_dim": self.conv_dim,
                       "num_convs": self.num_convs})
        return config
