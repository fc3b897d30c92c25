"""The mask heads: the paper's small FCN (with a learned or a fixed 2x upsampling) and the MLP
of its Table 2e ablation, chosen by `Config.mask_head_type` / `Config.mask_upsample`.

Both take pooled RoI features [B, N, P, P, C] and return mask logits [B, N, m, m, M] float32
with m = 2P and M = K + 1 channels, one per class (masks and classes do not compete), or
M = 1 for class-agnostic masks.

Precision: under a mixed global policy the hidden layers compute in float16 / bfloat16 and the
logits are cast to float32 (the FCN's 1x1 predictor stays in the compute dtype, which spares a
float32 copy of the upsampled maps; a mask is thresholded at 0.5 anyway).
"""

import keras
import tensorflow as tf

from mrcnn_tf.modeling.norm import make_norm

# Config.mask_upsample -> how the FCN head doubles its resolution (None: a learned layer).
MASK_UPSAMPLES = {"deconv": None, "bilinear": "bilinear", "nearest": "nearest"}


def _mask_channels(num_classes: int, class_agnostic: bool) -> int:
    return 1 if class_agnostic else num_classes + 1


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class MaskHead(keras.layers.Layer):
    """num_convs x (3x3 conv [+ norm] + ReLU), a 2x upsampling, then a 1x1 conv with one mask
    logit map per class (module docstring).

    The upsampling (`upsample`): "deconv", the paper's learned 2x2 stride-2 transposed conv +
    ReLU; or fixed "bilinear" / "nearest" interpolation of the features, without weights.
    Interpolation and the 1x1 predictor are both linear (and an interpolation's weights sum to
    1), so interpolating the features and then predicting equals predicting at P x P and
    interpolating the logits: the fixed variants are exactly "upsample the coarse mask".

    Sublayers: conv1.. (+ conv1_norm.. with a norm, as torchvision v2's BatchNorm or
    Detectron2's NORM="GN"), upsample, predictor.

    Call args: pooled [B, N, P, P, C].
    Returns: mask logits [B, N, 2P, 2P, M] float32.
    """

    def __init__(self, num_classes, conv_dim=256, num_convs=4, norm="none",
                 class_agnostic=False, upsample="deconv", **kwargs):
        super().__init__(**kwargs)
        if upsample not in MASK_UPSAMPLES:
            raise ValueError(f"MaskHead upsample={upsample!r}: expected one of "
                             f"{tuple(MASK_UPSAMPLES)}")
        self.num_classes = int(num_classes)
        self.conv_dim = int(conv_dim)
        self.num_convs = int(num_convs)
        self.norm = norm or "none"
        self.class_agnostic = bool(class_agnostic)
        self.upsample_kind = upsample
        with_norm = self.norm != "none"
        self.convs = [
            keras.layers.Conv2D(conv_dim, 3, padding="same", use_bias=not with_norm,
                                activation=None if with_norm else "relu",
                                kernel_initializer="he_normal", name=f"conv{i + 1}")
            for i in range(num_convs)
        ]
        if with_norm:
            self.norms = [make_norm(self.norm, f"conv{i + 1}_norm", channels=conv_dim)
                          for i in range(num_convs)]
        if upsample == "deconv":
            self.upsample = keras.layers.Conv2DTranspose(
                conv_dim, 2, strides=2, activation="relu", kernel_initializer="he_normal",
                name="upsample")
        else:
            self.upsample = keras.layers.UpSampling2D(
                2, interpolation=MASK_UPSAMPLES[upsample], name="upsample")
        self.predictor = keras.layers.Conv2D(
            _mask_channels(num_classes, class_agnostic), 1,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.001), name="predictor")

    def norm_layers(self):
        """The norm after each conv, or None per conv without a norm."""
        return self.norms if self.norm != "none" else [None] * self.num_convs

    def build(self, input_shape):
        shape = (None,) + tuple(input_shape[2:])
        for conv, norm in zip(self.convs, self.norm_layers()):
            conv.build(shape)
            shape = shape[:-1] + (self.conv_dim,)
            if norm is not None:
                norm.build(shape)
        self.upsample.build(shape)
        # The transposed conv outputs conv_dim channels; interpolation keeps its input's.
        channels = self.conv_dim if self.upsample_kind == "deconv" else shape[-1]
        self.predictor.build((None, shape[1] * 2, shape[2] * 2, channels))
        self.built = True

    def call(self, pooled, training=None):
        batch = tf.shape(pooled)[0]
        num = tf.shape(pooled)[1]
        x = tf.reshape(pooled, tf.concat([[batch * num], tf.shape(pooled)[2:]], axis=0))
        for conv, norm in zip(self.convs, self.norm_layers()):
            x = conv(x)
            if norm is not None:
                x = tf.nn.relu(norm(x, training=training))
        x = tf.cast(self.predictor(self.upsample(x)), tf.float32)
        return tf.reshape(x, tf.concat([[batch, num], tf.shape(x)[1:]], axis=0))

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "conv_dim": self.conv_dim,
                       "num_convs": self.num_convs, "norm": self.norm,
                       "class_agnostic": self.class_agnostic, "upsample": self.upsample_kind})
        return config


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class MaskMLPHead(keras.layers.Layer):
    """The paper's MLP mask head (Table 2e): the pooled features flattened, two fc layers of
    `fc_dim` + ReLU, then one fc to every channel's `mask_size` x `mask_size` logits. Unlike
    the FCN it sees the whole RoI at once but keeps no spatial layout: each output pixel has
    its own weights.

    Sublayers: fc1, fc2, predictor.

    Call args: pooled [B, N, P, P, C].
    Returns: mask logits [B, N, mask_size, mask_size, M] float32.
    """

    def __init__(self, num_classes, mask_size, fc_dim=1024, class_agnostic=False, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.mask_size = int(mask_size)
        self.fc_dim = int(fc_dim)
        self.class_agnostic = bool(class_agnostic)
        self.channels = _mask_channels(num_classes, class_agnostic)
        self.fc1 = keras.layers.Dense(fc_dim, activation="relu", name="fc1")
        self.fc2 = keras.layers.Dense(fc_dim, activation="relu", name="fc2")
        self.predictor = keras.layers.Dense(
            self.mask_size * self.mask_size * self.channels,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.001), name="predictor")

    def build(self, input_shape):
        features = int(input_shape[2] * input_shape[3] * input_shape[4])
        self.fc1.build((None, features))
        self.fc2.build((None, self.fc_dim))
        self.predictor.build((None, self.fc_dim))
        self.built = True

    def call(self, pooled, training=None):
        batch = tf.shape(pooled)[0]
        num = tf.shape(pooled)[1]
        flat_dim = pooled.shape[2] * pooled.shape[3] * pooled.shape[4]
        x = tf.reshape(pooled, tf.stack([batch * num, flat_dim]))
        x = tf.cast(self.predictor(self.fc2(self.fc1(x))), tf.float32)
        m = self.mask_size
        return tf.reshape(x, tf.stack([batch, num, m, m, self.channels]))

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "mask_size": self.mask_size,
                       "fc_dim": self.fc_dim, "class_agnostic": self.class_agnostic})
        return config


def make_mask_head(config, name="mask_head"):
    """The mask head `config` asks for (mask_head_type, mask_upsample, mask_class_agnostic)."""
    if config.mask_head_type == "mlp":
        return MaskMLPHead(config.num_classes, config.mask_size, config.mask_head_fc_dim,
                           class_agnostic=config.mask_class_agnostic, name=name)
    return MaskHead(config.num_classes, config.mask_head_conv_dim, config.mask_head_num_convs,
                    norm=config.mask_head_norm, class_agnostic=config.mask_class_agnostic,
                    upsample=config.mask_upsample, name=name)


# Config.mask_head_type -> the layer class.
MASK_HEAD_TYPES = {"fcn": MaskHead, "mlp": MaskMLPHead}
