"""modeling.rebuild: the same weights in a model built again, and the inference copy whose
frozen BatchNorms are folded into the convs before them."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.modeling import rebuild
from mrcnn_tf.modeling.backbones import build_backbone
from mrcnn_tf.modeling.mask_rcnn import MaskRCNN
from mrcnn_tf.modeling.norm import FrozenBatchNormalization
from mrcnn_tf.training import precision

from helpers import skip_unless_cpu_runs, small_model_config  # noqa: E402

SIZE = 64


NORMS = (FrozenBatchNormalization, keras.layers.BatchNormalization)


@pytest.fixture(scope="module", params=["frozen_bn", "bn"])
def model(request):
    """A tiny-backbone model whose norms (frozen, or BatchNorm at inference) are far from
    identity, so that a wrong fold shows, and whose box head has a frozen norm too (which
    `folded` must leave alone)."""
    config = small_model_config(SIZE, norm=request.param, box_head_num_convs=1,
                                box_head_conv_dim=16, box_head_norm="frozen_bn")
    model = MaskRCNN(config, class_names=["a", "b", "c"])
    model.build()
    rng = np.random.default_rng(0)
    for layer in model.backbone.layers:
        if isinstance(layer, NORMS):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2.0, c), rng.normal(0, 0.5, c),
                               rng.normal(0, 0.5, c), rng.uniform(0.2, 3.0, c)])
    return model


def _images():
    return tf.constant(np.random.default_rng(1).integers(0, 256, (2, SIZE, SIZE, 3)),
                       tf.float32)


def test_folded_backbone_has_no_norms_and_the_same_outputs(model):
    copy = rebuild.folded(model)
    assert copy.config.norm == "none" and model.config.norm in ("frozen_bn", "bn")
    assert copy.class_names == model.class_names and copy.name == model.name
    assert not [l for l in copy.backbone.layers if isinstance(l, NORMS)]
    convs = [l for l in copy.backbone.layers if isinstance(l, keras.layers.Conv2D)]
    assert convs and all(l.use_bias for l in convs)
    norms = [l for l in model.backbone.layers if isinstance(l, NORMS)]
    # Each norm's 4 arrays go, each conv gains a bias.
    assert len(copy.weights) == len(model.weights) - 4 * len(norms) + len(convs)
    # The box head's frozen norm is not the backbone's: it stays.
    assert any("box_head" in w.path and w.path.endswith("moving_mean") for w in copy.weights)

    images, shape = _images(), tf.constant([[SIZE, SIZE]] * 2)
    for ours, theirs in zip(copy.features(images, shape), model.features(images, shape),
                            strict=True):
        scale = np.abs(theirs.numpy()).max()
        assert scale > 1e-3  # the features are not trivially zero
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-5 * scale)
    ours, theirs = copy(images), model(images)
    np.testing.assert_allclose(ours["scores"].numpy(), theirs["scores"].numpy(), atol=1e-5)
    np.testing.assert_allclose(ours["boxes"].numpy(), theirs["boxes"].numpy(), atol=1e-3)


def test_folded_kernel_and_bias_are_the_norm_applied_to_the_conv(model):
    copy = rebuild.folded(model)
    conv, norm = (model.backbone.get_layer(n) for n in ("conv1_conv", "conv1_bn"))
    scale = norm.gamma.numpy() / np.sqrt(norm.moving_variance.numpy() + norm.epsilon)
    folded = copy.backbone.get_layer("conv1_conv")
    np.testing.assert_allclose(folded.kernel.numpy(), conv.kernel.numpy() * scale, rtol=1e-6)
    np.testing.assert_allclose(folded.bias.numpy(),
                               norm.beta.numpy() - norm.moving_mean.numpy() * scale,
                               rtol=1e-5, atol=1e-6)


def test_folding_a_model_without_frozen_norms_is_a_plain_rebuild():
    model = MaskRCNN(small_model_config(SIZE, norm="gn"))
    model.build()
    copy = rebuild.folded(model)
    assert copy is not model and copy.config == model.config
    assert [w.path for w in copy.weights] == [w.path for w in model.weights]


def test_rebuilding_never_loads_the_backbone_weights_the_run_started_from(model):
    """A run trained from backbone_weights="imagenet" keeps that in its config; the rebuilt
    copy takes the model's weights, so it must not load (or download) those again. A path that
    does not exist would raise if the copy tried."""
    config = model.config.replace(backbone_weights="/no/such/imagenet.weights.h5")
    with pytest.raises(ValueError, match="backbone_weights="):
        build_backbone(config)  # what a copy that loaded them would run into
    copy = rebuild.rebuilt(model, config)
    assert copy.config.backbone_weights is None
    assert rebuild.folded(model, config).config.backbone_weights is None


def test_rebuilt_refuses_a_config_with_other_weights(model):
    with pytest.raises(RuntimeError, match="different weights"):
        rebuild.rebuilt(model, model.config.replace(fpn_channels=16))


def test_inference_model_folds_under_the_policy_and_restores_it(model):
    skip_unless_cpu_runs("mixed_bfloat16")
    copy = precision.inference_model(model, "mixed_bfloat16")
    assert precision.compute_policy(copy) == "mixed_bfloat16" and copy.config.norm == "none"
    assert keras.mixed_precision.global_policy().name == "float32"
    ours, theirs = copy(_images()), model(_images())
    assert ours["scores"].dtype == tf.float32
    # bfloat16 keeps 8 bits of mantissa: the scores agree to a few hundredths.
    assert np.abs(ours["scores"].numpy() - theirs["scores"].numpy()).max() < 0.05


def test_backbone_norm_none_builds_biased_convs_and_refuses_imagenet_weights(tmp_path):
    from mrcnn_tf.config import Config  # noqa: PLC0415
    backbone = build_backbone(Config(backbone="tiny", norm="none"))
    assert not [l for l in backbone.layers if l.name.endswith("_bn")]
    path = tmp_path / "resnet50.weights.h5"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="norm='none'"):
        build_backbone(Config(backbone="resnet50", backbone_weights=str(path), norm="none"))
