"""Tests for mrcnn_tf.modeling.fpn (FPN layer and the tiny backbone + FPN model)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.config import get_config
from mrcnn_tf.modeling.fpn import FPN, build_backbone_with_fpn

IN_CHANNELS = (8, 12, 16, 24)


def _features(batch, h, w, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(batch, h // s, w // s, c)).astype(np.float32)
            for s, c in zip((4, 8, 16, 32), IN_CHANNELS)]


def _shapes(outputs):
    return [tuple(int(d) for d in o.shape) for o in outputs]


def _pyramid_shapes(batch, h, w, channels):
    """P2..P5 at strides 4..32; P6 pools P5 with stride 2, so its size rounds up."""
    sizes = [(h // s, w // s) for s in (4, 8, 16, 32)]
    sizes.append((-(-sizes[-1][0] // 2), -(-sizes[-1][1] // 2)))
    return [(batch, sh, sw, channels) for sh, sw in sizes]


@pytest.mark.parametrize("norm", [None, "gn"])
def test_fpn_shapes(norm):
    fpn = FPN(channels=16, norm=norm)
    for h, w in ((64, 64), (128, 96)):
        out = fpn(_features(2, h, w))
        assert _shapes(out) == _pyramid_shapes(2, h, w, 16)
    assert fpn.compute_output_shape([(None, 32, 32, 8), (None, 16, 16, 12), (None, 8, 8, 16),
                                     (None, 4, 4, 24)])[-1] == (None, 2, 2, 16)


def test_fpn_matches_top_down_definition():
    """P_k = output_k(lateral_k(C_k) + nearest2x(T_{k+1})), recomputed from the sublayers."""
    fpn = FPN(channels=8)
    feats = _features(1, 64, 64)
    p2, p3, p4, p5, p6 = [p.numpy() for p in fpn(feats)]
    lat = [conv(c).numpy() for conv, c in zip(fpn.lateral_convs, feats)]
    up = lambda t: np.repeat(np.repeat(t, 2, axis=1), 2, axis=2)  # noqa: E731
    t5 = lat[3]
    t4 = lat[2] + up(t5)
    t3 = lat[1] + up(t4)
    t2 = lat[0] + up(t3)
    for got, t, conv in zip((p2, p3, p4, p5), (t2, t3, t4, t5), fpn.output_convs):
        np.testing.assert_allclose(got, conv(t).numpy(), rtol=1e-5, atol=1e-5)
    # P6 is the stride-2 subsample of P5 (max pool with kernel 1).
    np.testing.assert_array_equal(p6, p5[:, ::2, ::2, :])
    # Upper levels really feed the lower ones: changing C5 changes P2.
    feats2 = list(feats)
    feats2[3] = feats2[3] + 1.0
    assert np.abs(fpn(feats2)[0].numpy() - p2).max() > 1e-3


def test_fpn_sublayer_names_and_bias():
    fpn = FPN(channels=8, name="fpn")
    fpn(_features(1, 64, 64))
    paths = {w.path for w in fpn.weights}
    for k in (2, 3, 4, 5):
        assert f"fpn/fpn_lateral{k}/kernel" in paths and f"fpn/fpn_lateral{k}/bias" in paths
        assert f"fpn/fpn_output{k}/kernel" in paths
    gn = FPN(channels=64, norm="gn", name="fpn")
    gn(_features(1, 64, 64))
    paths = {w.path for w in gn.weights}
    assert "fpn/fpn_lateral2/bias" not in paths  # GN's beta replaces the bias
    assert "fpn/fpn_output3_norm/gamma" in paths
    assert gn.output_norms[0].groups == 32


@pytest.mark.parametrize("norm", [None, "gn", "bn", "frozen_bn"])
def test_fpn_config_round_trip(norm):
    fpn = FPN(channels=16, norm=norm, name="my_fpn")
    feats = _features(2, 64, 64, seed=1)
    expected = fpn(feats)
    config = fpn.get_config()
    assert config["channels"] == 16 and config["norm"] == norm
    clone = FPN.from_config(config)
    clone.build([f.shape for f in feats])
    assert len(clone.weights) == len(fpn.weights)
    clone.set_weights(fpn.get_weights())
    for a, b in zip(expected, clone(feats)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)
    # Generic Keras (de)serialization finds the registered class.
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(fpn))
    assert isinstance(revived, FPN) and revived.channels == 16 and revived.norm == norm


def test_fpn_bad_norm():
    with pytest.raises(ValueError, match="norm='layer'"):
        FPN(channels=8, norm="layer")


def test_tiny_backbone_fpn_dynamic_shapes_and_keras_file(tmp_path):
    config = get_config("shapes_tiny")
    model = build_backbone_with_fpn(config)
    for h, w in ((64, 64), (96, 128)):
        out = model(np.zeros((2, h, w, 3), np.float32))
        assert _shapes(out) == _pyramid_shapes(2, h, w, config.fpn_channels)
    # Round trip through a .keras file (custom layers are registered and serializable).
    x = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype(np.float32)
    expected = model(x, training=False)
    path = str(tmp_path / "tiny_fpn.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(expected, loaded(x, training=False)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


def test_every_trainable_weight_gets_a_gradient():
    config = get_config("shapes_tiny")  # norm "bn", freeze_at 0
    model = build_backbone_with_fpn(config)
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype(np.float32)
    with tf.GradientTape() as tape:
        outputs = model(x, training=True)
        # Weighted sums so that no level's gradient is identically zero by symmetry.
        loss = tf.add_n([tf.reduce_mean(tf.square(p - 0.1 * i)) for i, p in enumerate(outputs)])
    weights = model.trainable_weights
    grads = tape.gradient(loss, weights)
    assert len(weights) > 50
    missing = [w.path for w, g in zip(weights, grads) if g is None]
    assert missing == []
    zero = [w.path for w, g in zip(weights, grads) if not np.any(g.numpy())]
    assert zero == []
