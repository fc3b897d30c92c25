"""The RPN head (shared over FPN levels) and the box head; the mask heads are in
`mask_heads`.

Precision: under a mixed global policy the hidden convs / dense layers compute in float16 or
bfloat16, while every head returns float32: the last layers of the RPN and box heads (1x1
convs / dense layers with few outputs, a small share of the work) have the "float32" policy,
so the scores ranked by top-k / NMS and the deltas decoded into boxes keep float32 precision.
"""

import keras
import tensorflow as tf

from mrcnn_tf.modeling.norm import make_norm


def _normal(stddev):
    return keras.initializers.RandomNormal(stddev=stddev)


def _conv_norm_relu(layer, index, filters, norm, initializer):
    """Creates `conv{index}` (3x3) and, with a norm, `conv{index}_norm` as attributes of
    `layer` (attribute names are the saved-weights paths, so they are stable).

    Without a norm the conv has a bias and applies the ReLU itself; with one, the conv has no
    bias (the norm's shift replaces it) and `_apply_conv_norm_relu` applies norm, then ReLU, as
    torchvision's Conv2dNormActivation and Detectron2's Conv2d(norm=...) do.
    """
    with_norm = norm not in (None, "none")
    setattr(layer, f"conv{index}", keras.layers.Conv2D(
        filters, 3, padding="same", use_bias=not with_norm,
        activation=None if with_norm else "relu", kernel_initializer=initializer,
        name=f"conv{index}"))
    if with_norm:
        setattr(layer, f"conv{index}_norm", make_norm(norm, f"conv{index}_norm",
                                                      channels=filters))


def _apply_conv_norm_relu(layer, index, x, training):
    """x [M, h, w, c] -> conv{index} [-> norm -> ReLU] of `layer`, [M, h, w, filters]."""
    x = getattr(layer, f"conv{index}")(x)
    norm = getattr(layer, f"conv{index}_norm", None)
    return x if norm is None else tf.nn.relu(norm(x, training=training))


def _build_conv_norm(layer, index, shape, filters):
    """Builds conv{index} (and its norm) of `layer` on inputs of `shape`; returns the output
    shape."""
    getattr(layer, f"conv{index}").build(shape)
    shape = tuple(shape[:-1]) + (filters,)
    norm = getattr(layer, f"conv{index}_norm", None)
    if norm is not None:
        norm.build(shape)
    return shape


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class RPNHead(keras.layers.Layer):
    """`num_convs` 3x3 convs + ReLU shared over levels, then 1x1 convs for objectness and box
    deltas (torchvision v2 uses 2 convs; the paper, Detectron2 and torchvision v1 one).

    Sublayers: `conv` (the first conv), `conv2`, ... (further ones), `objectness`, `deltas`.

    Call args: features, list of [B, H_l, W_l, C].
    Returns: (objectness list of [B, H_l, W_l, A], deltas list of [B, H_l, W_l, A * 4]),
      float32.
    """

    def __init__(self, num_anchors, channels, num_convs=1, **kwargs):
        super().__init__(**kwargs)
        self.num_anchors = int(num_anchors)
        self.channels = int(channels)
        self.num_convs = int(num_convs)
        if self.num_convs < 1:
            raise ValueError(f"RPNHead num_convs={num_convs}: expected >= 1")
        # Initialization as in Detectron2 / torchvision: N(0, 0.01), zero bias.
        self.conv = keras.layers.Conv2D(channels, 3, padding="same", activation="relu",
                                        kernel_initializer=_normal(0.01), name="conv")
        for i in range(2, self.num_convs + 1):
            setattr(self, f"conv{i}", keras.layers.Conv2D(
                channels, 3, padding="same", activation="relu",
                kernel_initializer=_normal(0.01), name=f"conv{i}"))
        self.objectness = keras.layers.Conv2D(num_anchors, 1, kernel_initializer=_normal(0.01),
                                              dtype="float32", name="objectness")
        self.deltas = keras.layers.Conv2D(num_anchors * 4, 1, kernel_initializer=_normal(0.01),
                                          dtype="float32", name="deltas")

    @property
    def hidden_convs(self):
        """The shared 3x3 convs in order (`conv`, `conv2`, ...)."""
        return [self.conv] + [getattr(self, f"conv{i}") for i in range(2, self.num_convs + 1)]

    def build(self, input_shape):
        shape = input_shape[0] if isinstance(input_shape, (list, tuple)) and isinstance(
            input_shape[0], (list, tuple)) else input_shape
        for conv in self.hidden_convs:
            conv.build(shape)
            shape = tuple(shape[:-1]) + (self.channels,)
        self.objectness.build(shape)
        self.deltas.build(shape)
        self.built = True

    def call(self, features):
        objectness, deltas = [], []
        for x in features:
            hidden = x
            for conv in self.hidden_convs:
                hidden = conv(hidden)
            objectness.append(self.objectness(hidden))
            deltas.append(self.deltas(hidden))
        return objectness, deltas

    def get_config(self):
        config = super().get_config()
        config.update({"num_anchors": self.num_anchors, "channels": self.channels,
                       "num_convs": self.num_convs})
        return config


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class BoxHead(keras.layers.Layer):
    """`num_convs` x (3x3 conv [+ norm] + ReLU), `num_fcs` fully connected layers + ReLU,
    then class logits and per-class box deltas.

    The paper's head is 0 convs + 2 fcs ("2fc", the default); 4 convs + 1 fc with a norm is
    the "4conv1fc" head of Wu & He (GroupNorm) and torchvision's v2 (BatchNorm).

    Sublayers: conv1.. (+ conv1_norm..), fc1.., class_logits, box_deltas.

    Call args: pooled [B, N, P, P, C].
    Returns: class_logits [B, N, K + 1], box_deltas [B, N, (K + 1) * 4], float32.
    """

    def __init__(self, num_classes, fc_dim=1024, num_convs=0, conv_dim=256, num_fcs=2,
                 norm="none", **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.fc_dim = int(fc_dim)
        self.num_convs = int(num_convs)
        self.conv_dim = int(conv_dim)
        self.num_fcs = int(num_fcs)
        self.norm = norm or "none"
        for i in range(1, self.num_convs + 1):
            # He init as Detectron2's conv box head (c2_msra_fill).
            _conv_norm_relu(self, i, self.conv_dim, self.norm, "he_normal")
        for i in range(1, self.num_fcs + 1):
            setattr(self, f"fc{i}", keras.layers.Dense(fc_dim, activation="relu", name=f"fc{i}"))
        self.class_logits = keras.layers.Dense(num_classes + 1, kernel_initializer=_normal(0.01),
                                               dtype="float32", name="class_logits")
        self.box_deltas = keras.layers.Dense((num_classes + 1) * 4,
                                             kernel_initializer=_normal(0.001), dtype="float32",
                                             name="box_deltas")

    def build(self, input_shape):
        shape = (None,) + tuple(input_shape[2:])
        for i in range(1, self.num_convs + 1):
            shape = _build_conv_norm(self, i, shape, self.conv_dim)
        features = int(shape[1] * shape[2] * shape[3])
        for i in range(1, self.num_fcs + 1):
            getattr(self, f"fc{i}").build((None, features))
            features = self.fc_dim
        self.class_logits.build((None, features))
        self.box_deltas.build((None, features))
        self.built = True

    def call(self, pooled, training=None):
        batch = tf.shape(pooled)[0]
        num = tf.shape(pooled)[1]
        # [B * N, P, P, C] with static P, P, C (the flattened width below must be static).
        x = tf.reshape(pooled, [-1] + list(pooled.shape[2:]))
        for i in range(1, self.num_convs + 1):
            x = _apply_conv_norm_relu(self, i, x, training)
        # Flattened [P, P, C] (channels last); an importer reorders torch's [C, P, P] weights.
        flat_dim = x.shape[1] * x.shape[2] * x.shape[3]
        x = tf.reshape(x, tf.stack([batch * num, flat_dim]))
        for i in range(1, self.num_fcs + 1):
            x = getattr(self, f"fc{i}")(x)
        logits = tf.reshape(self.class_logits(x), tf.stack([batch, num, self.num_classes + 1]))
        deltas = tf.reshape(self.box_deltas(x), tf.stack([batch, num, (self.num_classes + 1) * 4]))
        return logits, deltas

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "fc_dim": self.fc_dim,
                       "num_convs": self.num_convs, "conv_dim": self.conv_dim,
                       "num_fcs": self.num_fcs, "norm": self.norm})
        return config
