"""mrcnn_tf.importers.torchvision_keypointrcnn (through torchvision_weights) against
torchvision's keypointrcnn_resnet50_fpn.

One randomly initialised torchvision Keypoint R-CNN (BatchNorm statistics and every bias
randomised too, as in test_torchvision_maskrcnn, whose helpers this module shares) is saved
with torch.save, read back with read_state_dict and converted once for the module. Parity is
checked stage by stage on the same normalized 512x640 input as for Mask R-CNN, each of our
stages fed torchvision's output of the stage before: backbone C2..C5, FPN P2..P6, RPN head,
RoIAlign + box head (2 classes), RoIAlign 14x14 + keypoint head (56x56 logits), the heatmap
decode; then `predict_images` end to end against the whole torchvision model.

The keypoint head costs 7.4 GFLOP per RoI (8 convs of 512 channels), so its checks run on 16
RoIs and the end-to-end check on 16 detections, at a smaller test scale than the preset's.
"""

import os
import types

import numpy as np
import pytest
import tensorflow as tf

from helpers import import_torch_or_skip  # noqa: E402
torch, torchvision = import_torch_or_skip("the torchvision Keypoint R-CNN importer tests",
                                          allow_module_level=True)

from importers.test_torchvision_maskrcnn import (  # noqa: E402
    HEIGHT, WIDTH, XY_TO_YX, _randomize, assert_close, nhwc, random_rois, torch_boxes)

from mrcnn_tf import keypoint_spec  # noqa: E402
from mrcnn_tf.config import get_config  # noqa: E402
from mrcnn_tf.importers import torch_checkpoint, torchvision_weights  # noqa: E402
from mrcnn_tf.importers import torchvision_keypointrcnn  # noqa: E402
from mrcnn_tf.layers.pyramid_roi_align import assign_levels  # noqa: E402
from mrcnn_tf.ops import keypoints as keypoint_ops  # noqa: E402

ARCH = "keypointrcnn_resnet50_fpn"
PRESET = "torchvision_keypointrcnn_r50_fpn"
# The stages agree to ~3e-6 of each tensor's scale on CPU float32.
RTOL = 2e-5
# Keypoint-head RoIs: every 4th of test_torchvision_maskrcnn's 64, the last (a large one) among
# them, so that all 4 levels are used.
KEYPOINT_ROIS = slice(3, None, 4)
# End to end: score threshold 0 (the random classifier scores ~0.5), few detections, and both
# models' shorter side 480 (a 240x320 image doubles to 480x640) instead of 800.
DETECTIONS = 16
TEST_MIN_SIZE, TEST_MAX_SIZE = 480, 800


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """torchvision's keypointrcnn_resnet50_fpn with random weights (seed 0) in eval mode, its
    state dict saved and converted (with the end-to-end test's inference settings; the stages
    do not depend on them), and the reference outputs of its backbone on one input."""
    torch.set_num_threads(2)
    torch.manual_seed(0)
    reference = torchvision.models.detection.keypointrcnn_resnet50_fpn(
        weights=None, weights_backbone=None).eval()
    # eps 0, as torchvision runs its COCO_V1 keypoint weights.
    _randomize(reference, bn_epsilon=0.0, class_logit_scale=1.0)
    path = tmp_path_factory.mktemp("torchvision") / f"{ARCH}.pth"
    torch.save(reference.state_dict(), path)
    state_dict = torch_checkpoint.read_state_dict(str(path))
    config = get_config(PRESET, score_threshold=0.0, detections_per_image=DETECTIONS,
                        image_min_size=TEST_MIN_SIZE, image_max_size=TEST_MAX_SIZE)
    model = torchvision_weights.convert(state_dict, ARCH, config=config)
    x = torch.randn(1, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        body = list(reference.backbone.body(x).values())
        pyramid = reference.backbone(x)
    return types.SimpleNamespace(reference=reference, model=model, path=str(path),
                                 state_dict=state_dict, x=x, body=body, pyramid=pyramid)


def _features(imported, levels=4):
    return [tf.constant(nhwc(p)) for p in list(imported.pyramid.values())[:levels]]


# -- labels and preset -----------------------------------------------------------------------
def test_person_label_map_and_keypoint_order_match_torchvision():
    meta = torchvision.models.detection.KeypointRCNN_ResNet50_FPN_Weights.COCO_V1.meta
    assert meta["categories"] == ["no person", "person"]
    assert tuple(meta["keypoint_names"]) == keypoint_spec.COCO_PERSON_KEYPOINT_NAMES
    label_map = torchvision_keypointrcnn.coco_person_label_map()
    assert label_map.dataset_ids == (1,) and label_map.name(1) == "person"
    assert torchvision_weights.ARCHITECTURES[ARCH].preset == PRESET


def test_preset_has_keypointrcnn_defaults(imported):
    """The preset reads what KeypointRCNN's constructor sets (beyond the Mask R-CNN v1
    settings the importer tests share)."""
    config, reference = get_config(PRESET), imported.reference
    heads, transform, rpn = reference.roi_heads, reference.transform, reference.rpn
    assert transform.min_size == config.train_min_sizes == (640, 672, 704, 736, 768, 800)
    assert (transform.min_size[-1], transform.max_size) == (config.image_min_size,
                                                            config.image_max_size)
    assert (heads.detections_per_img, heads.score_thresh, heads.nms_thresh) == (
        config.detections_per_image, config.score_threshold, config.detection_nms_threshold)
    assert rpn._pre_nms_top_n["testing"] == config.rpn_pre_nms_topk_test
    assert rpn._post_nms_top_n["testing"] == config.rpn_post_nms_topk_test
    pool = heads.keypoint_roi_pool
    assert pool.output_size == (config.keypoint_pool_size,) * 2 == (14, 14)
    assert pool.sampling_ratio == config.roi_sampling_ratio == 2
    convs = [m for m in heads.keypoint_head if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == config.keypoint_head_num_convs
    assert {c.out_channels for c in convs} == {config.keypoint_head_conv_dim}
    assert heads.keypoint_predictor.out_channels == config.num_keypoints == 17
    assert heads.box_predictor.cls_score.out_features == config.num_classes + 1 == 2
    assert not config.mask_on and config.keypoint_decode_rule == "torchvision"
    with pytest.raises(ValueError, match="keypoint_decode_rule='bicubic': expected one of"):
        config.replace(keypoint_decode_rule="bicubic")


# -- stage by stage --------------------------------------------------------------------------
def test_backbone_fpn_and_rpn_head(imported):
    model = imported.model
    for level, (a, b) in enumerate(zip(model.backbone(tf.constant(nhwc(imported.x))),
                                       imported.body), start=2):
        assert_close(f"backbone C{level}", a, nhwc(b), RTOL)
    pyramid = model.fpn([tf.constant(nhwc(c)) for c in imported.body])
    for level, (a, b) in enumerate(zip(pyramid, imported.pyramid.values()), start=2):
        assert_close(f"FPN P{level}", a, nhwc(b), RTOL)
    objectness, deltas = model.rpn_head(_features(imported, 5))
    with torch.no_grad():
        logits, regression = imported.reference.rpn.head(list(imported.pyramid.values()))
    for level in range(5):
        assert_close(f"RPN objectness P{level + 2}", objectness[level], nhwc(logits[level]),
                     RTOL)
        theirs = nhwc(regression[level])
        theirs = theirs.reshape(theirs.shape[:3] + (-1, 4))[..., XY_TO_YX]
        assert_close(f"RPN deltas P{level + 2}", np.reshape(deltas[level], theirs.shape),
                     theirs, RTOL)


def _keypoint_rois():
    boxes = random_rois(seed=2)[KEYPOINT_ROIS]
    assert set(assign_levels(tf.constant(boxes)).numpy().tolist()) == {2, 3, 4, 5}
    return boxes


def test_roi_heads_and_keypoint_decode_on_the_same_rois(imported):
    """On the same RoIs: RoIAlign 7x7 + box head (2 classes); RoIAlign 14x14 + keypoint head
    (8 convs, transposed conv, 2x bilinear); then our decode of torchvision's heatmaps against
    its keypointrcnn_inference."""
    from torchvision.models.detection.roi_heads import keypointrcnn_inference
    model, heads = imported.model, imported.reference.roi_heads
    boxes = _keypoint_rois()
    rois, features = [torch_boxes(boxes)], _features(imported)
    with torch.no_grad():
        box_pooled = heads.box_roi_pool(imported.pyramid, rois, [(HEIGHT, WIDTH)])
        class_logits, regression = heads.box_predictor(heads.box_head(box_pooled))
        pooled = heads.keypoint_roi_pool(imported.pyramid, rois, [(HEIGHT, WIDTH)])
        logits = heads.keypoint_predictor(heads.keypoint_head(pooled))  # [N, 17, 56, 56]
        (their_xy,), (their_scores,) = keypointrcnn_inference(logits, rois)

    for name, pooler, theirs in (("box RoIAlign 7x7", model.box_pooler, box_pooled),
                                 ("keypoint RoIAlign 14x14", model.keypoint_pooler, pooled)):
        assert_close(name, pooler(features, tf.constant(boxes[None]))[0], nhwc(theirs), RTOL)
    # Each head on torchvision's pooled features, so that its error is its own.
    ours_logits, ours_deltas = model.box_head(tf.constant(nhwc(box_pooled)[None]))
    assert_close("box head class logits (2)", ours_logits[0], class_logits.numpy(), RTOL)
    deltas = regression.numpy().reshape(len(boxes), 2, 4)[..., XY_TO_YX]
    assert_close("box head deltas", np.reshape(ours_deltas[0], deltas.shape), deltas, RTOL)
    heatmaps = model.keypoint_head(tf.constant(nhwc(pooled)[None]))[0]
    assert heatmaps.shape == (len(boxes), 56, 56, 17)
    assert_close("keypoint head logits 56x56", heatmaps, nhwc(logits), RTOL)

    decoded = keypoint_ops.heatmaps_to_keypoints_torchvision(nhwc(logits), boxes).numpy()
    their_yx = their_xy.numpy()[..., 1::-1]
    same = np.all(decoded[..., :2] == their_yx, axis=-1)
    error = np.abs(decoded[..., :2] - their_yx).max()
    score_error = np.abs(decoded[..., 2] - their_scores.numpy()).max()
    print(f"keypoint decode: {int(same.sum())} of {same.size} identical; max |position "
          f"error| {error:.3g} px, max |logit error| {score_error:.3g}")
    # Bit for bit on x86 PyTorch builds (see ops.keypoints.torch_bicubic_taps).
    assert same.mean() >= 0.99 and error <= 1.0 + 1e-3
    assert score_error <= 1e-5 * float(np.abs(their_scores.numpy()).max())


# -- end to end ------------------------------------------------------------------------------
def test_predict_images_matches_torchvision_end_to_end(imported):
    """Our predict_images on a uint8 240x320 image against torchvision's whole model (its own
    resize, normalization, padding, RPN, box post-processing, keypoint decode and rescaling to
    the image) on the image / 255, both at shorter side 480 with 16 detections. Keypoints are
    compared where the argmax picked the same pixel: a detection box a few 1e-3 px off shifts
    the RoIAlign samples, and two nearly equal pixels of a smooth resized map may swap."""
    from mrcnn_tf.data.shapes import generate_shapes_example
    image = generate_shapes_example(5, image_size=320, min_shapes=3, max_shapes=5)["image"]
    image = np.ascontiguousarray(image[40:280])  # 240 x 320
    ours = imported.model.predict_images([image])[0]

    reference = imported.reference
    heads, transform = reference.roi_heads, reference.transform
    settings = ((heads, "score_thresh", 0.0), (heads, "detections_per_img", DETECTIONS),
                (transform, "min_size", (TEST_MIN_SIZE,)), (transform, "max_size", TEST_MAX_SIZE))
    saved = [getattr(owner, name) for owner, name, _ in settings]
    for owner, name, value in settings:
        setattr(owner, name, value)
    try:
        with torch.no_grad():
            theirs = reference([torch.from_numpy(image).permute(2, 0, 1).float() / 255.0])[0]
    finally:
        for (owner, name, _), value in zip(settings, saved):
            setattr(owner, name, value)
    their_boxes = theirs["boxes"].numpy()[:, XY_TO_YX]
    their_scores = theirs["scores"].numpy()
    assert len(ours["boxes"]) == len(their_boxes) == DETECTIONS
    assert np.all(ours["class_ids"] == 1) and np.all(theirs["labels"].numpy() == 1)
    assert ours["category_ids"].tolist() == [1] * DETECTIONS
    assert ours["class_names"] == ["person"] * DETECTIONS and "masks" not in ours

    box_error = np.abs(ours["boxes"] - their_boxes).max(-1)
    score_error = np.abs(ours["scores"] - their_scores)
    same = (box_error <= 0.01) & (score_error <= 3e-5)
    print(f"predict_images: {int(same.sum())} of {DETECTIONS} detections equal in place (box "
          f"within 0.01 px, score within 3e-5); max box error {box_error.max():.3g} px, max "
          f"score error {score_error.max():.3g}")
    # A near tie may swap two places or change the last detection.
    assert int((~same).sum()) <= 2

    keypoints = ours["keypoints"][same]  # [n, 17, 3] (y, x, logit)
    their_keypoints = theirs["keypoints"].numpy()[same][..., 1::-1]  # (y, x)
    their_logits = theirs["keypoints_scores"].numpy()[same]
    position_error = np.abs(keypoints[..., :2] - their_keypoints).max(-1)
    agree = position_error <= 0.01
    logit_error = np.abs(keypoints[..., 2] - their_logits)
    print(f"keypoints: {int(agree.sum())} of {agree.size} at the same pixel (within 0.01 px: "
          f"max {position_error[agree].max():.3g} px); the others off by at most "
          f"{position_error.max():.3g} px; max |logit error| {logit_error[agree].max():.3g} "
          f"where they agree, logit scale {np.abs(their_logits).max():.3g}")
    assert agree.mean() >= 0.97
    # A swapped pixel is one pixel of the resized 480-side frame: 0.5 px of the image.
    assert position_error.max() <= 1.0
    assert logit_error[agree].max() <= 1e-4 * np.abs(their_logits).max()


# -- refusals --------------------------------------------------------------------------------
def test_convert_refuses_a_config_without_the_keypoint_head_or_with_masks(imported):
    for overrides, needle in ((dict(mask_on=True), "mask_on=True (the preset has False)"),
                              (dict(num_keypoints=0, keypoint_names=(), keypoint_skeleton=(),
                                    keypoint_oks_sigmas=()), "has a keypoint head"),
                              (dict(keypoint_head_num_convs=4), "keypoint_head_num_convs=4")):
        with pytest.raises(ValueError, match="does not describe torchvision's "
                                             "keypointrcnn_resnet50_fpn") as raised:
            torchvision_weights.convert(imported.state_dict, ARCH,
                                        config=get_config(PRESET, **overrides))
        assert needle in str(raised.value)


def test_convert_names_another_keypoint_count(imported):
    state_dict = dict(imported.state_dict)
    prefix = "roi_heads.keypoint_predictor.kps_score_lowres"
    state_dict[f"{prefix}.weight"] = np.zeros((512, 5, 4, 4), np.float32)
    state_dict[f"{prefix}.bias"] = np.zeros(5, np.float32)
    with pytest.raises(ValueError) as raised:
        torchvision_weights.convert(state_dict, ARCH, source="other.pth")
    message = str(raised.value)
    assert "other.pth" in message and "2 wrongly shaped" in message, message
    assert f"{prefix}.weight (512, 5, 4, 4) (expected (512, 17, 4, 4))" in message
    assert "the checkpoint has num_keypoints=5" in message and "keypoint_names" in message


# -- files and command line ------------------------------------------------------------------
def test_cli_imports_a_loadable_keypoint_model(imported, tmp_path, monkeypatch):
    import json

    import keras
    from absl import flags

    from mrcnn_tf.cli import common
    from mrcnn_tf.cli import import_weights as cli
    from mrcnn_tf.modeling import mask_rcnn  # noqa: F401 (registers MaskRCNN)
    out = tmp_path / "cli"
    monkeypatch.setattr(common, "POSITIONAL", [imported.path])
    flags.FLAGS.unparse_flags()
    try:
        flags.FLAGS(["mrcnn-tf", "--from=torchvision", f"--arch={ARCH}", f"--out={out}"])
        cli.main()
    finally:
        flags.FLAGS.unparse_flags()
    assert sorted(os.listdir(out)) == ["config.json", "label_map.json", "model.keras"]
    loaded = keras.models.load_model(str(out / "model.keras"))
    assert loaded.config.name == PRESET and loaded.config.keypoint_decode_rule == "torchvision"
    assert loaded.category_ids == [1] and loaded.class_names == ["person"]
    assert len(loaded.weights) == len(imported.model.weights)
    for ours, saved in zip(imported.model.weights, loaded.weights):
        assert ours.path.split("/", 1)[1] == saved.path.split("/", 1)[1]
        np.testing.assert_array_equal(ours.numpy(), saved.numpy(), err_msg=ours.path)
    with open(out / "config.json") as f:
        saved_config = json.load(f)
    assert saved_config["num_keypoints"] == 17 and saved_config["mask_on"] is False
    with open(out / "label_map.json") as f:
        assert [c["name"] for c in json.load(f)["categories"]] == ["person"]
