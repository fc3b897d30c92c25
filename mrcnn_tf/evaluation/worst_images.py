"""The grid of the worst images of an evaluation: each image with its predictions and ground
truth drawn, and a caption with its id, file and counts.

Memory stays bounded: the evaluation keeps only the worst images' ids, counts and detections
(`plots.PlotCollector`); the images themselves are read again here, a few of them.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np
from absl import logging
from pycocotools import mask as mask_utils

from mrcnn_tf import visualize

TILE = 256  # pixels of a tile's longer side
FOUND, MISSED = (0, 200, 0), (230, 0, 0)  # ground truth outlines (RGB)


def fetch_examples(examples, image_ids: Iterable[int]) -> dict[int, dict]:
    """{image_id: example} for `image_ids`, read again from `examples`.

    A dataset with `load_example(image_id)` (CocoDataset) reads just those images; any other
    iterable is walked until all are found, holding only the ones wanted. An image that can no
    longer be read is left out with a warning.
    """
    wanted = {int(i) for i in image_ids}
    found = {}
    if hasattr(examples, "load_example"):
        for image_id in sorted(wanted):
            try:
                found[image_id] = examples.load_example(image_id)
            except (KeyError, ValueError, OSError) as error:
                logging.warning("worst images: image %d left out: %s", image_id, error)
        return found
    for example in examples:
        image_id = int(example["image_id"])
        if image_id in wanted:
            found[image_id] = example
            if len(found) == len(wanted):
                break
    return found


def _scaled(image: np.ndarray, size: int):
    """The image scaled so that its longer side is `size` (area-averaged down, nearest up),
    and (y, x) scale factors."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    method = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST
    return cv2.resize(image, (new_w, new_h), interpolation=method), new_h / h, new_w / w


def _yxyx(xywh: Sequence[float], sy: float, sx: float) -> list[float]:
    x, y, w, h = (float(v) for v in xywh)
    return [y * sy, x * sx, (y + h) * sy, (x + w) * sx]


def draw_tile(image: np.ndarray, truths: Sequence[Mapping], detections: Sequence[Mapping],
              missed_ids: Iterable[int], cat_ids: Sequence[int], names: Sequence[str],
              with_masks: bool, captions: Sequence[str], size: int = TILE) -> np.ndarray:
    """One captioned tile: the predictions as `draw_instances` draws them (tinted masks when
    `with_masks`, thin boxes, "name score" labels) and the ground truth as thick boxes, green
    when found and red when missed (crowd regions are not drawn).

    Args:
      image: uint8 [H, W, 3], the evaluated image.
      truths, detections: COCO annotations and results of that image (bbox xywh;
        "segmentation" RLE for the masks of detections).
      missed_ids: ids of the truths missed.
      cat_ids, names: the categories and their names (drawn class k + 1 is cat_ids[k]).
    Returns:
      uint8 [size + 32, size, 3].
    """
    small, sy, sx = _scaled(image, size)
    index = {c: k + 1 for k, c in enumerate(cat_ids)}
    masks = None
    if with_masks and detections:
        masks = np.stack([cv2.resize(mask_utils.decode(d["segmentation"]),
                                     (small.shape[1], small.shape[0]),
                                     interpolation=cv2.INTER_NEAREST) for d in detections])
    drawn = visualize.draw_instances(
        small, np.array([_yxyx(d["bbox"], sy, sx) for d in detections]).reshape(-1, 4),
        np.array([index[d["category_id"]] for d in detections], np.int64),
        np.array([d["score"] for d in detections]), masks, list(names), alpha=0.4)
    missed = set(missed_ids)
    solid = [t for t in truths if not t.get("iscrowd", 0)]
    if solid:
        drawn = visualize.draw_boxes(
            drawn, np.array([_yxyx(t["bbox"], sy, sx) for t in solid]),
            colors=np.array([MISSED if t["id"] in missed else FOUND for t in solid], np.uint8),
            thickness=2)
    return visualize.captioned_tile(drawn, (size, size), captions)


def worst_images_grid(worst: Sequence[Mapping], examples, coco_gt, cat_ids: Sequence[int],
                      names: Sequence[str], iou_type: str, score_threshold: float,
                      columns: int = 4, size: int = TILE) -> np.ndarray:
    """The worst images (`PlotCollector.worst[iou_type]`, worst first) as a grid of captioned
    tiles under a one-line legend.

    Returns:
      uint8 RGB [36 + rows * (size + 32) + gaps, columns * size + gaps, 3]; with no image to
      show, one tile saying so.
    """
    found = fetch_examples(examples, [w["image_id"] for w in worst])
    tiles = []
    for entry in worst:
        image_id = entry["image_id"]
        if image_id not in found:
            continue
        truths = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=[image_id], catIds=list(cat_ids)))
        captions = (f"image {image_id}  {entry.get('file_name', '')}",
                    f"TP {entry['tp']}  FP {entry['fp']}  FN {entry['fn']}  "
                    f"F1 {entry['f1']:.2f}")
        tiles.append(draw_tile(found[image_id]["image"], truths, entry["detections"],
                               entry["missed_ids"], cat_ids, names, iou_type == "segm",
                               captions, size))
    if not tiles:
        blank = np.full((size, size, 3), 255, np.uint8)
        tiles = [visualize.captioned_tile(blank, (size, size),
                                          ("no image with errors", f"at score >= "
                                           f"{score_threshold:g}"))]
    grid = visualize.make_grid(tiles, columns, padding=4, pad_value=255)
    header = np.full((36, grid.shape[1], 3), 255, np.uint8)
    visualize.put_text(header, f"worst images by {iou_type} IoU 0.5; predictions >= "
                       f"{score_threshold:g}: tinted, labelled", 4, 14, 0.4)
    visualize.put_text(header, "ground truth: green box found, red box missed", 4, 30, 0.4)
    return np.concatenate([header, grid], axis=0)
