"""Tests for mrcnn_tf.modeling.keypoint_head.KeypointHead."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import skip_unless_cpu_runs

from mrcnn_tf.modeling.keypoint_head import KeypointHead
from mrcnn_tf.ops.keypoints import keypoint_loss


def _pooled(batch=2, num=3, side=14, channels=4, seed=0):
    return np.random.default_rng(seed).normal(
        size=(batch, num, side, side, channels)).astype(np.float32)


def test_output_shape_and_dtype():
    head = KeypointHead(5, conv_dim=8, num_convs=2)
    out = head(_pooled())
    assert tuple(out.shape) == (2, 3, 56, 56, 5) and out.dtype == tf.float32
    assert head.compute_output_shape((None, 3, 14, 14, 4)) == (None, 3, 56, 56, 5)


def test_default_layers_follow_detectron2():
    head = KeypointHead(17)
    head.build((None, None, 14, 14, 4))
    assert [c.name for c in head.convs] == [f"conv_fcn{i}" for i in range(1, 9)]
    assert tuple(head.conv_fcn1.kernel.shape) == (3, 3, 4, 512)
    assert tuple(head.conv_fcn8.kernel.shape) == (3, 3, 512, 512)
    assert tuple(head.score_lowres.kernel.shape) == (4, 4, 17, 512)  # (kh, kw, out, in)
    # MSRA fill: std sqrt(2 / fan_out), fan_out = 3 * 3 * 512; zero biases.
    std = float(np.std(head.conv_fcn8.kernel.numpy()))
    assert abs(std / np.sqrt(2.0 / (9 * 512)) - 1.0) < 0.02
    assert not np.any(head.conv_fcn8.bias.numpy())


def _numpy_deconv(x, kernel, bias):
    """PyTorch ConvTranspose2d(kernel 4, stride 2, padding 1) on one [h, w, c] map:
    input (i, j) adds kernel tap (t, u) to output (2i - 1 + t, 2j - 1 + u)."""
    h, w, _ = x.shape
    out = np.zeros((2 * h + 2, 2 * w + 2, kernel.shape[2]))  # 1 extra row/col each side
    for t in range(4):
        for u in range(4):
            contrib = x @ kernel[t, u].T  # [h, w, out]
            out[t:t + 2 * h:2, u:u + 2 * w:2] += contrib
    return out[1:2 * h + 1, 1:2 * w + 1] + bias


def _numpy_upsample2x(x):
    """Bilinear 2x with half-pixel centres (F.interpolate, align_corners=False)."""
    def axis_weights(n):
        src = np.clip((np.arange(2 * n) + 0.5) / 2 - 0.5, 0, n - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        return lo, hi, src - lo
    ylo, yhi, fy = axis_weights(x.shape[0])
    xlo, xhi, fx = axis_weights(x.shape[1])
    rows = x[ylo] * (1 - fy)[:, None, None] + x[yhi] * fy[:, None, None]
    return rows[:, xlo] * (1 - fx)[None, :, None] + rows[:, xhi] * fx[None, :, None]


def test_deconv_and_upsample_match_pytorch_semantics():
    head = KeypointHead(3, num_convs=0)  # logits = upsample(deconv(pooled))
    pooled = _pooled(batch=1, num=2, side=5, channels=4)
    head.build(pooled.shape)
    kernel = head.score_lowres.kernel.numpy()
    bias = np.random.default_rng(1).normal(size=3).astype(np.float32)
    head.score_lowres.bias.assign(bias)
    out = head(pooled).numpy()
    for n in range(2):
        expected = _numpy_upsample2x(_numpy_deconv(pooled[0, n], kernel, bias))
        np.testing.assert_allclose(out[0, n], expected, rtol=1e-4, atol=1e-4)


def test_gradients_reach_every_weight():
    head = KeypointHead(4, conv_dim=8, num_convs=3)
    pooled = _pooled(batch=1, num=2, channels=4)
    rng = np.random.default_rng(2)
    indices = rng.integers(0, 56 * 56, (1, 2, 4)).astype(np.int32)
    with tf.GradientTape() as tape:
        loss = keypoint_loss(head(pooled), indices, np.ones((1, 2, 4), bool))
    grads = tape.gradient(loss, head.trainable_weights)
    assert len(head.trainable_weights) == 2 * 3 + 2
    for weight, grad in zip(head.trainable_weights, grads):
        assert grad is not None and np.any(grad.numpy() != 0), weight.path


def test_config_round_trip():
    head = KeypointHead(6, conv_dim=8, num_convs=2, name="kp")
    clone = KeypointHead.from_config(head.get_config())
    assert clone.get_config() == head.get_config()
    assert (clone.num_keypoints, clone.conv_dim, clone.num_convs) == (6, 8, 2)
    pooled = _pooled()
    expected = head(pooled)
    clone.build(pooled.shape)
    clone.set_weights(head.get_weights())
    np.testing.assert_allclose(clone(pooled).numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)


def test_keras_file_round_trip(tmp_path):
    inputs = keras.Input((3, 14, 14, 4))
    model = keras.Model(inputs, KeypointHead(5, conv_dim=8, num_convs=2, name="kp")(inputs))
    pooled = _pooled()
    expected = model(pooled).numpy()
    path = str(tmp_path / "keypoint_head.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("kp"), KeypointHead)
    np.testing.assert_array_equal(loaded(pooled).numpy(), expected)


def test_mixed_precision_returns_float32_logits():
    skip_unless_cpu_runs("mixed_float16")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        head = KeypointHead(3, conv_dim=8, num_convs=1)
        out = head(_pooled(batch=1, num=1))
    finally:
        keras.config.set_dtype_policy(previous)
    assert head.conv_fcn1.compute_dtype == "float16"
    assert head.score_lowres.compute_dtype == "float32"
    assert out.dtype == tf.float32


@pytest.mark.parametrize("kwargs,message", [
    ({"num_keypoints": 0}, "num_keypoints=0"),
    ({"num_keypoints": 3, "conv_dim": 0}, "conv_dim=0"),
    ({"num_keypoints": 3, "num_convs": -1}, "num_convs=-1"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        KeypointHead(**kwargs)


def test_bad_input_rank():
    with pytest.raises(ValueError, match="expected 5 dims"):
        KeypointHead(3, conv_dim=8, num_convs=1)(np.zeros((2, 14, 14, 4), np.float32))
