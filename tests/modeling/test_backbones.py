"""Tests for mrcnn_tf.modeling.norm and mrcnn_tf.modeling.backbones.

ResNet-50 is built three times in this module (module-scoped fixtures): random init with the
stride in the 3x3 conv, and with weights from a keras.applications ResNet50 saved to a temporary
file (plus that source model). No test downloads anything.
"""

import logging
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.config import Config
from mrcnn_tf.modeling import backbones
from mrcnn_tf.modeling.backbones import backbone_channels, build_backbone, layer_stage
from mrcnn_tf.modeling.norm import FrozenBatchNormalization, group_count, make_norm

CAFFE_MEAN_RGB = backbones.KERAS_RESNET_PIXEL_MEAN_RGB


def _shapes(outputs):
    return [tuple(int(d) for d in o.shape) for o in outputs]


def _expected_shapes(batch, h, w, channels):
    return [(batch, h // s, w // s, c) for s, c in zip((4, 8, 16, 32), channels)]


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keras_resnet50_file(tmp_path_factory):
    """A keras.applications ResNet50 (no top) with random weights *and* random BatchNorm
    statistics and conv biases (the defaults 0/1/0 would hide a wrong mapping), saved to disk."""
    keras.utils.set_random_seed(1234)
    source = keras.applications.ResNet50(weights=None, include_top=False)
    rng = np.random.default_rng(0)
    for layer in source.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.0, c), rng.normal(0, 0.1, c),
                               rng.normal(0, 0.1, c), rng.uniform(0.5, 2.0, c)])
        elif isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape)])
    path = tmp_path_factory.mktemp("weights") / "resnet50_notop.weights.h5"
    source.save_weights(str(path))
    return source, str(path)


@pytest.fixture(scope="module")
def r50_loaded(keras_resnet50_file):
    """Our ResNet-50 (stride in the 1x1 conv, frozen BN, freeze_at=2) with the file's weights."""
    _, path = keras_resnet50_file
    config = Config(backbone="resnet50", backbone_weights=path, norm="frozen_bn",
                    stride_in_1x1=True, freeze_at=2, pixel_mean=CAFFE_MEAN_RGB,
                    pixel_std=(1.0, 1.0, 1.0))
    return build_backbone(config)


@pytest.fixture(scope="module")
def r50_torchvision():
    """Random-init ResNet-50 with the stride in the 3x3 conv (torchvision's layout)."""
    keras.utils.set_random_seed(7)
    return build_backbone(Config(backbone="resnet50", stride_in_1x1=False, norm="frozen_bn",
                                 freeze_at=0))


def _submodel(model, *layer_names):
    return keras.Model(model.input, [model.get_layer(n).output for n in layer_names])


# -- norm --------------------------------------------------------------------------------------
def test_frozen_bn_is_not_trainable_and_matches_formula():
    rng = np.random.default_rng(0)
    c = 6
    layer = FrozenBatchNormalization(epsilon=1e-3)
    layer.build((None, 4, 4, c))
    gamma, beta = rng.uniform(0.5, 2, c), rng.normal(size=c)
    mean, var = rng.normal(size=c), rng.uniform(0.1, 3, c)
    layer.set_weights([gamma, beta, mean, var])
    assert layer.trainable_weights == []
    assert len(layer.non_trainable_weights) == 4
    x = rng.normal(size=(2, 4, 4, c)).astype(np.float32)
    expected = (x - mean) / np.sqrt(var + 1e-3) * gamma + beta
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5, atol=1e-5)
    # Same output in "training" mode: nothing is estimated from the batch.
    np.testing.assert_allclose(layer(x, training=True).numpy(), expected, rtol=1e-5, atol=1e-5)
    # Same numbers as a Keras BatchNormalization in inference mode holding these arrays.
    bn = keras.layers.BatchNormalization(epsilon=1e-3)
    bn.build((None, 4, 4, c))
    bn.set_weights([gamma, beta, mean, var])
    np.testing.assert_allclose(layer(x).numpy(), bn(x, training=False).numpy(),
                               rtol=1e-5, atol=1e-5)


def test_frozen_bn_config_round_trip_and_mixed_precision_dtype():
    layer = FrozenBatchNormalization(epsilon=2e-5, name="fbn")
    clone = FrozenBatchNormalization.from_config(layer.get_config())
    assert clone.epsilon == 2e-5 and clone.name == "fbn"
    mixed = FrozenBatchNormalization(dtype="mixed_float16")
    x = np.ones((1, 2, 2, 3), np.float16)
    y = mixed(x)
    assert y.dtype == tf.float16
    assert all(w.dtype == "float32" for w in mixed.weights)


def test_make_norm_kinds_and_errors():
    assert isinstance(make_norm("bn", "a"), keras.layers.BatchNormalization)
    assert make_norm("bn", "a").epsilon == 1e-5
    assert isinstance(make_norm("frozen_bn", "b"), FrozenBatchNormalization)
    gn = make_norm("gn", "c", channels=48)
    assert isinstance(gn, keras.layers.GroupNormalization) and gn.groups == 24
    assert group_count(256) == 32 and group_count(16) == 16 and group_count(40) == 20
    with pytest.raises(ValueError, match=r"norm='batchnorm'.*frozen_bn"):
        make_norm("batchnorm", "d")
    with pytest.raises(ValueError, match="channels"):
        make_norm("gn", "e")


# -- structure and shapes ----------------------------------------------------------------------
def test_resnet50_shapes_dynamic_input(r50_loaded):
    channels = backbone_channels(Config(backbone="resnet50"))
    assert channels == [256, 512, 1024, 2048]
    assert r50_loaded.input_shape == (None, None, None, 3)
    for h, w in ((64, 64), (96, 128)):
        out = r50_loaded(np.zeros((2, h, w, 3), np.float32), training=False)
        assert _shapes(out) == _expected_shapes(2, h, w, channels)


def test_resnet50_stride_placement(r50_loaded, r50_torchvision):
    for model, s1, s3 in ((r50_loaded, 2, 1), (r50_torchvision, 1, 2)):
        for stage in (3, 4, 5):
            assert model.get_layer(f"conv{stage}_block1_1_conv").strides == (s1, s1)
            assert model.get_layer(f"conv{stage}_block1_2_conv").strides == (s3, s3)
        # C2 keeps stride 4 from the stem; later blocks never stride.
        assert model.get_layer("conv2_block1_2_conv").strides == (1, 1)
        assert model.get_layer("conv3_block2_1_conv").strides == (1, 1)
    out = r50_torchvision(np.zeros((1, 96, 128, 3), np.float32))
    assert _shapes(out) == _expected_shapes(1, 96, 128, [256, 512, 1024, 2048])
    # ResNet-50: 23.5 M parameters without keras.applications' conv biases (+ BN statistics).
    assert r50_torchvision.count_params() == 23_561_152


def test_resnet101_block_count():
    # Count blocks from the (cheap) layer-name plan instead of building a second deep model.
    assert backbones.RESNET_BLOCKS["resnet101"] == (3, 4, 23, 3)
    assert backbone_channels(Config(backbone="resnet101")) == [256, 512, 1024, 2048]


def test_tiny_shapes_and_channels():
    config = Config(backbone="tiny", norm="bn", freeze_at=0, tiny_widths=(8, 16, 24, 32))
    model = build_backbone(config)
    assert backbone_channels(config) == [8, 16, 24, 32]
    for h, w in ((64, 64), (96, 128)):
        out = model(np.zeros((3, h, w, 3), np.float32))
        assert _shapes(out) == _expected_shapes(3, h, w, [8, 16, 24, 32])


def test_unknown_backbone_raises():
    fake = types.SimpleNamespace(backbone="vgg16", backbone_weights=None)
    with pytest.raises(ValueError, match=r"backbone='vgg16'.*resnet50"):
        build_backbone(fake)
    with pytest.raises(ValueError, match="backbone='vgg16'"):
        backbone_channels(fake)


# -- padding -----------------------------------------------------------------------------------
def test_stem_and_strided_convs_use_symmetric_padding(r50_torchvision):
    """The stem conv, the maxpool and a stride-2 3x3 conv equal tf.nn ops with torchvision's
    symmetric padding, and differ from TF's asymmetric 'SAME' padding."""
    model = r50_torchvision
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 64, 64, 3)).astype(np.float32)
    x[0, 0, 0, :] = 50.0  # a corner impulse: it reaches output (0, 0) only with top-left padding
    probe = _submodel(model, "conv1_conv", "conv1_relu", "pool1_pool",
                      "conv3_block1_1_relu", "conv3_block1_2_conv")
    conv1, relu1, pool1, c3_in, c3_out = [t.numpy() for t in probe(x, training=False)]

    kernel = model.get_layer("conv1_conv").kernel.numpy()
    ref = tf.nn.conv2d(x, kernel, 2, padding=[[0, 0], [3, 3], [3, 3], [0, 0]]).numpy()
    same = tf.nn.conv2d(x, kernel, 2, padding="SAME").numpy()
    assert conv1.shape == (1, 32, 32, 64)
    np.testing.assert_allclose(conv1, ref, rtol=1e-4, atol=1e-4)
    assert np.abs(conv1 - same).max() > 1.0

    # Maxpool with -inf padding (torchvision) equals ours with zero padding after the ReLU.
    padded = np.pad(relu1, [(0, 0), (1, 1), (1, 1), (0, 0)], constant_values=-np.inf)
    ref_pool = tf.nn.max_pool2d(padded, 3, 2, "VALID").numpy()
    np.testing.assert_array_equal(pool1, ref_pool)

    kernel = model.get_layer("conv3_block1_2_conv").kernel.numpy()
    ref = tf.nn.conv2d(c3_in, kernel, 2, padding=[[0, 0], [1, 1], [1, 1], [0, 0]]).numpy()
    same = tf.nn.conv2d(c3_in, kernel, 2, padding="SAME").numpy()
    np.testing.assert_allclose(c3_out, ref, rtol=1e-4, atol=1e-4)
    assert np.abs(c3_out - same).max() > 1e-2


# -- freezing ----------------------------------------------------------------------------------
def test_freeze_at_stem_and_stages():
    config = Config(backbone="tiny", norm="bn", freeze_at=3)
    model = build_backbone(config)
    for layer in model.layers:
        stage = layer_stage(layer.name)
        if not layer.weights:
            continue
        assert stage is not None, layer.name
        if stage <= 3:
            assert layer.trainable_weights == [], layer.name
        else:
            assert layer.trainable_weights, layer.name
    # Stem, C2 and C3 frozen; C4 / C5 conv kernels and BN gamma / beta trainable.
    assert model.get_layer("conv1_conv").trainable is False
    assert model.get_layer("conv3_block1_2_bn").trainable is False
    assert len(model.get_layer("conv4_block1_2_bn").trainable_weights) == 2

    all_trainable = build_backbone(config.replace(freeze_at=0))
    n_moving = 2 * sum(isinstance(l, keras.layers.BatchNormalization)
                       for l in all_trainable.layers)
    assert len(all_trainable.trainable_weights) == len(all_trainable.weights) - n_moving


def test_freeze_at_resnet(r50_loaded):
    # freeze_at=2: stem and C2 frozen, C3 trains (frozen BN never has trainable weights).
    assert r50_loaded.get_layer("conv1_conv").trainable_weights == []
    assert r50_loaded.get_layer("conv2_block3_3_conv").trainable_weights == []
    assert len(r50_loaded.get_layer("conv3_block1_1_conv").trainable_weights) == 1
    assert r50_loaded.get_layer("conv5_block3_2_bn").trainable_weights == []


# -- weights from keras.applications -----------------------------------------------------------
def test_weights_file_maps_by_name(keras_resnet50_file, r50_loaded):
    source, _ = keras_resnet50_file
    src_k = source.get_layer("conv1_conv").kernel.numpy()
    np.testing.assert_array_equal(r50_loaded.get_layer("conv1_conv").kernel.numpy(),
                                  src_k[:, :, ::-1, :])
    for name in ("conv4_block5_2_conv", "conv5_block1_0_conv"):
        np.testing.assert_array_equal(r50_loaded.get_layer(name).kernel.numpy(),
                                      source.get_layer(name).kernel.numpy())
    # The conv bias folds into the BN moving mean.
    ours = r50_loaded.get_layer("conv4_block5_2_bn").get_weights()
    src_bn = source.get_layer("conv4_block5_2_bn").get_weights()
    bias = source.get_layer("conv4_block5_2_conv").bias.numpy()
    np.testing.assert_allclose(ours[2], src_bn[2] - bias, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(ours[0], src_bn[0])


def test_weights_file_gives_same_features_rgb_vs_bgr(keras_resnet50_file, r50_loaded):
    source, _ = keras_resnet50_file
    rng = np.random.default_rng(5)
    rgb = rng.normal(0, 50, size=(2, 64, 64, 3)).astype(np.float32)
    expected = source(rgb[..., ::-1], training=False).numpy()  # keras.applications: BGR input
    got = r50_loaded(rgb, training=False)[-1].numpy()
    assert got.shape == expected.shape == (2, 2, 2, 2048)
    scale = max(1.0, float(np.abs(expected).max()))
    assert np.abs(expected).max() > 0.1  # a real signal, not all zeros after ReLUs
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * scale)
    # Without the channel flip the outputs would differ: the test can tell.
    wrong = source(rgb, training=False).numpy()
    assert np.abs(wrong - got).max() > 1e-2 * scale


def test_weights_errors(keras_resnet50_file, tmp_path):
    _, path = keras_resnet50_file
    with pytest.raises(ValueError, match="norm='gn'"):
        build_backbone(Config(backbone="resnet50", backbone_weights=path, norm="gn"))
    missing = str(tmp_path / "nope.weights.h5")
    with pytest.raises(ValueError, match=r"nope\.weights\.h5"):
        build_backbone(Config(backbone="resnet50", backbone_weights=missing))
    with pytest.raises(ValueError, match="tiny"):
        build_backbone(Config(backbone="tiny", backbone_weights=path))


def test_weights_with_stride_in_3x3_warns(keras_resnet50_file, caplog):
    _, path = keras_resnet50_file
    config = Config(backbone="resnet50", backbone_weights=path, stride_in_1x1=False,
                    pixel_mean=CAFFE_MEAN_RGB, pixel_std=(1.0, 1.0, 1.0))
    with caplog.at_level(logging.WARNING):
        backbones._check_weights_request(config)  # the check build_backbone runs first
    assert "stride_in_1x1=False" in caplog.text
