"""What the inspection views draw: the model's public stages run on one example, gathered as
NumPy in resized-image pixels (`inspection_data`), and the two decodings a reader of the
pictures checks by eye (`roi_target_boxes`, `keypoint_target_points`).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import tensorflow as tf

from mrcnn_tf import postprocess
from mrcnn_tf.data import pipeline
from mrcnn_tf.data.validation import validate_example
from mrcnn_tf.modeling.mask_rcnn import RPN_STRIDES
from mrcnn_tf.ops import boxes as box_ops
from mrcnn_tf.ops import masks as mask_ops
from mrcnn_tf.ops import resize
from mrcnn_tf.ops import targets as target_ops

# Anchor centres drawn per level tile: the image centre plus up to this many GT box centres.
MAX_GT_CENTRES = 5


def roi_target_boxes(rois, box_targets, box_coder_weights) -> np.ndarray:
    """The boxes that RoIs' regression targets decode to (the inverse of the target encoding).

    For a positive RoI this is, by construction, its matched ground-truth box: the view draws
    it so that a wrong encoding, wrong weights or a wrong match shows up as a box next to the
    object instead of on it.

    Args:
      rois: float [..., 4] (y1, x1, y2, x2) pixels.
      box_targets: float [..., 4] (dy, dx, dh, dw) encoded with `box_coder_weights`.
      box_coder_weights: (wy, wx, wh, ww), e.g. `config.box_coder_weights`.

    Returns:
      float32 [..., 4] (y1, x1, y2, x2) pixels. Meaningless for negatives (zero targets
      decode to the RoI itself).
    """
    rois = tf.convert_to_tensor(np.asarray(rois, np.float32))
    deltas = tf.convert_to_tensor(np.asarray(box_targets, np.float32))
    return box_ops.decode(deltas, rois, tuple(box_coder_weights)).numpy()


def keypoint_target_points(rois, indices, valid, heatmap_size: int) -> np.ndarray:
    """Keypoint training targets decoded back to image pixels: the centre of each target bin.

    `ops.keypoints.keypoint_targets` encodes a keypoint as the flat index y_bin * S + x_bin of
    the S x S heatmap bin of its RoI (y1, x1, y2, x2) it falls in; this returns that bin's
    centre,

        (y1 + (y_bin + 0.5) * (y2 - y1) / S,  x1 + (x_bin + 0.5) * (x2 - x1) / S),

    which lies within half a bin, ((y2 - y1) / 2S, (x2 - x1) / 2S), of the keypoint. A point
    away from its labelled keypoint means a wrong match, a wrong RoI or a wrong encoding.

    Args:
      rois: float [..., P, 4] (y1, x1, y2, x2) pixels, the RoIs the targets belong to.
      indices: int [..., P, K] flat heatmap indices in [0, S * S).
      valid: bool [..., P, K], the targets the loss trains on.
      heatmap_size: S (`config.keypoint_heatmap_size`).

    Returns:
      float32 [..., P, K, 3] (y, x, v) in pixels: v = 2 where valid and (0, 0, 0) elsewhere
      (`keypoint_spec`'s unlabelled keypoint), so `visualize.draw_keypoints(...,
      visibility=True)` draws exactly the targets.
    """
    size = int(heatmap_size)
    rois = np.asarray(rois, np.float32)[..., None, :]  # [..., P, 1, 4]: broadcasts over K
    indices = np.asarray(indices, np.int64)
    valid = np.asarray(valid, bool)
    y_bin, x_bin = np.divmod(indices, size)
    y = rois[..., 0] + (y_bin + 0.5) * (rois[..., 2] - rois[..., 0]) / size
    x = rois[..., 1] + (x_bin + 0.5) * (rois[..., 3] - rois[..., 1]) / size
    points = np.stack([y, x, np.full_like(y, 2.0)], axis=-1).astype(np.float32)
    return np.where(valid[..., None], points, np.float32(0.0))


def _to_numpy_example(example: Mapping[str, Any], num_classes: int,
                      num_keypoints: int) -> dict:
    example = dict(example)
    example.setdefault("image_id", 0)  # only used to key sampling seeds; not drawn
    for key, value in list(example.items()):
        if isinstance(value, tf.Tensor):
            example[key] = value.numpy()
    image_id = example.get("image_id")
    return validate_example(example, num_classes,
                            source=f"inspect example (image_id {image_id})",
                            num_keypoints=num_keypoints or None)


def inspection_data(model, example: Mapping[str, Any]) -> dict[str, Any]:
    """Runs the model's pieces on one example; everything the views draw, as NumPy.

    The example is preprocessed like a training example (`pipeline.preprocess_for_training`,
    no augmentation, batch of 1). Targets come from the training canvas with the inference
    batch-norm mode: RPN targets (`targets.rpn_targets`), training-mode proposals and
    `model.detection_targets`. Proposals and detections come from the inference input
    (`resize.preprocess_for_inference`, `model.proposals(training=False)`, `model.detect`),
    exactly what `predict` runs. Both inputs hold the same resized image at the same place, so
    all boxes below share one frame: resized-image pixels.

    Args:
      model: a `MaskRCNN`.
      example: dict with image uint8 [H, W, 3], boxes float [N, 4] (y1, x1, y2, x2) pixels,
        class_ids int [N] in 1..K, masks uint8 [N, H, W], optional is_crowd bool [N],
        keypoints float [N, K, 3] (y, x, v) and image_id (as `generate_shapes_example`,
        `generate_keypoint_example` or `CocoDataset` give). N may be 0.

    Returns:
      dict of NumPy values (h, w = resized size; G ground-truth instances after truncation to
      config.max_instances):
        "image" uint8 [h, w, 3]; "image_shape" (h, w); "scale" float32 [2] (resized/original);
        "gt_boxes" [G, 4], "gt_classes" int32 [G], "gt_is_crowd" bool [G],
        "gt_masks" bool [G, h, w];
        "anchors" list over P2..P6 of float32 [N_l, 4] (the model's anchors, training canvas);
        "feature_shapes" list of (H_l, W_l); "strides", "anchor_sizes", "anchor_ratios";
        "anchor_centres" float32 [C, 2] (cy, cx): the image centre, then GT box centres;
        "positive_anchors" float32 [Q, 4] (RPN targets' sampled positives), "num_anchors";
        "proposals" float32 [R, 4] valid inference proposals, best first;
        "rois" float32 [S, 4] sampled training RoIs (valid slots), "roi_is_positive" bool [S],
        "roi_classes" int32 [S], "roi_matched_gt" int32 [S], "roi_box_targets" [S, 4],
        "roi_target_boxes" [S, 4] (`roi_target_boxes` of them);
        "mask_rois" [P, 4], "mask_classes" int32 [P], "mask_matched_gt" int32 [P]: the P
        positive RoIs, which both the mask and the keypoint head train on;
        "det_boxes" [D, 4], "det_class_ids" int32 [D], "det_scores" [D];
        "keypoint_skeleton" (config.keypoint_skeleton, () without keypoints).
      With a mask head (config.mask_on) also:
        "mask_targets" float32 [P, m, m]; "det_masks" bool [D, h, w].
      With a keypoint head (config.num_keypoints = K > 0) also:
        "gt_keypoints" float32 [G, K, 3] (y, x, v); "keypoint_heatmap_size" S;
        "keypoint_targets" int32 [P, K] flat heatmap indices y_bin * S + x_bin,
        "keypoint_valid" bool [P, K], "keypoint_target_points" float32 [P, K, 3] (y, x, v)
        (`keypoint_target_points` of them); "det_keypoints" float32 [D, K, 3] (y, x, score).
    """
    config = model.config
    ex = _to_numpy_example(example, config.num_classes, config.num_keypoints)
    data = pipeline.preprocess_for_training(ex, config, augment=False)
    images = data["images"][None]
    image_shape = data["image_shape"][None]
    h, w = (int(v) for v in data["image_shape"].numpy())

    # Training canvas: what compute_losses sees (batch norm in inference mode, as in inspect
    # there is nothing to update), through the model's own stages.
    features = model.features(images, image_shape, training=False)
    train_rpn = model.propose(features, tf.shape(images)[1:3], image_shape, training=True)
    anchors = train_rpn["anchors"]
    # Sampling seeded by the image id: the same image shows the same samples every time.
    batch = dict({k: v[None] for k, v in data.items()},
                 sample_seed=tf.stack([tf.constant(0, tf.int64),
                                       tf.cast(data["image_id"], tf.int64)])[None])
    rpn, targets = model.sample_targets(anchors, train_rpn["proposals"], train_rpn["valid"],
                                        batch)

    # Inference input: padded to a multiple of size_divisibility rather than to the square
    # training canvas. When both are the same size the pixels are identical, so the pyramid
    # is reused.
    inf_images, inf_shape, _ = resize.preprocess_for_inference(ex["image"][None], config)
    if tuple(inf_shape[0].numpy()) != (h, w):  # both use the same resize rule
        raise AssertionError(f"inference resize {tuple(inf_shape[0].numpy())} != training "
                             f"resize {(h, w)}")
    inf_features = (features if inf_images.shape == images.shape else
                    model.features(inf_images, inf_shape, training=False))
    inf_rpn = model.propose(inf_features, tf.shape(inf_images)[1:3], inf_shape, training=False)
    proposals, proposal_valid = inf_rpn["proposals"], inf_rpn["valid"]
    detections = model.detect(inf_images, inf_shape, training=False)

    out: dict[str, Any] = {
        "image": np.clip(np.rint(data["images"][:h, :w].numpy()), 0, 255).astype(np.uint8),
        "image_shape": (h, w),
        "scale": data["scale"].numpy(),
    }

    # Ground truth (padding rows have class 0).
    classes = data["gt_classes"].numpy()
    g = int(np.sum(classes > 0))
    out["gt_boxes"] = data["gt_boxes"].numpy()[:g]
    out["gt_classes"] = classes[:g].astype(np.int32)
    out["gt_is_crowd"] = data["gt_is_crowd"].numpy()[:g]
    if config.mini_mask_size > 0:
        # Mini-masks live inside their boxes: paste them back like predicted masks.
        mini = tf.cast(data["gt_masks"][:g], tf.float32)
        out["gt_masks"] = (mask_ops.paste_masks(mini, data["gt_boxes"][:g], h, w)
                           >= 0.5).numpy()
    else:
        out["gt_masks"] = data["gt_masks"].numpy()[:g, :h, :w] != 0

    # Anchors and RPN targets.
    out["anchors"] = [a.numpy() for a in anchors]
    out["feature_shapes"] = [tuple(int(s) for s in f.shape[1:3]) for f in features]
    out["strides"] = tuple(RPN_STRIDES)
    out["anchor_sizes"] = tuple(config.anchor_sizes)
    out["anchor_ratios"] = tuple(config.anchor_ratios)
    centres = [(h / 2.0, w / 2.0)]
    for box in out["gt_boxes"][~out["gt_is_crowd"]][:MAX_GT_CENTRES]:
        centres.append(((box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0))
    out["anchor_centres"] = np.asarray(centres, np.float32)
    all_anchors = np.concatenate(out["anchors"], axis=0)
    out["num_anchors"] = int(all_anchors.shape[0])
    out["positive_anchors"] = all_anchors[rpn["labels"].numpy()[0] == target_ops.POSITIVE]

    # Proposals (NMS returns them best first).
    out["proposals"] = proposals.numpy()[0][proposal_valid.numpy()[0]]

    # Sampled RoIs and their targets.
    valid = targets["valid"].numpy()[0]
    out["rois"] = targets["rois"].numpy()[0][valid]
    out["roi_is_positive"] = targets["is_positive"].numpy()[0][valid]
    out["roi_classes"] = targets["class_targets"].numpy()[0][valid].astype(np.int32)
    out["roi_matched_gt"] = targets["matched_gt"].numpy()[0][valid].astype(np.int32)
    out["roi_box_targets"] = targets["box_targets"].numpy()[0][valid]
    out["roi_target_boxes"] = roi_target_boxes(out["rois"], out["roi_box_targets"],
                                               config.box_coder_weights)
    mask_valid = targets["mask_valid"].numpy()[0]
    p = mask_valid.shape[0]
    out["mask_rois"] = targets["mask_rois"].numpy()[0][mask_valid]
    out["mask_classes"] = targets["mask_classes"].numpy()[0][mask_valid].astype(np.int32)
    out["mask_matched_gt"] = targets["matched_gt"].numpy()[0][:p][mask_valid].astype(np.int32)
    if "mask_targets" in targets:
        out["mask_targets"] = targets["mask_targets"].numpy()[0][mask_valid].astype(np.float32)
    out["keypoint_skeleton"] = tuple(config.keypoint_skeleton)
    if "keypoint_targets" in targets:
        size = config.keypoint_heatmap_size
        out["gt_keypoints"] = data["gt_keypoints"].numpy()[:g]
        out["keypoint_heatmap_size"] = size
        out["keypoint_targets"] = targets["keypoint_targets"].numpy()[0][mask_valid]
        out["keypoint_valid"] = targets["keypoint_valid"].numpy()[0][mask_valid]
        out["keypoint_target_points"] = keypoint_target_points(
            out["mask_rois"], out["keypoint_targets"], out["keypoint_valid"], size)

    # Detections, finished as predict finishes them (mrcnn_tf.postprocess), at the resized
    # size instead of the original; all are kept (the views filter by score themselves).
    n = int(detections["num_detections"][0])
    rows = {key: detections[key][0, :n].numpy()
            for key in ("boxes", "scores", "class_ids", "masks", "keypoints") if key in detections}
    found = postprocess.finish_detections(rows, h, w, paste_rule=config.paste_rule)
    out["det_boxes"] = found["boxes"]
    out["det_class_ids"] = found["class_ids"]
    out["det_scores"] = found["scores"]
    for key in ("masks", "keypoints"):
        if key in found:
            out[f"det_{key}"] = found[key]
    return out
