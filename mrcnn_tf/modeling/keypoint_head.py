"""The Keypoint R-CNN head (Mask R-CNN paper, section 5; Detectron2's
KRCNNConvDeconvUpsampleHead): per RoI, one S x S heatmap of logits per keypoint type.

Precision: under a mixed global policy the 3x3 convs compute in float16 or bfloat16, while the
transposed conv that produces the logits (`score_lowres`, K outputs from a 4x4 kernel, a small
share of the work) has the "float32" policy, as the last layers of the RPN and box heads: the
heatmaps feed a softmax over 56 * 56 bins and an argmax, where half precision would make ties
and lose the small logit differences between neighbouring bins.
"""

import keras
import tensorflow as tf


def _msra_fill():
    """He normal with fan_out, untruncated: Detectron2's c2_msra_fill (kaiming_normal_,
    mode="fan_out"). Keras and PyTorch count fans the same way for both conv kinds, so the
    std matches: sqrt(2 / (k * k * out)) for convs, sqrt(2 / (k * k * in)) for the deconv."""
    return keras.initializers.VarianceScaling(scale=2.0, mode="fan_out",
                                              distribution="untruncated_normal")


@keras.saving.register_keras_serializable(package="mrcnn_tf")
class KeypointHead(keras.layers.Layer):
    """num_convs x (3x3 conv + ReLU), a 4x4 stride-2 transposed conv to K logit maps, then a 2x
    bilinear upsample: 14 x 14 pooled features -> 56 x 56 heatmaps.

    The transposed conv with padding "same" (TF pads 1 before and 1 after for k = 4, s = 2)
    places input i's kernel tap t at output 2i - 1 + t, exactly PyTorch's ConvTranspose2d(
    kernel_size=4, stride=2, padding=1), so imported weights give the same maps. The upsample
    is tf.image.resize bilinear with half-pixel centres, as F.interpolate(align_corners=False).

    Sublayers (Detectron2 names, for a weight importer): conv_fcn1.., score_lowres.
    Weights: MSRA fill (see `_msra_fill`), zero biases, as Detectron2.

    Call args: pooled [B, N, P, P, C] (P = 14).
    Returns: heatmap logits [B, N, 4P, 4P, K] float32 (56 x 56 for P = 14).
    """

    def __init__(self, num_keypoints, conv_dim=512, num_convs=8, **kwargs):
        super().__init__(**kwargs)
        self.num_keypoints = int(num_keypoints)
        self.conv_dim = int(conv_dim)
        self.num_convs = int(num_convs)
        if self.num_keypoints < 1:
            raise ValueError(f"KeypointHead num_keypoints={num_keypoints}: expected >= 1")
        if self.conv_dim < 1:
            raise ValueError(f"KeypointHead conv_dim={conv_dim}: expected >= 1")
        if self.num_convs < 0:
            raise ValueError(f"KeypointHead num_convs={num_convs}: expected >= 0")
        for i in range(1, self.num_convs + 1):
            setattr(self, f"conv_fcn{i}", keras.layers.Conv2D(
                self.conv_dim, 3, padding="same", activation="relu",
                kernel_initializer=_msra_fill(), name=f"conv_fcn{i}"))
        self.score_lowres = keras.layers.Conv2DTranspose(
            self.num_keypoints, 4, strides=2, padding="same", kernel_initializer=_msra_fill(),
            dtype="float32", name="score_lowres")

    @property
    def convs(self):
        """The 3x3 convs in order (conv_fcn1, conv_fcn2, ...)."""
        return [getattr(self, f"conv_fcn{i}") for i in range(1, self.num_convs + 1)]

    def build(self, input_shape):
        if len(input_shape) != 5:
            raise ValueError(f"KeypointHead input shape {input_shape}: expected 5 dims, "
                             "[B, N, P, P, C]")
        shape = (None,) + tuple(input_shape[2:])
        for conv in self.convs:
            conv.build(shape)
            shape = shape[:-1] + (self.conv_dim,)
        self.score_lowres.build(shape)
        self.built = True

    def call(self, pooled):
        batch = tf.shape(pooled)[0]
        num = tf.shape(pooled)[1]
        # [B * N, P, P, C], keeping the static P, P, C for the convs.
        x = tf.reshape(pooled, tf.concat([[batch * num], tf.shape(pooled)[2:]], axis=0))
        x.set_shape([None] + list(pooled.shape[2:]))
        for conv in self.convs:
            x = conv(x)
        x = tf.cast(self.score_lowres(x), tf.float32)  # [B * N, 2P, 2P, K]
        # Static sizes where known, so the output keeps a static [.., 4P, 4P, K] shape.
        static = x.shape[1:3]
        size = [2 * d for d in static] if None not in static else tf.shape(x)[1:3] * 2
        x = tf.image.resize(x, size, method="bilinear")  # half-pixel centres, no antialias
        out = tf.reshape(x, tf.concat([[batch, num], tf.shape(x)[1:]], axis=0))
        out.set_shape(pooled.shape[:2].concatenate(x.shape[1:]))
        return out

    def compute_output_shape(self, input_shape):
        """[B, N, P, P, C] -> [B, N, 4P, 4P, K] (None stays None)."""
        side = [None if d is None else 4 * d for d in input_shape[2:4]]
        return (input_shape[0], input_shape[1], side[0], side[1], self.num_keypoints)

    def get_config(self):
        config = super().get_config()
        config.update({"num_keypoints": self.num_keypoints, "conv_dim": self.conv_dim,
                       "num_convs": self.num_convs})
        return config
