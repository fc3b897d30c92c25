"""The per-positive-RoI views: mask_targets.png (`mask_target_tiles`) and keypoint_targets.png
(`keypoint_targets_view` of `keypoint_target_tiles`), one tile per positive RoI of
`inspection_data`, each showing the image crop of the RoI with its training target.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from mrcnn_tf import visualize
from mrcnn_tf.inspection.drawing import (GREEN, GREY, GRID_PAD_VALUE, GRID_PADDING, MAGENTA, RED,
                                         WHITE, caption_height, crop_box, draw_outlined_poses,
                                         enlarge, map_keypoints, no_positives_tile,
                                         with_caption)

# Mask tiles: each mask cell becomes a square of at least MIN_MASK_PANEL / mask_size pixels.
MIN_MASK_PANEL = 96
MASK_GRID_COLUMNS = 4
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


def mask_panel_side(mask_size: int) -> int:
    """Side of the crop and mask panels of a mask tile: mask_size times an integer."""
    return int(mask_size) * max(1, math.ceil(MIN_MASK_PANEL / int(mask_size)))


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
        crop = crop_box(data["image"], roi, side)
        big = enlarge((target >= 0.5).astype(np.uint8), side // m)
        contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(crop, contours, -1, GREEN, thickness=1)
        panel = np.full([side, width, 3], GRID_PAD_VALUE, np.uint8)
        panel[:, :side] = crop
        panel[:, side + PANEL_GAP:] = visualize.mask_to_color(target, size=(side, side))
        name = visualize.class_name(class_names, int(class_id))
        tiles.append(with_caption(panel, [f"#{i + 1} {name}"]))
    if not tiles:
        tiles.append(no_positives_tile(side, width, ["mask targets"]))
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
        panel = visualize.draw_boxes(crop_box(data["image"], region, side),
                                     (roi - np.tile(origin, 2))[None] * scale, colors=GREEN)
        gt_tile = map_keypoints(gt[None], origin, scale)
        panel = draw_outlined_poses(panel, gt_tile, skeleton, WHITE, GT_KEYPOINT_RADIUS)
        panel = draw_outlined_poses(
            panel, map_keypoints(data["keypoint_target_points"][i][None], origin, scale),
            skeleton, MAGENTA, TARGET_KEYPOINT_RADIUS)
        dropped = (gt[:, 2] > 0) & ~data["keypoint_valid"][i]
        for y, x in gt_tile[0, dropped, :2]:
            # Continuous (y, x) -> OpenCV's pixel-centre coordinates, as draw_keypoints does;
            # black under red, like the outlined boxes.
            for color, width in (((0, 0, 0), 4), (RED, 2)):
                cv2.drawMarker(panel, (int(round(x - 0.5)), int(round(y - 0.5))), color,
                               cv2.MARKER_TILTED_CROSS, 3 * GT_KEYPOINT_RADIUS, width,
                               cv2.LINE_AA)
        name = visualize.class_name(class_names, int(data["mask_classes"][i]))
        tiles.append(with_caption(panel, [
            f"#{i + 1} {name}  GT {g + 1}",
            [(f"{int(data['keypoint_valid'][i].sum())} targets", MAGENTA),
             (f"{int(dropped.sum())} dropped", RED if dropped.any() else GREY)],
        ]))
    if not tiles:
        tiles.append(no_positives_tile(side, side, ["keypoint targets", ""]))
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
    return with_caption(grid, [
        f"keypoint targets of {positives} positive RoI{'' if positives == 1 else 's'}{shown}, "
        f"{size}x{size} heatmap bins",
        [("green: positive RoI", GREEN)],
        [("white: GT (holed: occluded)", WHITE)],
        [("magenta: target bin centre", MAGENTA)],
        [("red x: outside RoI, dropped", RED)],
    ], wrap=True)
