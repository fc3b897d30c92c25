"""MaskRCNN end to end: outputs, gradients, fit/evaluate, overfitting, saving, bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.config import get_config
from mrcnn_tf.data import pipeline, shapes
from mrcnn_tf.modeling.mask_rcnn import LOSS_NAMES, MaskRCNN

from helpers import box_iou, fit_until, two_image_training_set  # noqa: E402

SIZE = 64


def tiny_config(**overrides):
    values = dict(image_min_size=SIZE, image_max_size=SIZE, anchor_sizes=(8., 16., 32., 64., 128.),
                  fpn_channels=32, box_head_fc_dim=64, mask_head_conv_dim=32,
                  rpn_pre_nms_topk_train=200, rpn_post_nms_topk_train=64,
                  rpn_pre_nms_topk_test=200, rpn_post_nms_topk_test=64,
                  roi_batch_size_per_image=32, detections_per_image=10)
    values.update(overrides)
    return get_config("shapes_tiny", **values)


def batches(config, num_images, batch_size, augment=False, seed=3):
    raw = shapes.shapes_dataset(num_images, seed=seed, image_size=SIZE)
    return pipeline.make_training_dataset(raw, config, batch_size, shuffle=False,
                                          augment=augment, seed=seed)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return MaskRCNN(tiny_config(), class_names=list(shapes.CLASS_NAMES), category_ids=[0, 7, 3])




def test_inference_outputs_have_documented_shapes(model):
    images = tf.constant(np.random.default_rng(0).integers(0, 255, (2, 48, 80, 3)), tf.uint8)
    out = model(images)
    d = model.config.detections_per_image
    assert out["boxes"].shape == (2, d, 4)
    assert out["scores"].shape == (2, d)
    assert out["class_ids"].shape == (2, d) and out["class_ids"].dtype == tf.int32
    assert out["masks"].shape == (2, d, 28, 28)
    assert out["num_detections"].shape == (2,)
    boxes = out["boxes"].numpy()
    # Boxes are in original-image pixels: inside 48 x 80, not the resized 64-px frame.
    assert boxes[..., 0].min() >= 0 and boxes[..., 2].max() <= 48.0 + 1e-3
    assert boxes[..., 1].min() >= 0 and boxes[..., 3].max() <= 80.0 + 1e-3
    masks = out["masks"].numpy()
    assert masks.min() >= 0.0 and masks.max() <= 1.0
    for b in range(2):
        n = int(out["num_detections"][b])
        assert 0 <= n <= d
        assert np.all(out["class_ids"].numpy()[b, n:] == 0)
        assert np.all(out["class_ids"].numpy()[b, :n] >= 1)


def test_public_stages_have_the_documented_shapes_and_sample_by_seed(model):
    config = model.config
    batch = next(iter(batches(config, 2, 2)))
    images, image_shape = batch["images"], batch["image_shape"]
    features = model.features(images, image_shape)
    assert [tuple(f.shape) for f in features] == [
        (2, SIZE // s, SIZE // s, config.fpn_channels) for s in (4, 8, 16, 32, 64)]
    rpn = model.propose(features, tf.shape(images)[1:3], image_shape, training=True)
    a = config.num_anchors_per_location
    assert [tuple(o.shape) for o in rpn["objectness"]] == [
        (2, SIZE // s, SIZE // s, a) for s in (4, 8, 16, 32, 64)]
    assert sum(int(x.shape[0]) for x in rpn["anchors"]) == sum(
        (SIZE // s) ** 2 * a for s in (4, 8, 16, 32, 64))
    assert tuple(rpn["proposals"].shape) == (2, config.rpn_post_nms_topk_train, 4)
    assert tuple(rpn["valid"].shape) == (2, config.rpn_post_nms_topk_train)
    test = model.propose(features, tf.shape(images)[1:3], image_shape, training=False)
    assert tuple(test["proposals"].shape) == (2, config.rpn_post_nms_topk_test, 4)

    rpn_targets, rois = model.sample_targets(rpn["anchors"], rpn["proposals"], rpn["valid"],
                                             batch)
    assert tuple(rpn_targets["labels"].shape[:1]) == (2,)
    assert tuple(rois["rois"].shape) == (2, config.roi_batch_size_per_image, 4)
    assert {"class_targets", "box_targets", "mask_rois", "mask_targets"} <= set(rois)
    # Sampling is a function of each image's seed: the same call samples the same RoIs.
    again = model.sample_targets(rpn["anchors"], rpn["proposals"], rpn["valid"], batch)[1]
    np.testing.assert_array_equal(again["rois"].numpy(), rois["rois"].numpy())
    # detect() is these stages followed by the heads: call() is detect() on the resized batch.
    detections = model.detect(images, image_shape)
    assert tuple(detections["boxes"].shape) == (2, config.detections_per_image, 4)


def losses_and_gradients(model, batch):
    """compute_losses(training=True) and the gradient of every trainable variable, asserting
    that none is missing."""
    with tf.GradientTape() as tape:
        result = model.compute_losses(batch, training=True)
    grads = tape.gradient(result["loss"], model.trainable_variables)
    missing = [v.path for v, g in zip(model.trainable_variables, grads) if g is None]
    assert not missing, f"no gradient for {missing}"
    return result, grads


def test_every_trainable_weight_receives_a_gradient(model):
    batch = next(iter(batches(model.config, 4, 2)))
    result, grads = losses_and_gradients(model, batch)
    for v, g in zip(model.trainable_variables, grads):
        assert np.all(np.isfinite(g.numpy())), v.path
    nonzero = sum(float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)
    assert nonzero >= 0.9 * len(grads)
    for name in LOSS_NAMES + ("loss",):
        assert np.isfinite(float(result[name])) and float(result[name]) >= 0, name


def test_losses_are_finite_for_images_without_objects(model):
    batch = dict(next(iter(batches(model.config, 2, 2))))
    batch["gt_classes"] = tf.zeros_like(batch["gt_classes"])
    result = model.compute_losses(batch, training=True)
    for name in LOSS_NAMES + ("loss",):
        assert np.isfinite(float(result[name])), name
    # Nothing to regress or segment: those losses are exactly 0.
    assert float(result["box_loss"]) == 0.0
    assert float(result["mask_loss"]) == 0.0
    assert float(result["rpn_box_loss"]) == 0.0
    assert float(result["class_loss"]) > 0.0


def test_fit_and_evaluate_report_every_loss():
    keras.utils.set_random_seed(1)
    config = tiny_config()
    model = MaskRCNN(config)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, global_clipnorm=5.0))
    data = batches(config, 8, 2)
    history = model.fit(data, steps_per_epoch=3, epochs=1, verbose=0)
    for name in LOSS_NAMES + ("loss",):
        assert name in history.history and np.isfinite(history.history[name][0])
    logs = model.evaluate(data, steps=2, verbose=0, return_dict=True)
    assert set(LOSS_NAMES) <= set(logs)


def test_overfits_two_images():
    """Loss falls by >= 80% and the detections land on the ground truth (IoU > 0.8).

    Trained until that holds (checked every 50 steps from step 300, at most 800): how many
    steps it takes depends on the CPU's kernels; 500 sufficed on the machines measured."""
    keras.utils.set_random_seed(2)
    config = tiny_config(max_instances=4)
    examples, data = two_image_training_set(config, SIZE)
    model = MaskRCNN(config)
    # A step down of the learning rate near the end lets the last small object settle
    # (with a constant rate, about 1 run in 5 ended with one object misclassified).
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([350], [2e-3, 2e-4])
    model.compile(optimizer=keras.optimizers.Adam(schedule, global_clipnorm=10.0))
    first = model.evaluate(data, steps=1, verbose=0, return_dict=True)["loss"]

    def overfitted(model):
        last = model.evaluate(data, steps=1, verbose=0, return_dict=True)["loss"]
        if last > 0.2 * first:
            return False, f"loss {first:.3f} -> {last:.3f}"
        predictions = model.predict_images([ex["image"] for ex in examples])
        for example, prediction in zip(examples, predictions):
            for box, class_id in zip(example["boxes"], example["class_ids"]):
                matches = [box_iou(box, p) for p, c, s in zip(
                    prediction["boxes"], prediction["class_ids"], prediction["scores"])
                    if c == class_id and s >= 0.5]
                if not matches or max(matches) <= 0.8:
                    return False, (f"class {class_id} box {box} unmatched: predicted "
                                   f"{prediction['boxes']} {prediction['class_ids']} "
                                   f"{prediction['scores']}")
        return True, ""

    fit_until(model, data, overfitted, first_check=300, check_every=50, max_steps=800)


def saved_and_loaded(model, tmp_path):
    """`model` through a .keras file; asserts the loaded model gives the same outputs on a
    random image. Returns the loaded model."""
    images = tf.constant(np.random.default_rng(5).integers(0, 255, (1, SIZE, SIZE, 3)),
                         tf.uint8)
    before = model(images)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, MaskRCNN)
    assert loaded.config == model.config
    after = loaded(images)
    for key in ("boxes", "scores", "class_ids", "masks", "num_detections"):
        np.testing.assert_allclose(after[key].numpy(), before[key].numpy(), atol=1e-5)
    return loaded


def test_keras_file_round_trip_gives_identical_outputs(model, tmp_path):
    loaded = saved_and_loaded(model, tmp_path)
    assert loaded.class_names == model.class_names
    assert loaded.label_map == model.label_map


def test_predict_images_returns_full_image_masks(model):
    images = [np.zeros((40, 70, 3), np.uint8), np.full((64, 64), 128, np.uint8)]
    results = model.predict_images(images)
    assert len(results) == 2
    assert results[0]["masks"].shape[1:] == (40, 70)
    assert results[1]["masks"].shape[1:] == (64, 64)
    assert results[0]["masks"].dtype == bool
    # The dataset's own labels ride along with the contiguous class ids.
    ids = dict(zip(range(1, 4), [0, 7, 3]))
    names = dict(zip(range(1, 4), shapes.CLASS_NAMES))
    assert sum(len(r["class_ids"]) for r in results) > 0  # an untrained model still answers
    for result in results:
        assert len(result["category_ids"]) == len(result["class_ids"])
        for c, d, name in zip(result["class_ids"], result["category_ids"],
                              result["class_names"]):
            assert d == ids[int(c)] and name == names[int(c)]


@pytest.mark.parametrize("images, message", [
    ([], "non-empty"),
    ([np.zeros((8, 8, 5), np.uint8)], r"\[H, W, 3\]"),
    ([np.zeros((2, 8, 8, 3), np.uint8)], r"\[H, W, 3\]"),
    ([np.zeros((0, 8, 3), np.uint8)], "empty"),
    ([np.zeros((8, 8, 3), np.float32)], "uint8"),
])
def test_predict_images_rejects_bad_images(model, images, message):
    with pytest.raises(ValueError, match=message):
        model.predict_images(images)


def test_training_batch_without_masks_names_the_missing_key(model):
    batch = dict(next(iter(batches(model.config, 2, 2))))
    del batch["gt_masks"]
    with pytest.raises(ValueError, match="gt_masks"):
        model.compute_losses(batch)


def test_class_names_must_match_the_class_count():
    with pytest.raises(ValueError, match="num_classes"):
        MaskRCNN(tiny_config(), class_names=["a", "b"])


@pytest.mark.parametrize("shape, message", [
    ((64, 64, 3), r"\[B, H, W, 3\]"),
    ((1, 64, 64, 4), r"\[B, H, W, 3\]"),
    ((0, 64, 64, 3), "empty"),
])
def test_call_rejects_bad_batches_before_the_graph_runs(model, shape, message):
    with pytest.raises(ValueError, match=message):
        model(tf.zeros(shape, tf.uint8))


def test_training_with_mini_masks_and_scale_jitter():
    keras.utils.set_random_seed(4)
    config = tiny_config(mini_mask_size=28, train_min_sizes=(48, 64))
    model = MaskRCNN(config)
    data = batches(config, 4, 2, augment=True)
    batch = next(iter(data))
    assert batch["gt_masks"].shape[-2:] == (28, 28)
    result = model.compute_losses(batch, training=True)
    for name in LOSS_NAMES + ("loss",):
        assert np.isfinite(float(result[name])), name
    assert float(result["mask_loss"]) > 0.0


HEAD_VARIANTS = {
    # torchvision v2's layout: BN after every FPN conv, 2-conv RPN head, conv + 1 fc box head
    # with BN, BN in the mask head.
    "bn_4conv1fc": dict(fpn_norm="bn", rpn_head_num_convs=2, box_head_num_convs=2,
                        box_head_conv_dim=16, box_head_num_fcs=1, box_head_norm="bn",
                        mask_head_norm="bn"),
    # Detectron2's GN recipe, here with a conv-only box head (no fc: the predictors read the
    # flattened conv features).
    "gn_conv_only": dict(fpn_norm="gn", box_head_num_convs=1, box_head_conv_dim=16,
                         box_head_num_fcs=0, box_head_norm="gn", mask_head_norm="gn"),
}


def test_default_heads_keep_their_weight_names():
    """Models saved before the head options existed load by these names."""
    model = MaskRCNN(tiny_config())
    model.build()
    paths = {w.path.split("/", 1)[1] for w in model.weights}
    for path in ("rpn_head/conv/kernel", "rpn_head/conv/bias", "box_head/fc1/kernel",
                 "box_head/fc2/kernel", "mask_head/conv1/bias", "fpn/fpn_lateral2/bias"):
        assert path in paths, path
    assert not any("_norm/" in p for p in paths if p.startswith(("fpn/", "box_head/",
                                                                  "mask_head/")))


@pytest.mark.parametrize("variant", sorted(HEAD_VARIANTS))
def test_head_variants_train_and_survive_a_keras_file(variant, tmp_path):
    options = HEAD_VARIANTS[variant]
    keras.utils.set_random_seed(0)
    model = MaskRCNN(tiny_config(**options))
    model.build()
    paths = {w.path.split("/", 1)[1] for w in model.weights}
    norm_param = "gamma"
    assert f"fpn/fpn_output3_norm/{norm_param}" in paths
    assert "fpn/fpn_output3/bias" not in paths  # the norm's shift replaces the bias
    assert ("rpn_head/conv2/kernel" in paths) == (options.get("rpn_head_num_convs", 1) == 2)
    assert "box_head/conv1/kernel" in paths and "box_head/conv1/bias" not in paths
    assert "box_head/conv1_norm/gamma" in paths and "mask_head/conv2_norm/gamma" in paths
    fcs = options["box_head_num_fcs"]
    assert ("box_head/fc1/kernel" in paths) == (fcs >= 1) and "box_head/fc2/kernel" not in paths
    # The class logits read the last fc, or the flattened convs when there is none.
    logits_fan_in = model.box_head.class_logits.kernel.shape[0]
    pool = model.config.box_pool_size
    assert logits_fan_in == (model.config.box_head_fc_dim if fcs else pool * pool * 16)

    result, _ = losses_and_gradients(model, next(iter(batches(model.config, 2, 2))))
    assert np.isfinite(float(result["loss"]))
    if options["box_head_norm"] == "bn":
        # Training-mode BatchNorm moved its statistics away from the initial 0 / 1.
        assert np.abs(model.box_head.conv1_norm.moving_mean.numpy()).max() > 0

    saved_and_loaded(model, tmp_path)


def test_mask_head_runs_on_real_detections_only_with_the_same_masks(model, monkeypatch):
    """The TensorFlow path trims the mask head's batch to max(num_detections) rows; the static
    path (static_shapes: TFLite, XLA) runs all D rows. Same masks either way."""
    images = tf.constant(np.random.default_rng(3).integers(0, 255, (2, SIZE, SIZE, 3)),
                         tf.uint8)
    # A score threshold that leaves a few detections per image (the untrained model scores
    # every box alike).
    scores = np.sort(model(images)["scores"].numpy().reshape(-1))[::-1]
    config = model.config.replace(score_threshold=float(scores[5]))
    trimming, static = (MaskRCNN(config.replace(static_shapes=static_shapes))
                        for static_shapes in (False, True))
    for copy in (trimming, static):
        copy.build()
        copy.set_weights(model.get_weights())
    rows = []
    original = trimming.mask_head.call
    monkeypatch.setattr(trimming.mask_head, "call",
                        lambda pooled, training=None: rows.append(pooled.shape[1]) or
                        original(pooled, training=training))
    trimmed = trimming(images)
    full = static(images)
    counts = trimmed["num_detections"].numpy()
    assert 0 < counts.max() < config.detections_per_image
    assert rows == [counts.max()]
    np.testing.assert_array_equal(counts, full["num_detections"].numpy())
    assert trimmed["masks"].shape == full["masks"].shape
    np.testing.assert_allclose(trimmed["masks"].numpy(), full["masks"].numpy(), atol=1e-5)


def test_saving_a_model_that_was_never_built_is_refused(tmp_path):
    """It holds no weights yet: the file would load with fresh random ones, silently."""
    fresh = MaskRCNN(tiny_config())
    for save, name in ((fresh.save, "model.keras"), (fresh.save_weights, "m.weights.h5")):
        with pytest.raises(ValueError, match="never built, so it holds no weights"):
            save(str(tmp_path / name))
    assert list(tmp_path.iterdir()) == []


def test_every_layer_class_of_the_package_is_registered_for_serialization():
    import importlib  # noqa: PLC0415
    import inspect  # noqa: PLC0415
    import pkgutil  # noqa: PLC0415

    import mrcnn_tf  # noqa: PLC0415
    found = []
    for info in pkgutil.walk_packages(mrcnn_tf.__path__, "mrcnn_tf."):
        if info.name.startswith(("mrcnn_tf.cli", "mrcnn_tf.importers")):
            continue  # entry points and torch-side code define no layers
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == info.name and issubclass(cls, keras.layers.Layer):
                found.append(cls)
    assert len(found) >= 11, found
    unregistered = [cls.__name__ for cls in found
                    if keras.saving.get_registered_object(
                        keras.saving.get_registered_name(cls)) is not cls]
    assert unregistered == []
