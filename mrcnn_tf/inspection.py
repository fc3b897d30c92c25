"""What the model sees, step by step, for one example (`mrcnn-tf inspect`).

`inspect_example(model, example, out_dir)` runs the model's own pieces on one example and
writes one PNG per view, the ones matterport's inspect_data / inspect_model notebooks made
popular, without a notebook:

    anchors.png           per FPN level P2..P6, the anchors of every ratio centred on the
                          image centre and on the ground-truth box centres (one tile per level,
                          captioned with level, stride and size), and a last tile with the
                          positive anchors of the RPN targets. Too few positives for an object
                          means its size or shape is not covered by `anchor_sizes` /
                          `anchor_ratios`.
    proposals.png         the top RPN proposals at inference, coloured by rank.
    rois.png              the RoIs sampled for the box, mask and keypoint heads in training:
                          positives with the box their regression targets decode to (it must
                          coincide with the matched ground-truth box) and a sample of the
                          negatives.
    mask_targets.png      each positive RoI's mask target (mask_size x mask_size) next to the
                          image crop of that RoI, captioned with the target class. Only for a
                          model with a mask head (config.mask_on).
    keypoint_targets.png  each positive RoI with its ground-truth keypoints and, for every
                          keypoint the loss trains on, the centre of its target heatmap bin
                          decoded back to image pixels (`keypoint_target_points`); labelled
                          keypoints outside the RoI, which get no target, are crossed out.
                          Only for a Keypoint R-CNN model (config.num_keypoints > 0).
    detections.png        the final detections (masks and poses as the model has them), as
                          `mrcnn-tf predict` draws them.
    ground_truth.png      the ground-truth boxes, masks and keypoints (with the skeleton).

Everything is drawn on the resized image the network sees (before normalization), cropped to
its valid region (no padding), and enlarged with nearest-neighbour to at least
`MIN_DISPLAY_SIDE` pixels on the shorter side so labels stay readable on small images. Each
view has a caption bar above the image.

The work is split so that each part can be used and tested on its own:
`inspection_data` runs the model (TF) and returns NumPy arrays in resized-image pixels,
`write_inspection_views` draws them (`view_names` says which views apply), and
`roi_target_boxes`, `keypoint_target_points`, `anchor_tiles`, `mask_target_tiles` and
`keypoint_target_tiles` expose the checks a reader of the pictures makes by eye.
"""

from __future__ import annotations

import colorsys
import math
import os
from typing import Any, Mapping, Sequence

import cv2
import numpy as np
import tensorflow as tf

from mrcnn_tf import visualize
from mrcnn_tf.data import pipeline
from mrcnn_tf.data.validation import validate_example
from mrcnn_tf.io_utils import write_png_atomic
from mrcnn_tf.modeling.mask_rcnn import RPN_STRIDES
from mrcnn_tf.ops import boxes as box_ops
from mrcnn_tf.ops import masks as mask_ops
from mrcnn_tf.ops import targets as target_ops

# Every view, in the order they are written; `view_names` picks those a model has.
VIEW_NAMES = ("anchors", "proposals", "rois", "mask_targets", "keypoint_targets", "detections",
              "ground_truth")
# Images whose shorter side is below this are enlarged (nearest-neighbour, integer factor).
MIN_DISPLAY_SIDE = 256
MAX_ZOOM = 8
# Anchor centres drawn per level tile: the image centre plus up to this many GT box centres.
MAX_GT_CENTRES = 5
MAX_NEGATIVES_DRAWN = 40
# Mask tiles: each mask cell becomes a square of at least MIN_MASK_PANEL / mask_size pixels.
MIN_MASK_PANEL = 96
ANCHOR_GRID_COLUMNS = 3
MASK_GRID_COLUMNS = 4
GRID_PADDING = 4
GRID_PAD_VALUE = 96  # grey between tiles: visibly not part of any image
PANEL_GAP = 2  # pixels between the crop and the mask target inside a mask tile
# Keypoint target tiles: a square crop around each positive RoI resampled to this side (wide
# enough for the one-segment legend lines of the view's caption).
KEYPOINT_PANEL_SIDE = 224
KEYPOINT_GRID_COLUMNS = 4
# Context around the RoI, its GT box and the GT's keypoints in a keypoint tile (fraction of the
# side), so that keypoints just outside the RoI still show.
KEYPOINT_TILE_MARGIN = 0.1
# Tiles beyond this many positives are left out (taken in turn from every instance), which
# keeps the PNG readable when a large image has a hundred positives.
MAX_KEYPOINT_TILES = 24
# GT dots larger than the target dots (and their outlines), so that a target on its keypoint
# shows as a magenta dot inside a white ring.
GT_KEYPOINT_RADIUS = 5
TARGET_KEYPOINT_RADIUS = 2

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.4
_LINE_HEIGHT = 15
_CAPTION_PAD = 3
_WHITE = (255, 255, 255)
_GREEN = (40, 220, 40)
_MAGENTA = (255, 0, 255)
_GREY = (170, 170, 170)
_RED = (255, 40, 40)
_CAPTION_BG = (24, 24, 24)


# -- running the model -----------------------------------------------------------------------

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
    (`pipeline.preprocess_for_inference`, `model.proposals(training=False)`, `model.detect`),
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
    inf_images, inf_shape, _ = pipeline.preprocess_for_inference(ex["image"][None], config)
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

    # Detections, with masks pasted at the resized size (as predict pastes them at the
    # original size); keypoints are already in the resized frame.
    n = int(detections["num_detections"][0])
    det_boxes = detections["boxes"][0, :n]
    out["det_boxes"] = det_boxes.numpy()
    out["det_class_ids"] = detections["class_ids"][0, :n].numpy().astype(np.int32)
    out["det_scores"] = detections["scores"][0, :n].numpy()
    if "masks" in detections:
        out["det_masks"] = (mask_ops.paste_masks(detections["masks"][0, :n], det_boxes, h, w,
                                                 config.paste_rule) >= 0.5).numpy()
    if "keypoints" in detections:
        out["det_keypoints"] = detections["keypoints"][0, :n].numpy().astype(np.float32)
    return out


# -- drawing helpers ---------------------------------------------------------------------------

def display_zoom(height: int, width: int) -> int:
    """Integer enlargement so the shorter side reaches MIN_DISPLAY_SIDE (1 if it already
    does; at most MAX_ZOOM)."""
    short = max(1, min(int(height), int(width)))
    if short >= MIN_DISPLAY_SIDE:
        return 1
    return int(min(MAX_ZOOM, math.ceil(MIN_DISPLAY_SIDE / short)))


def _enlarge(array: np.ndarray, zoom: int, first_axis: int = 0) -> np.ndarray:
    """Nearest-neighbour enlargement of axes first_axis, first_axis + 1 by `zoom`."""
    if zoom == 1:
        return array
    return np.repeat(np.repeat(array, zoom, axis=first_axis), zoom, axis=first_axis + 1)


def caption_height(num_lines: int) -> int:
    """Height in pixels of a caption bar with `num_lines` lines."""
    return 2 * _CAPTION_PAD + _LINE_HEIGHT * num_lines


def _text_width(text: str) -> int:
    return cv2.getTextSize(text, _FONT, _FONT_SCALE, 1)[0][0]


def _wrap(line: str, width: int) -> list[str]:
    """Splits a str line at spaces into lines that fit `width` pixels (a single word that
    does not fit stays whole and is cut at the edge)."""
    words = line.split(" ")
    lines = [words[0]]
    for word in words[1:]:
        candidate = f"{lines[-1]} {word}"
        if _text_width(candidate) + 2 * _CAPTION_PAD <= width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines


def _caption_bar(width: int, lines: Sequence, wrap: bool = False) -> np.ndarray:
    """A dark bar of text lines. A line is a str (white) or a list of (text, rgb) segments.

    With wrap, str lines too long for `width` are broken at spaces (single views); tiles of a
    grid keep one bar line per line so that every tile has the same height.
    """
    if wrap:
        lines = [part for line in lines
                 for part in (_wrap(line, width) if isinstance(line, str) else [line])]
    bar = np.empty([caption_height(len(lines)), width, 3], np.uint8)
    bar[:] = _CAPTION_BG
    for i, line in enumerate(lines):
        segments = [(line, _WHITE)] if isinstance(line, str) else line
        x = _CAPTION_PAD
        y = _CAPTION_PAD + (i + 1) * _LINE_HEIGHT - 4
        for text, color in segments:
            cv2.putText(bar, text, (x, y), _FONT, _FONT_SCALE,
                        tuple(int(c) for c in color), 1, cv2.LINE_AA)
            x += _text_width(text) + 6
    return bar


def _with_caption(image: np.ndarray, lines: Sequence, wrap: bool = False) -> np.ndarray:
    """The caption bar stacked above `image` (uint8 [H, W, 3] -> [H + bar, W, 3])."""
    return np.concatenate([_caption_bar(image.shape[1], lines, wrap), image], axis=0)


def _draw_outlined(image: np.ndarray, boxes: np.ndarray, colors, thickness: int = 1
                   ) -> np.ndarray:
    """Boxes with a dark outline under the colour, visible on any background."""
    dark = visualize.draw_boxes(image, boxes, colors=(0, 0, 0), thickness=thickness + 2)
    return visualize.draw_boxes(dark, boxes, colors=colors, thickness=thickness)


def _draw_outlined_poses(image: np.ndarray, keypoints: np.ndarray, skeleton: Sequence[int],
                         color, radius: int) -> np.ndarray:
    """Ground-truth style poses (third column v: 1 occluded, 2 visible, 0 not drawn) in one
    colour over a black outline, so that they read on any image colour (as `_draw_outlined`
    boxes do)."""
    dark = visualize.draw_keypoints(image, keypoints, skeleton, visibility=True,
                                    colors=(0, 0, 0), radius=radius + 1, thickness=3)
    return visualize.draw_keypoints(dark, keypoints, skeleton, visibility=True, colors=color,
                                    radius=radius, thickness=1)


def _clip_to(boxes: np.ndarray, height: float, width: float) -> np.ndarray:
    """Boxes clipped to the image, so anchors larger than it still show as its border."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, height)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, width)
    return boxes


def _blend(base: np.ndarray, drawn: np.ndarray, alpha: float) -> np.ndarray:
    """Shows `drawn` over `base` with opacity alpha (faint boxes)."""
    mixed = (1.0 - alpha) * base.astype(np.float32) + alpha * drawn.astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def _rank_colors(n: int) -> np.ndarray:
    """uint8 [n, 3] bright RGB from red (rank 0) through yellow, green and cyan to blue
    (rank n - 1): full-saturation hues, readable on the dark caption bar too."""
    hues = np.linspace(0.0, 0.6, n) if n > 1 else np.zeros([n])
    return np.asarray([[round(255 * c) for c in colorsys.hsv_to_rgb(hue, 1.0, 1.0)]
                       for hue in hues], np.uint8).reshape(-1, 3)


def _format_number(value: float) -> str:
    return f"{value:g}"


def _no_positives_tile(height: int, width: int, caption: Sequence) -> np.ndarray:
    """The one tile of a per-positive-RoI grid when there is no positive RoI: black, saying
    so, under `caption` (as many lines as the real tiles have, so shapes agree)."""
    panel = np.zeros([height, width, 3], np.uint8)
    cv2.putText(panel, "no positive RoIs", (_CAPTION_PAD, height // 2), _FONT, _FONT_SCALE,
                _WHITE, 1, cv2.LINE_AA)
    return _with_caption(panel, caption)


def _map_keypoints(keypoints, origin, scale: float) -> np.ndarray:
    """Keypoints [..., K, 3] moved into another frame: (y, x) -> ((y, x) - origin) * scale,
    the third column (v or score) kept. Continuous pixels scale as they are (pixel i of an
    image enlarged z times covers [i z, (i + 1) z)), so this serves zoom and crops alike."""
    mapped = np.array(keypoints, np.float32, copy=True)
    mapped[..., :2] = (mapped[..., :2] - np.asarray(origin, np.float32)) * scale
    return mapped


def _poses(data: Mapping[str, Any], key: str, zoom: int) -> np.ndarray | None:
    """data[key] keypoints [N, K, 3] scaled to the enlarged display, or None if absent."""
    return None if key not in data else _map_keypoints(data[key], (0.0, 0.0), zoom)


# -- views -----------------------------------------------------------------------------------

def anchor_tiles(data: Mapping[str, Any]) -> list[np.ndarray]:
    """The tiles of anchors.png: one per FPN level, then the positive anchors.

    Level tile l shows, at each of `data["anchor_centres"]`, the model's anchors of level l
    whose centre is nearest (one per ratio, coloured by ratio), clipped to the image.

    Returns:
      len(data["anchors"]) + 1 uint8 tiles, all [caption_height(3) + h * z, w * z, 3] with
      z = display_zoom(h, w).
    """
    image = data["image"]
    h, w = data["image_shape"]
    z = display_zoom(h, w)
    display = _enlarge(image, z)
    ratios = data["anchor_ratios"]
    ratio_colors = visualize.color_palette(len(ratios), seed=1)
    tiles = []
    for level, level_anchors in enumerate(data["anchors"]):
        stride = data["strides"][level]
        size = data["anchor_sizes"][level]
        centres = (level_anchors[:, 0:2] + level_anchors[:, 2:4]) / 2.0
        drawn = display
        clipped = False
        for cy, cx in data["anchor_centres"]:
            dist = np.abs(centres[:, 0] - cy) + np.abs(centres[:, 1] - cx)
            nearest = centres[np.argmin(dist)]
            # All ratios of that location (corner rounding may move centres < 1 px).
            index = np.nonzero(np.max(np.abs(centres - nearest), axis=1) < stride / 4.0)[0]
            boxes = level_anchors[index]
            clipped |= bool(np.any(boxes[:, :2] < 0) or np.any(boxes[:, 2] > h)
                            or np.any(boxes[:, 3] > w))
            colors = ratio_colors[index % len(ratios)]
            drawn = _draw_outlined(drawn, _clip_to(boxes, h, w) * z, colors)
            cv2.circle(drawn, (int(round(nearest[1] * z)), int(round(nearest[0] * z))), 3,
                       _WHITE, thickness=-1)
        rows, cols = data["feature_shapes"][level]
        legend = [("ratios h/w:", _WHITE)] + [
            (_format_number(r), c) for r, c in zip(ratios, ratio_colors)]
        tiles.append(_with_caption(drawn, [
            f"P{level + 2}  stride {stride}  size {_format_number(size)}"
            + ("  (clipped)" if clipped else ""),
            legend,
            f"{rows}x{cols} locations x {len(ratios)} = {len(level_anchors)} anchors",
        ]))
    positives = data["positive_anchors"]
    drawn = _draw_outlined(display, _clip_to(data["gt_boxes"], h, w) * z, _WHITE, thickness=2)
    drawn = _draw_outlined(drawn, _clip_to(positives, h, w) * z, _GREEN)
    tiles.append(_with_caption(drawn, [
        "positive anchors (RPN targets)",
        f"{len(positives)} positive of {data['num_anchors']} anchors",
        [("green: positive", _GREEN), ("white: ground truth", _WHITE)],
    ]))
    return tiles


def proposals_view(data: Mapping[str, Any], max_proposals: int = 50) -> np.ndarray:
    """The top `max_proposals` inference proposals, red (best) to blue, ranks 1-5 labelled."""
    h, w = data["image_shape"]
    z = display_zoom(h, w)
    proposals = data["proposals"][:max_proposals]
    colors = _rank_colors(len(proposals))
    labels = [f"#{i + 1}" if i < 5 else "" for i in range(len(proposals))]
    # Worst first, so the best proposals end up on top.
    order = np.arange(len(proposals))[::-1]
    drawn = visualize.draw_boxes(_enlarge(data["image"], z), proposals[order] * z,
                                 colors=colors[order] if len(order) else None,
                                 labels=[labels[i] for i in order])
    return _with_caption(drawn, [
        f"top {len(proposals)} of {len(data['proposals'])} RPN proposals (inference)",
        [("colour by rank:", _WHITE), ("best", tuple(_rank_colors(3)[0])),
         ("middle", tuple(_rank_colors(3)[1])), ("lowest", tuple(_rank_colors(3)[2]))],
    ], wrap=True)


def rois_view(data: Mapping[str, Any]) -> np.ndarray:
    """Sampled training RoIs: negatives faint grey, positives green, target boxes magenta."""
    h, w = data["image_shape"]
    z = display_zoom(h, w)
    display = _enlarge(data["image"], z)
    positive = data["roi_is_positive"]
    negatives = data["rois"][~positive]
    # An even spread of the (already randomly sampled) negatives.
    shown = negatives[np.linspace(0, len(negatives) - 1, min(len(negatives),
                                                              MAX_NEGATIVES_DRAWN)).astype(int)]
    drawn = _blend(display, visualize.draw_boxes(display, shown * z, colors=_GREY), 0.5)
    drawn = _draw_outlined(drawn, data["roi_target_boxes"][positive] * z, _MAGENTA,
                           thickness=2)
    drawn = visualize.draw_boxes(drawn, data["rois"][positive] * z, colors=_GREEN)
    return _with_caption(drawn, [
        f"sampled RoIs: {int(positive.sum())} positive, {len(negatives)} negative",
        [("green: positive", _GREEN), (f"grey: negative ({len(shown)} shown)", _GREY)],
        [("magenta: decoded box target (= GT)", _MAGENTA)],
    ], wrap=True)


def mask_panel_side(mask_size: int) -> int:
    """Side of the crop and mask panels of a mask tile: mask_size times an integer."""
    return int(mask_size) * max(1, math.ceil(MIN_MASK_PANEL / int(mask_size)))


def _crop_box(image: np.ndarray, box: np.ndarray, side: int) -> np.ndarray:
    """Bilinear side x side resampling of the image inside box (y1, x1, y2, x2) pixels.

    Output pixel u's centre u + 0.5 maps to x1 + (u + 0.5) * bw / side, like RoIAlign and the
    mask targets, so the crop lines up with the target cell for cell. Outside is black.
    """
    y1, x1, y2, x2 = (float(v) for v in box)
    sy = max(y2 - y1, 1e-6) / side
    sx = max(x2 - x1, 1e-6) / side
    matrix = np.asarray([[sx, 0.0, x1 + 0.5 * sx - 0.5], [0.0, sy, y1 + 0.5 * sy - 0.5]])
    return cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_LINEAR
                          | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)


def mask_target_tiles(data: Mapping[str, Any],
                      class_names: Sequence[str] | None) -> list[np.ndarray]:
    """The tiles of mask_targets.png, one per positive RoI (or one "none" tile).

    Tile layout: a one-line caption ("#i <class name>") of caption_height(1) rows, then the
    image crop of the RoI (side T = mask_panel_side(m), with the target's outline in green),
    PANEL_GAP grey columns, and the mask target as a heat map (T x T, each target cell a
    T/m-pixel square: blue 0, red 1). See `split_mask_tile`.

    Returns:
      uint8 tiles, all [caption_height(1) + T, 2 * T + PANEL_GAP, 3].
    """
    targets = data["mask_targets"]
    m = targets.shape[1] if targets.ndim == 3 and targets.shape[1] else 28
    side = mask_panel_side(m)
    width = 2 * side + PANEL_GAP
    tiles = []
    for i, (roi, target, class_id) in enumerate(
            zip(data["mask_rois"], targets, data["mask_classes"])):
        crop = _crop_box(data["image"], roi, side)
        big = _enlarge((target >= 0.5).astype(np.uint8), side // m)
        contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(crop, contours, -1, _GREEN, thickness=1)
        panel = np.full([side, width, 3], GRID_PAD_VALUE, np.uint8)
        panel[:, :side] = crop
        panel[:, side + PANEL_GAP:] = visualize.mask_to_color(target, size=(side, side))
        name = visualize.class_name(class_names, int(class_id))
        tiles.append(_with_caption(panel, [f"#{i + 1} {name}"]))
    if not tiles:
        tiles.append(_no_positives_tile(side, width, ["mask targets"]))
    return tiles


def split_mask_tile(tile: np.ndarray, mask_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(crop panel, mask panel), each uint8 [T, T, 3], of a `mask_target_tiles` tile."""
    side = mask_panel_side(mask_size)
    top = caption_height(1)
    return tile[top:top + side, :side], tile[top:top + side, side + PANEL_GAP:]


def keypoint_tile_region(roi: np.ndarray, gt_box: np.ndarray,
                         keypoints: np.ndarray) -> np.ndarray:
    """The square a keypoint tile shows: the RoI, its matched GT box and that GT's labelled
    keypoints, plus KEYPOINT_TILE_MARGIN context on every side, so that the keypoints outside
    the RoI (dropped from the targets) are in the picture too. Square keeps the aspect ratio
    of the crop.

    Args:
      roi, gt_box: float [4] (y1, x1, y2, x2) pixels.
      keypoints: float [K, 3] (y, x, v) of the GT; those with v > 0 count.

    Returns:
      float64 [4] (y1, x1, y2, x2) pixels, y2 - y1 == x2 - x1 > 0; a point (y, x) lies at
      ((y, x) - (y1, x1)) * KEYPOINT_PANEL_SIDE / (y2 - y1) in the tile's panel.
    """
    labelled = keypoints[keypoints[:, 2] > 0, :2]
    ys = np.concatenate([[roi[0], roi[2], gt_box[0], gt_box[2]], labelled[:, 0]])
    xs = np.concatenate([[roi[1], roi[3], gt_box[1], gt_box[3]], labelled[:, 1]])
    cy, cx = (ys.min() + ys.max()) / 2.0, (xs.min() + xs.max()) / 2.0
    half = max(ys.max() - ys.min(), xs.max() - xs.min(), 1.0) * (0.5 + KEYPOINT_TILE_MARGIN)
    return np.asarray([cy - half, cx - half, cy + half, cx + half], np.float64)


def _spread_over_instances(matched: np.ndarray, limit: int) -> np.ndarray:
    """Indices of at most `limit` of the entries, each instance's first entry before any
    instance's second (so every instance shows when there is room for one each), ordered by
    (instance, index) so that the tiles of one instance sit together."""
    matched = np.asarray(matched).reshape(-1)
    rank = np.zeros(matched.shape, np.int64)  # position of each entry within its instance
    for g in np.unique(matched):
        where = np.flatnonzero(matched == g)
        rank[where] = np.arange(len(where))
    chosen = np.lexsort((np.arange(len(matched)), matched, rank))[:max(0, int(limit))]
    return chosen[np.lexsort((chosen, matched[chosen]))]


def keypoint_target_tiles(data: Mapping[str, Any],
                          class_names: Sequence[str] | None) -> list[np.ndarray]:
    """The tiles of keypoint_targets.png, one per positive RoI (at most MAX_KEYPOINT_TILES,
    taken in turn from every instance), or one "none" tile.

    Tile layout: a two-line caption ("#i <class name>  GT g", then the counts of targets and of
    dropped keypoints) of caption_height(2) rows above a T x T crop (T = KEYPOINT_PANEL_SIDE)
    of the square `keypoint_tile_region` around the RoI, showing the RoI (green), the matched
    GT's keypoints and skeleton (white, radius GT_KEYPOINT_RADIUS; holed: occluded), the decoded
    targets (`keypoint_target_points`) with the skeleton (magenta, radius
    TARGET_KEYPOINT_RADIUS, drawn over the GT so a target on its keypoint shows as a magenta
    dot in a white ring) and a red cross on every labelled keypoint that has no target
    (outside the RoI). Poses have black outlines.

    Returns:
      uint8 tiles, all [caption_height(2) + T, T, 3].
    """
    side = KEYPOINT_PANEL_SIDE
    skeleton = data.get("keypoint_skeleton", ())
    matched = data["mask_matched_gt"]
    tiles = []
    for i in _spread_over_instances(matched, MAX_KEYPOINT_TILES):
        roi, g = data["mask_rois"][i], int(matched[i])
        gt = data["gt_keypoints"][g]
        region = keypoint_tile_region(roi, data["gt_boxes"][g], gt)
        scale = side / (region[2] - region[0])
        origin = region[:2]
        panel = visualize.draw_boxes(_crop_box(data["image"], region, side),
                                     (roi - np.tile(origin, 2))[None] * scale, colors=_GREEN)
        gt_tile = _map_keypoints(gt[None], origin, scale)
        panel = _draw_outlined_poses(panel, gt_tile, skeleton, _WHITE, GT_KEYPOINT_RADIUS)
        panel = _draw_outlined_poses(
            panel, _map_keypoints(data["keypoint_target_points"][i][None], origin, scale),
            skeleton, _MAGENTA, TARGET_KEYPOINT_RADIUS)
        dropped = (gt[:, 2] > 0) & ~data["keypoint_valid"][i]
        for y, x in gt_tile[0, dropped, :2]:
            # Continuous (y, x) -> OpenCV's pixel-centre coordinates, as draw_keypoints does;
            # black under red, like the outlined boxes.
            for color, width in (((0, 0, 0), 4), (_RED, 2)):
                cv2.drawMarker(panel, (int(round(x - 0.5)), int(round(y - 0.5))), color,
                               cv2.MARKER_TILTED_CROSS, 3 * GT_KEYPOINT_RADIUS, width,
                               cv2.LINE_AA)
        name = visualize.class_name(class_names, int(data["mask_classes"][i]))
        tiles.append(_with_caption(panel, [
            f"#{i + 1} {name}  GT {g + 1}",
            [(f"{int(data['keypoint_valid'][i].sum())} targets", _MAGENTA),
             (f"{int(dropped.sum())} dropped", _RED if dropped.any() else _GREY)],
        ]))
    if not tiles:
        tiles.append(_no_positives_tile(side, side, ["keypoint targets", ""]))
    return tiles


def keypoint_targets_view(data: Mapping[str, Any],
                          class_names: Sequence[str] | None) -> np.ndarray:
    """keypoint_targets.png: the `keypoint_target_tiles` grid under a caption with a legend."""
    tiles = keypoint_target_tiles(data, class_names)
    grid = visualize.make_grid(tiles, KEYPOINT_GRID_COLUMNS, GRID_PADDING, GRID_PAD_VALUE)
    positives = len(data["mask_rois"])
    size = data["keypoint_heatmap_size"]
    shown = f" ({min(positives, MAX_KEYPOINT_TILES)} shown)" if positives > MAX_KEYPOINT_TILES \
        else ""
    return _with_caption(grid, [
        f"keypoint targets of {positives} positive RoI{'' if positives == 1 else 's'}{shown}, "
        f"{size}x{size} heatmap bins",
        [("green: positive RoI", _GREEN)],
        [("white: GT (holed: occluded)", _WHITE)],
        [("magenta: target bin centre", _MAGENTA)],
        [("red x: outside RoI, dropped", _RED)],
    ], wrap=True)


def detections_view(data: Mapping[str, Any], class_names: Sequence[str] | None,
                    score_threshold: float = 0.5,
                    keypoint_threshold: float = visualize.KEYPOINT_SCORE_THRESHOLD
                    ) -> np.ndarray:
    """Final detections with score >= threshold, drawn as `predict` draws them: masks when the
    model has a mask head, poses (keypoints scoring >= keypoint_threshold, with the
    skeleton) when it has a keypoint head."""
    h, w = data["image_shape"]
    z = display_zoom(h, w)
    scores = data["det_scores"]
    masks = data.get("det_masks")
    drawn = visualize.draw_instances(
        _enlarge(data["image"], z), data["det_boxes"] * z, data["det_class_ids"], scores,
        None if masks is None else _enlarge(masks, z, first_axis=1), class_names,
        score_threshold=score_threshold, keypoints=_poses(data, "det_keypoints", z),
        skeleton=data.get("keypoint_skeleton", ()), keypoint_threshold=keypoint_threshold)
    poses = (f"; keypoints with score >= {_format_number(keypoint_threshold)}"
             if "det_keypoints" in data else "")
    return _with_caption(drawn, [
        f"detections: {int(np.sum(scores >= score_threshold))} with score >= "
        f"{_format_number(score_threshold)} (of {len(scores)}){poses}"], wrap=True)


def ground_truth_view(data: Mapping[str, Any],
                      class_names: Sequence[str] | None) -> np.ndarray:
    """Ground-truth masks, boxes (crowd regions included) and, when the model has keypoints,
    the labelled keypoints with the skeleton (holed dots: occluded)."""
    h, w = data["image_shape"]
    z = display_zoom(h, w)
    drawn = visualize.draw_instances(_enlarge(data["image"], z), data["gt_boxes"] * z,
                                     data["gt_classes"], None,
                                     _enlarge(data["gt_masks"], z, first_axis=1), class_names,
                                     keypoints=_poses(data, "gt_keypoints", z),
                                     skeleton=data.get("keypoint_skeleton", ()),
                                     keypoint_visibility=True)
    crowd = int(np.sum(data["gt_is_crowd"]))
    labelled = ("" if "gt_keypoints" not in data else
                f", {int(np.sum(data['gt_keypoints'][..., 2] > 0))} labelled keypoints")
    return _with_caption(drawn, [
        f"ground truth: {len(data['gt_boxes'])} instances"
        + (f" ({crowd} crowd)" if crowd else "") + labelled], wrap=True)


def view_names(data: Mapping[str, Any]) -> tuple[str, ...]:
    """The views `write_inspection_views` writes for `inspection_data` output `data`, in
    VIEW_NAMES order: mask_targets only for a model with a mask head, keypoint_targets only
    for one with a keypoint head; the others always."""
    # The two optional views are named after the data they draw.
    optional = ("mask_targets", "keypoint_targets")
    return tuple(name for name in VIEW_NAMES if name not in optional or name in data)


def write_inspection_views(data: Mapping[str, Any], out_dir: str | os.PathLike,
                           class_names: Sequence[str] | None, max_proposals: int = 50,
                           score_threshold: float = 0.5,
                           keypoint_threshold: float = visualize.KEYPOINT_SCORE_THRESHOLD
                           ) -> dict[str, str]:
    """Draws the views of `inspection_data` output and writes them as PNGs.

    Returns:
      {view name: path} for `view_names(data)`, files "<view name>.png" in out_dir.
    """
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    # Drawn on demand: a model without a mask (keypoint) head has no data for that view.
    makers = {
        "anchors": lambda: visualize.make_grid(anchor_tiles(data), ANCHOR_GRID_COLUMNS,
                                               GRID_PADDING, GRID_PAD_VALUE),
        "proposals": lambda: proposals_view(data, max_proposals),
        "rois": lambda: rois_view(data),
        "mask_targets": lambda: visualize.make_grid(mask_target_tiles(data, class_names),
                                                    MASK_GRID_COLUMNS, GRID_PADDING,
                                                    GRID_PAD_VALUE),
        "keypoint_targets": lambda: keypoint_targets_view(data, class_names),
        "detections": lambda: detections_view(data, class_names, score_threshold,
                                              keypoint_threshold),
        "ground_truth": lambda: ground_truth_view(data, class_names),
    }
    paths = {}
    for name in view_names(data):
        paths[name] = os.path.join(out_dir, f"{name}.png")
        write_png_atomic(paths[name], makers[name]())
    return paths


def inspect_example(model, example: Mapping[str, Any], out_dir: str | os.PathLike,
                    max_proposals: int = 50, score_threshold: float = 0.5,
                    keypoint_threshold: float = visualize.KEYPOINT_SCORE_THRESHOLD
                    ) -> dict[str, str]:
    """Writes the inspection views of one example (see the module docstring).

    Args:
      model: a `MaskRCNN`.
      example: one example dict (see `inspection_data`); boxes/masks may be empty.
      out_dir: folder for anchors.png, proposals.png, rois.png, mask_targets.png (with a mask
        head), keypoint_targets.png (with a keypoint head), detections.png and
        ground_truth.png (created if missing).
      max_proposals: proposals drawn in proposals.png (the best ones).
      score_threshold: detections drawn in detections.png score at least this.
      keypoint_threshold: predicted keypoints drawn in detections.png score at least this.

    Returns:
      {view name: PNG path}, for `view_names` of the model's data.

    Raises:
      ValueError: naming the field, for a malformed example; or max_proposals < 1.
    """
    if int(max_proposals) < 1:
        raise ValueError(f"inspect_example: max_proposals={max_proposals}: expected >= 1")
    data = inspection_data(model, example)
    return write_inspection_views(data, out_dir, model.label_map.class_names,
                                  int(max_proposals), score_threshold, keypoint_threshold)
