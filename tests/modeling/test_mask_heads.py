"""The mask head variants and the two mask losses (modeling/mask_heads.py, losses.py)."""

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.config import get_config
from mrcnn_tf.modeling import losses
from mrcnn_tf.modeling.branches import mask_probabilities
from mrcnn_tf.modeling.mask_heads import MaskHead, MaskMLPHead, make_mask_head

POOLED = tf.constant(np.random.default_rng(0).normal(size=(2, 3, 7, 7, 5)).astype(np.float32))


@pytest.mark.parametrize("upsample", ["deconv", "bilinear", "nearest"])
@pytest.mark.parametrize("agnostic, channels", [(False, 4), (True, 1)])
def test_fcn_head_shapes_and_weights(upsample, agnostic, channels):
    head = MaskHead(3, conv_dim=8, num_convs=2, class_agnostic=agnostic, upsample=upsample)
    out = head(POOLED)
    assert out.shape == (2, 3, 14, 14, channels) and out.dtype == tf.float32
    names = {w.path.split("/", 1)[1] for w in head.weights}
    assert ("upsample/kernel" in names) == (upsample == "deconv")
    clone = MaskHead.from_config(head.get_config())
    assert (clone.class_agnostic, clone.upsample_kind) == (agnostic, upsample)


@pytest.mark.parametrize("upsample", ["bilinear", "nearest"])
def test_fixed_upsampling_equals_upsampling_the_coarse_logits(upsample):
    # Interpolation and the 1x1 predictor are linear and the interpolation weights sum to 1,
    # so the head predicts exactly the interpolated P x P logits (the docstring's claim).
    head = MaskHead(3, conv_dim=8, num_convs=1, upsample=upsample)
    out = head(POOLED).numpy()
    hidden = head.convs[0](tf.reshape(POOLED, [-1, 7, 7, 5]))
    coarse = head.predictor(hidden)
    method = {"bilinear": "bilinear", "nearest": "nearest"}[upsample]
    want = tf.image.resize(coarse, [14, 14], method=method).numpy().reshape(out.shape)
    np.testing.assert_allclose(out, want, atol=1e-5)


def test_mlp_head_predicts_every_pixel_from_the_whole_roi():
    head = MaskMLPHead(3, mask_size=14, fc_dim=16)
    out = head(POOLED)
    assert out.shape == (2, 3, 14, 14, 4)
    assert {w.path.split("/", 1)[1] for w in head.weights} == {
        "fc1/kernel", "fc1/bias", "fc2/kernel", "fc2/bias", "predictor/kernel",
        "predictor/bias"}
    assert head.fc1.kernel.shape == (7 * 7 * 5, 16)
    # Changing one input cell changes output pixels far from it (no locality, unlike a conv).
    poked = POOLED.numpy().copy()
    poked[0, 0, 0, 0] += 10.0
    diff = np.abs(head(tf.constant(poked)).numpy() - out.numpy())[0, 0]
    assert diff[10:, 10:].max() > 0


def test_make_mask_head_follows_the_config():
    config = get_config("shapes_tiny")
    assert isinstance(make_mask_head(config), MaskHead)
    mlp = make_mask_head(config.replace(mask_head_type="mlp", mask_class_agnostic=True))
    assert isinstance(mlp, MaskMLPHead) and mlp.channels == 1


def _numpy_softmax_loss(logits, targets, classes, valid):
    logits = logits.astype(np.float64)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    total, pixels = 0.0, 0
    for b in range(logits.shape[0]):
        for p in range(logits.shape[1]):
            if valid[b, p]:
                t = targets[b, p]
                total += -(t * log_p[b, p, :, :, classes[b, p]] + (1 - t) * log_p[b, p, ..., 0]
                           ).sum()
                pixels += t.size
    return total / pixels


def test_softmax_mask_loss_matches_numpy_and_makes_masks_compete():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 3, 4, 4, 4)).astype(np.float32)
    targets = (rng.uniform(size=(2, 3, 4, 4)) > 0.5).astype(np.float32)
    targets[0, 0, 0, 0] = 0.3  # a soft target (a resampled mask)
    classes = np.array([[1, 2, 3], [3, 1, 1]], np.int32)
    valid = np.array([[True, True, False], [True, False, True]])
    got = float(losses.mask_loss_softmax(logits, targets, classes, valid))
    assert got == pytest.approx(_numpy_softmax_loss(logits, targets, classes, valid), rel=1e-5)
    # Raising another class's logit raises this loss (competition); the sigmoid loss ignores it.
    other = logits.copy()
    other[..., 2] += 3.0
    other_classes = np.where(classes == 2, 1, classes)
    for loss, moves in ((losses.mask_loss_softmax, True), (losses.mask_loss, False)):
        before = float(loss(logits, targets, other_classes, valid))
        after = float(loss(other, targets, other_classes, valid))
        assert (after > before + 1e-3) if moves else after == pytest.approx(before, abs=1e-6)


def test_mask_probabilities_follow_the_loss_and_the_class_channels():
    rng = np.random.default_rng(2)
    logits = tf.constant(rng.normal(size=(1, 2, 3, 3, 4)).astype(np.float32))
    classes = tf.constant([[2, 3]])
    config = get_config("shapes_tiny")
    sigmoid = mask_probabilities(config, logits, classes).numpy()
    np.testing.assert_allclose(sigmoid[0, 1], 1 / (1 + np.exp(-logits.numpy()[0, 1, ..., 3])),
                               rtol=1e-6)
    softmax = mask_probabilities(config.replace(mask_loss="softmax"), logits, classes).numpy()
    # The class against background within the softmax: p_2 / (p_2 + p_0), not p_2 itself.
    e = np.exp(logits.numpy()[0, 0])
    np.testing.assert_allclose(softmax[0, 0], e[..., 2] / (e[..., 2] + e[..., 0]), rtol=1e-5)
    assert np.all(softmax[0, 0] > e[..., 2] / e.sum(-1))
    agnostic = mask_probabilities(config.replace(mask_class_agnostic=True), logits[..., :1],
                                  classes).numpy()
    np.testing.assert_allclose(agnostic[0, 1], 1 / (1 + np.exp(-logits.numpy()[0, 1, ..., 0])),
                               rtol=1e-6)
