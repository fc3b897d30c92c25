"""The inspection views and writing them: anchors.png, proposals.png, rois.png,
detections.png and ground_truth.png here, mask_targets.png and keypoint_targets.png from
`target_tiles`; `view_names` says which a model's data has, `write_inspection_views` writes
them.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from mrcnn_tf import visualize
from mrcnn_tf.inspection.drawing import (GREEN, GREY, GRID_PAD_VALUE, GRID_PADDING, MAGENTA,
                                         WHITE, blend, clip_to, display_zoom, draw_outlined,
                                         enlarge, format_number, map_keypoints, rank_colors,
                                         with_caption)
from mrcnn_tf.inspection.target_tiles import (MASK_GRID_COLUMNS, keypoint_targets_view,
                                              mask_target_tiles)
from mrcnn_tf.io_utils import write_png_atomic

# Every view, in the order they are written; `view_names` picks those a model has.
VIEW_NAMES = ("anchors", "proposals", "rois", "mask_targets", "keypoint_targets", "detections",
              "ground_truth")
ANCHOR_GRID_COLUMNS = 3
MAX_NEGATIVES_DRAWN = 40


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
    display = enlarge(image, z)
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
            drawn = draw_outlined(drawn, clip_to(boxes, h, w) * z, colors)
            cv2.circle(drawn, (int(round(nearest[1] * z)), int(round(nearest[0] * z))), 3,
                       WHITE, thickness=-1)
        rows, cols = data["feature_shapes"][level]
        legend = [("ratios h/w:", WHITE)] + [
            (format_number(r), c) for r, c in zip(ratios, ratio_colors)]
        tiles.append(with_caption(drawn, [
            f"P{level + 2}  stride {stride}  size {format_number(size)}"
            + ("  (clipped)" if clipped else ""),
            legend,
            f"{rows}x{cols} locations x {len(ratios)} = {len(level_anchors)} anchors",
        ]))
    positives = data["positive_anchors"]
    drawn = draw_outlined(display, clip_to(data["gt_boxes"], h, w) * z, WHITE, thickness=2)
    drawn = draw_outlined(drawn, clip_to(positives, h, w) * z, GREEN)
    tiles.append(with_caption(drawn, [
        "positive anchors (RPN targets)",
        f"{len(positives)} positive of {data['num_anchors']} anchors",
        [("green: positive", GREEN), ("white: ground truth", WHITE)],
    ]))
    return tiles


def proposals_view(data: Mapping[str, Any], max_proposals: int = 50) -> np.ndarray:
    """The top `max_proposals` inference proposals, red (best) to blue, ranks 1-5 labelled."""
    h, w = data["image_shape"]
    z = display_zoom(h, w)
    proposals = data["proposals"][:max_proposals]
    colors = rank_colors(len(proposals))
    labels = [f"#{i + 1}" if i < 5 else "" for i in range(len(proposals))]
    # Worst first, so the best proposals end up on top.
    order = np.arange(len(proposals))[::-1]
    drawn = visualize.draw_boxes(enlarge(data["image"], z), proposals[order] * z,
                                 colors=colors[order] if len(order) else None,
                                 labels=[labels[i] for i in order])
    return with_caption(drawn, [
        f"top {len(proposals)} of {len(data['proposals'])} RPN proposals (inference)",
        [("colour by rank:", WHITE), ("best", tuple(rank_colors(3)[0])),
         ("middle", tuple(rank_colors(3)[1])), ("lowest", tuple(rank_colors(3)[2]))],
    ], wrap=True)


def rois_view(data: Mapping[str, Any]) -> np.ndarray:
    """Sampled training RoIs: negatives faint grey, positives green, target boxes magenta."""
    h, w = data["image_shape"]
    z = display_zoom(h, w)
    display = enlarge(data["image"], z)
    positive = data["roi_is_positive"]
    negatives = data["rois"][~positive]
    # An even spread of the (already randomly sampled) negatives.
    shown = negatives[np.linspace(0, len(negatives) - 1, min(len(negatives),
                                                              MAX_NEGATIVES_DRAWN)).astype(int)]
    drawn = blend(display, visualize.draw_boxes(display, shown * z, colors=GREY), 0.5)
    drawn = draw_outlined(drawn, data["roi_target_boxes"][positive] * z, MAGENTA,
                          thickness=2)
    drawn = visualize.draw_boxes(drawn, data["rois"][positive] * z, colors=GREEN)
    return with_caption(drawn, [
        f"sampled RoIs: {int(positive.sum())} positive, {len(negatives)} negative",
        [("green: positive", GREEN), (f"grey: negative ({len(shown)} shown)", GREY)],
        [("magenta: decoded box target (= GT)", MAGENTA)],
    ], wrap=True)


def _poses(data: Mapping[str, Any], key: str, zoom: int) -> np.ndarray | None:
    """data[key] keypoints [N, K, 3] scaled to the enlarged display, or None if absent."""
    return None if key not in data else map_keypoints(data[key], (0.0, 0.0), zoom)


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
        enlarge(data["image"], z), data["det_boxes"] * z, data["det_class_ids"], scores,
        None if masks is None else enlarge(masks, z, first_axis=1), class_names,
        score_threshold=score_threshold, keypoints=_poses(data, "det_keypoints", z),
        skeleton=data.get("keypoint_skeleton", ()), keypoint_threshold=keypoint_threshold)
    poses = (f"; keypoints with score >= {format_number(keypoint_threshold)}"
             if "det_keypoints" in data else "")
    return with_caption(drawn, [
        f"detections: {int(np.sum(scores >= score_threshold))} with score >= "
        f"{format_number(score_threshold)} (of {len(scores)}){poses}"], wrap=True)


def ground_truth_view(data: Mapping[str, Any],
                      class_names: Sequence[str] | None) -> np.ndarray:
    """Ground-truth masks, boxes (crowd regions included) and, when the model has keypoints,
    the labelled keypoints with the skeleton (holed dots: occluded)."""
    h, w = data["image_shape"]
    z = display_zoom(h, w)
    drawn = visualize.draw_instances(enlarge(data["image"], z), data["gt_boxes"] * z,
                                     data["gt_classes"], None,
                                     enlarge(data["gt_masks"], z, first_axis=1), class_names,
                                     keypoints=_poses(data, "gt_keypoints", z),
                                     skeleton=data.get("keypoint_skeleton", ()),
                                     keypoint_visibility=True)
    crowd = int(np.sum(data["gt_is_crowd"]))
    labelled = ("" if "gt_keypoints" not in data else
                f", {int(np.sum(data['gt_keypoints'][..., 2] > 0))} labelled keypoints")
    return with_caption(drawn, [
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
