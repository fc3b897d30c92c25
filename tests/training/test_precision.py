"""Mixed precision (mixed_bfloat16 / mixed_float16) and XLA (jit_compile) for MaskRCNN.

Every test leaves the Keras global policy at float32 (autouse fixture): the rest of the suite
runs in the same process and assumes it.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from benchmarks import agreement
from mrcnn_tf.data import pipeline, shapes
from mrcnn_tf.modeling import losses
from mrcnn_tf.modeling.mask_rcnn import LOSS_NAMES, MaskRCNN
from mrcnn_tf.training import device_plan, precision

from helpers import (fit_until, skip_unless_cpu_runs,  # noqa: E402
                     small_model_config, two_image_training_set)

SIZE = 64


def tiny_config(**overrides):
    values = dict(anchor_sizes=(8., 16., 32., 64., 128.), rpn_pre_nms_topk_train=200,
                  rpn_post_nms_topk_train=64, rpn_pre_nms_topk_test=200,
                  rpn_post_nms_topk_test=64, roi_batch_size_per_image=32, max_instances=4)
    values.update(overrides)
    return small_model_config(SIZE, **values)


def batches(config, num_images=8, batch_size=2, seed=3):
    raw = shapes.shapes_dataset(num_images, seed=seed, image_size=SIZE)
    return pipeline.make_training_dataset(raw, config, batch_size, shuffle=False,
                                          augment=False, seed=seed)


@pytest.fixture(autouse=True)
def float32_policy():
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


CONFIDENT = 0.9


def _top_scores_confident(images):
    def check(model):
        top = model(images)["scores"].numpy()[:, 0]
        return bool(np.all(top > CONFIDENT)), f"top score per image {top}"
    return check


@pytest.fixture(scope="module")
def trained():
    """A float32 model fitted on two images until each image's top detection is confident
    (score > 0.9), so comparisons between precisions / compilers do not hinge on near-ties in
    the scores of an untrained model. Trained to that criterion, not for a fixed step count:
    the step at which it gets there depends on the CPU's kernels (at 60 steps one AMX Xeon's
    top score was still 0.83)."""
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(2)
    config = tiny_config(static_shapes=True)
    examples, data = two_image_training_set(config, SIZE)
    model = MaskRCNN(config)
    model.compile(optimizer=keras.optimizers.Adam(3e-3, global_clipnorm=10.0),
                  jit_compile=False)
    images = tf.constant(np.stack([ex["image"] for ex in examples]))
    fit_until(model, data, _top_scores_confident(images), first_check=40, check_every=20,
              max_steps=300)
    return model, images, next(iter(data))


def assert_finite_losses(history):
    for name in LOSS_NAMES + ("loss",):
        values = history[name]
        assert len(values) == 1 and np.isfinite(values[0]), (name, values)


def _determinism_enabled():
    """Whether tf.config.experimental.enable_op_determinism() ran in this process (Keras then
    turns jit_compile off)."""
    from tensorflow.python.framework import config as tf_config  # noqa: PLC0415
    return tf_config.is_op_determinism_enabled()


# -- the flag helpers -------------------------------------------------------------------------
def test_set_precision_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"--mixed_precision='fp16'.*mixed_float16"):
        precision.set_precision("fp16")
    with pytest.raises(ValueError, match="--mixed_precision"):
        precision.wrap_optimizer(keras.optimizers.SGD(), "bfloat16")
    assert keras.mixed_precision.global_policy().name == "float32"


def test_inference_precision_flag_maps_to_a_policy(monkeypatch):
    """--precision: float32 and bfloat16 map to their policies; auto picks bfloat16 only for
    a ResNet model on a CPU with bfloat16 instructions, no oneDNN cap and no GPU; anything
    else is refused by name."""
    assert precision.inference_policy("float32") == "float32"
    assert precision.inference_policy("bfloat16") == "mixed_bfloat16"
    with pytest.raises(ValueError, match=r"--precision='fp16'.*'bfloat16', 'auto'"):
        precision.inference_policy("fp16")
    for name in precision.cpu_support.ISA_CAP_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(precision.tf.config, "list_physical_devices", lambda kind: [])
    monkeypatch.setattr(precision.cpu_support, "has_bf16_instructions", lambda: True)
    assert precision.inference_policy("auto") == "mixed_bfloat16"
    assert precision.inference_policy("auto", tiny_config()) == "float32"  # gains < casts
    assert precision.inference_policy("auto", tiny_config(backbone="resnet50")) == (
        "mixed_bfloat16")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")  # bf16 converted in software
    assert precision.inference_policy("auto") == "float32"
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setattr(precision.cpu_support, "has_bf16_instructions", lambda: False)
    assert precision.inference_policy("auto") == "float32"


def test_bf16_instructions_are_read_from_the_cpu_flags():
    has = precision.cpu_support.has_bf16_instructions
    assert has({"avx2", "amx_bf16"}) and has({"avx512_bf16"})
    assert not has({"avx2", "avx512f", "avx512_vnni"}) and not has(set())


def test_with_policy_rebuilds_with_the_same_weights(trained):
    """with_policy gives the model itself in its own policy, and otherwise a new model
    computing in the other policy with equal weights, leaving the global policy as it was."""
    skip_unless_cpu_runs("mixed_bfloat16")
    model, _, _ = trained
    assert precision.with_policy(model, "float32") is model
    bf16 = precision.with_policy(model, "mixed_bfloat16")
    assert bf16 is not model and precision.compute_policy(bf16) == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"
    assert type(bf16) is type(model) and bf16.config == model.config
    for ours, theirs in zip(bf16.weights, model.weights, strict=True):
        assert ours.path == theirs.path and ours.dtype == "float32"
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_set_precision_sets_the_global_policy():
    skip_unless_cpu_runs("mixed_bfloat16")
    policy = precision.set_precision("mixed_bfloat16")
    assert policy.compute_dtype == "bfloat16" and policy.variable_dtype == "float32"
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert precision.set_precision("float32").name == "float32"


def test_wrap_optimizer_scales_losses_for_float16_only_and_never_twice():
    sgd = keras.optimizers.SGD(0.01)
    assert precision.wrap_optimizer(sgd, "float32") is sgd
    assert precision.wrap_optimizer(sgd, "mixed_bfloat16") is sgd  # bf16 has fp32's range
    wrapped = precision.wrap_optimizer(sgd, "mixed_float16")
    assert isinstance(wrapped, keras.optimizers.LossScaleOptimizer)
    assert wrapped.inner_optimizer is sgd
    assert precision.wrap_optimizer(wrapped, "mixed_float16") is wrapped


def jit_config(config):
    """The config the device plan gives a --jit_compile run on this CPU."""
    return device_plan.decide("default", "CPU", deterministic=False, jit_compile=True,
                              precision="float32", config=config).model_config(config)


def test_jit_plan_uses_the_gather_roi_align():
    config = tiny_config()
    assert not config.static_shapes
    jit = jit_config(config)
    assert jit.static_shapes
    assert jit.batch_padding == "buckets"  # few shapes: XLA compiles once per shape
    assert jit.replace(static_shapes=False, batch_padding=config.batch_padding) == config
    assert jit_config(jit) == jit


def test_jit_compile_needs_the_builtin_roi_align():
    # crop_and_resize has no XLA kernel: Keras falls back (with a warning) rather than failing
    # in the first step, and "auto" would not pick XLA on a GPU.
    model = MaskRCNN(tiny_config())
    with pytest.warns(UserWarning, match="jit_compile"):
        model.compile(optimizer="sgd", jit_compile=True)
    assert model.jit_compile is False
    model = MaskRCNN(jit_config(tiny_config()))
    model.compile(optimizer="sgd", jit_compile=True)
    assert model.jit_compile is True or _determinism_enabled()


# -- (a) mixed_bfloat16 -------------------------------------------------------------------------
def test_mixed_bfloat16_computes_convs_in_bfloat16_boxes_and_losses_in_float32():
    skip_unless_cpu_runs("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    config = tiny_config()
    precision.set_precision("mixed_bfloat16")
    model = MaskRCNN(config)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    assert not isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    data = batches(config)
    batch = next(iter(data))
    image_shape = batch["image_shape"]

    # Activations of the backbone, FPN and hidden head layers are bfloat16 ...
    c_features = model.backbone(model.normalize_images(batch["images"], image_shape))
    assert [c.dtype for c in c_features] == [tf.bfloat16] * 4
    features = model.features(batch["images"], image_shape)
    assert [p.dtype for p in features] == [tf.bfloat16] * 5
    # ... while the heads' outputs, anchors, proposals, RoIAlign and detections are float32.
    rpn = model.propose(features, tf.shape(batch["images"])[1:3], image_shape)
    objectness, deltas, anchors = rpn["objectness"], rpn["deltas"], rpn["anchors"]
    assert {t.dtype for t in objectness + deltas + anchors} == {tf.float32}
    proposals = rpn["proposals"]
    assert proposals.dtype == tf.float32
    # Even when handed bfloat16 RPN outputs directly, the proposal layer decodes in float32.
    proposals_bf16, _ = model.proposals([tf.cast(o, tf.bfloat16) for o in objectness],
                                        [tf.cast(d, tf.bfloat16) for d in deltas], anchors,
                                        image_shape)
    assert proposals_bf16.dtype == tf.float32
    pooled = model.box_pooler(features[:4], proposals)
    assert pooled.dtype == tf.float32
    class_logits, box_deltas = model.box_head(pooled)
    assert class_logits.dtype == tf.float32 and box_deltas.dtype == tf.float32
    assert model.box_head.fc1.compute_dtype == "bfloat16"
    detections = model.detect(batch["images"], image_shape)
    for key in ("boxes", "scores", "masks"):
        assert detections[key].dtype == tf.float32, key
    mask_pooled = model.mask_pooler(features[:4], detections["boxes"])
    assert mask_pooled.dtype == tf.float32
    assert model.mask_head(mask_pooled).dtype == tf.float32

    # Variables, the conv kernels included, stay float32; layers compute in bfloat16.
    conv = model.backbone.get_layer("conv1_conv")
    assert conv.compute_dtype == "bfloat16" and conv.kernel.dtype == "float32"
    assert {v.dtype for v in model.weights} == {"float32"}
    assert model.proposals.compute_dtype == "float32"
    assert model.detection_targets.compute_dtype == "float32"

    result = model.compute_losses(batch)
    assert {result[name].dtype for name in result} == {tf.float32}

    before = [w.numpy() for w in model.trainable_weights]
    history = model.fit(data, steps_per_epoch=3, epochs=1, verbose=0).history
    assert_finite_losses(history)
    after = model.trainable_weights
    assert all(np.all(np.isfinite(w.numpy())) for w in after)
    changed = sum(not np.array_equal(b, a.numpy()) for b, a in zip(before, after))
    assert changed >= 0.9 * len(before), (changed, len(before))


# -- (b) mixed_float16 ----------------------------------------------------------------------
def test_mixed_float16_trains_with_dynamic_loss_scaling():
    skip_unless_cpu_runs("mixed_float16")
    keras.utils.set_random_seed(0)
    config = tiny_config()
    precision.set_precision("mixed_float16")
    model = MaskRCNN(config)
    optimizer = precision.wrap_optimizer(keras.optimizers.SGD(0.01, momentum=0.9),
                                         "mixed_float16")
    model.compile(optimizer=optimizer)
    # compile() wraps a plain optimizer of a mixed_float16 model itself; it keeps ours as is.
    assert model.optimizer is optimizer
    assert not isinstance(model.optimizer.inner_optimizer, keras.optimizers.LossScaleOptimizer)
    data = batches(config)
    batch = next(iter(data))
    features = model.features(batch["images"], batch["image_shape"])
    objectness = model.propose(features, tf.shape(batch["images"])[1:3],
                               batch["image_shape"])["objectness"]
    assert features[0].dtype == tf.float16 and objectness[0].dtype == tf.float32

    history = model.fit(data, steps_per_epoch=2, epochs=1, verbose=0).history
    assert_finite_losses(history)
    assert all(np.all(np.isfinite(w.numpy())) for w in model.trainable_weights)
    scale = float(model.optimizer.dynamic_scale.numpy())
    assert np.isfinite(scale) and scale >= 1.0


def test_mixed_float16_skips_a_step_whose_gradients_overflow_and_lowers_the_scale():
    """Dynamic loss scaling: with a scale of 2^24 float16 gradients overflow, so the step
    changes no weight and halves the scale; later steps, at a lower scale, train."""
    skip_unless_cpu_runs("mixed_float16")
    keras.utils.set_random_seed(0)
    config = tiny_config()
    precision.set_precision("mixed_float16")
    model = MaskRCNN(config)
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.01),
                                                    initial_scale=2.0 ** 24)
    model.compile(optimizer=optimizer)
    precision.set_precision("float32")
    batch = next(iter(batches(config)))
    model.build()
    before = [w.numpy() for w in model.trainable_weights]
    model.train_on_batch(batch)
    assert float(optimizer.dynamic_scale.numpy()) == 2.0 ** 23
    assert all(np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))

    # Each overflowing step halves the scale and changes nothing; the first finite step keeps
    # the scale and trains.
    for _ in range(40):
        scale = float(optimizer.dynamic_scale.numpy())
        previous = [w.numpy() for w in model.trainable_weights]
        model.train_on_batch(batch)
        after = float(optimizer.dynamic_scale.numpy())
        unchanged = all(np.array_equal(p, w.numpy())
                        for p, w in zip(previous, model.trainable_weights))
        if after == scale:
            break
        assert after == scale / 2 and unchanged
    else:
        pytest.fail(f"the loss scale never came down to a finite step (now {after})")
    changed = sum(not np.array_equal(p, w.numpy())
                  for p, w in zip(previous, model.trainable_weights))
    assert changed >= 0.9 * len(previous), (changed, len(previous), scale)
    assert all(np.all(np.isfinite(w.numpy())) for w in model.trainable_weights)


# -- (c) XLA -------------------------------------------------------------------------------------
def _losses_for_fixed_targets(model, batch, rpn, targets):
    """The trainable part of MaskRCNN.compute_losses (backbone, FPN, RPN, RoIAlign, heads,
    losses) for targets sampled beforehand: XLA's stateless RNG draws other samples than
    TensorFlow's kernels from the same seeds, so sampling is kept out of the comparison."""
    config = model.config
    features = model.features(batch["images"], batch["image_shape"], training=True)
    objectness, deltas = model.rpn_head(features)
    batch_size = tf.shape(batch["images"])[0]
    flat_objectness = tf.concat([tf.reshape(o, [batch_size, -1]) for o in objectness], 1)
    flat_deltas = tf.concat([tf.reshape(d, [batch_size, -1, 4]) for d in deltas], 1)
    class_logits, box_deltas = model.box_head(model.box_pooler(features[:4], targets["rois"]))
    mask_logits = model.mask_head(model.mask_pooler(features[:4], targets["mask_rois"]))
    result = {
        "rpn_class_loss": losses.rpn_class_loss(flat_objectness, rpn["labels"],
                                                config.rpn_batch_size_per_image),
        "rpn_box_loss": losses.rpn_box_loss(flat_deltas, rpn["box_targets"], rpn["labels"],
                                            config.rpn_batch_size_per_image,
                                            config.rpn_smooth_l1_beta),
        "class_loss": losses.class_loss(class_logits, targets["class_targets"],
                                        targets["valid"]),
        "box_loss": losses.box_loss(box_deltas, targets["box_targets"],
                                    targets["class_targets"], targets["is_positive"],
                                    targets["valid"], config.box_smooth_l1_beta),
        "mask_loss": losses.mask_loss(mask_logits, targets["mask_targets"],
                                      targets["mask_classes"], targets["mask_valid"]),
    }
    result["loss"] = tf.add_n(list(result.values()))
    return result


def test_jit_compiled_losses_and_gradients_match_graph_mode(trained):
    model, _, batch = trained
    image_shape = batch["image_shape"]
    features = model.features(batch["images"], image_shape, training=True)
    train_rpn = model.propose(features, tf.shape(batch["images"])[1:3], image_shape,
                              training=True)
    # Sampled once, by the model's own stage (seeded by batch["sample_seed"]).
    rpn, targets = model.sample_targets(train_rpn["anchors"], train_rpn["proposals"],
                                        train_rpn["valid"], batch)
    variables = model.trainable_variables

    def step(batch, rpn, targets):
        with tf.GradientTape() as tape:
            result = _losses_for_fixed_targets(model, batch, rpn, targets)
        return result, tape.gradient(result["loss"], variables)

    graph, graph_grads = tf.function(step)(batch, rpn, targets)
    xla, xla_grads = tf.function(step, jit_compile=True)(batch, rpn, targets)
    # float32 with XLA's fusion and reduction order: measured differences are <= 3e-6
    # relative on the losses and <= 6e-6 of the largest entry of each gradient; 1e-4 / 1e-3
    # leave a wide margin while a wrong op (a shifted sample, a lost cast) is off by far more.
    for name in LOSS_NAMES + ("loss",):
        np.testing.assert_allclose(float(xla[name]), float(graph[name]), rtol=1e-4,
                                   atol=1e-6, err_msg=name)
    for v, g, x in zip(variables, graph_grads, xla_grads):
        g, x = g.numpy(), x.numpy()
        np.testing.assert_allclose(x, g, rtol=0, atol=1e-3 * max(np.abs(g).max(), 1e-6),
                                   err_msg=v.path)


def test_jit_compiled_inference_matches(trained):
    model, images, _ = trained
    expected = model(images)
    got = tf.function(lambda x: model(x), jit_compile=True)(images)
    assert np.array_equal(got["num_detections"].numpy(), expected["num_detections"].numpy())
    assert np.array_equal(got["class_ids"].numpy(), expected["class_ids"].numpy())
    # Same kept detections (confident, well separated scores): only float rounding differs.
    np.testing.assert_allclose(got["scores"].numpy(), expected["scores"].numpy(), atol=1e-4)
    np.testing.assert_allclose(got["boxes"].numpy(), expected["boxes"].numpy(), atol=1e-2)
    np.testing.assert_allclose(got["masks"].numpy(), expected["masks"].numpy(), atol=1e-3)


def test_jit_compiled_fit_runs_the_whole_train_step():
    keras.utils.set_random_seed(0)
    config = jit_config(tiny_config())
    model = MaskRCNN(config)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), jit_compile=True)
    assert model.jit_compile  # Keras turns it off (with a warning) when an op cannot compile
    history = model.fit(batches(config), steps_per_epoch=2, epochs=1, verbose=0).history
    assert model.jit_compile
    assert_finite_losses(history)


# -- (d) mixed_bfloat16 inference vs float32 ----------------------------------------------------
def _clear_detections(outputs, b, nms_threshold, min_score=0.5, tie_band=0.1):
    """Indices of image b's detections that float rounding cannot drop: scored >= min_score,
    and with no other such detection of their class whose overlap is within tie_band of the
    NMS threshold (where a rounding of the boxes could flip which of the two NMS keeps)."""
    n = int(outputs["num_detections"][b])
    kept = np.flatnonzero(outputs["scores"][b, :n].numpy() >= min_score)
    classes = outputs["class_ids"][b].numpy()[kept]
    boxes = outputs["boxes"][b].numpy()[kept]
    ious = agreement.box_iou(boxes, boxes)
    near_tie = ((np.abs(ious - nms_threshold) <= tie_band) & (classes[:, None] == classes[None])
                & ~np.eye(len(kept), dtype=bool))
    return [int(i) for i, tied in zip(kept, near_tie.any(axis=1)) if not tied]


def test_mixed_bfloat16_inference_matches_float32(trained):
    """Every clear detection of the float32 model is found by the same weights under
    mixed_bfloat16: same class, the same box (IoU > 0.9), score within 0.05, mask pixels that
    agree; matched by box, not by rank, so two confident objects may swap places."""
    skip_unless_cpu_runs("mixed_bfloat16")
    model, images, _ = trained
    expected = model(images)
    bf16 = precision.with_policy(model, "mixed_bfloat16")  # what --precision bfloat16 runs
    got = bf16(images)
    for key in ("boxes", "scores", "masks"):
        assert got[key].dtype == tf.float32
    for b in range(images.shape[0]):
        clear = _clear_detections(expected, b, model.config.detection_nms_threshold)
        # The fixture trained every image's top detection past CONFIDENT.
        assert clear, (b, expected["scores"][b].numpy())
        n = int(got["num_detections"][b])
        # benchmarks/agreement.py's matching: the same-class bf16 detection of highest IoU.
        index, ious = agreement.match_detections(
            expected["boxes"][b].numpy()[clear], expected["class_ids"][b].numpy()[clear],
            got["boxes"][b, :n].numpy(), got["class_ids"][b, :n].numpy())
        for i, j, iou in zip(clear, index, ious):
            assert j >= 0 and iou > agreement.MATCH_BOX_IOU, (b, i, j, iou)
            assert abs(float(got["scores"][b, j]) - float(expected["scores"][b, i])) < 0.05
            agree = np.mean((got["masks"][b, j].numpy() >= 0.5)
                            == (expected["masks"][b, i].numpy() >= 0.5))
            assert agree > 0.95, (b, i, agree)
