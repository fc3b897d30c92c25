"""Evaluation pictures: precision-recall curves from COCOeval, TIDE's error breakdown, the
worst images, and the JSON of the numbers behind them.

`PlotCollector.on_evaluated` is the hook `coco_eval.evaluate_coco` (and `evaluate_model`)
call with each accumulated COCOeval, before it is freed. It keeps only small things: the
precision at IoU 0.5 and 0.75 ([2, 101, K] per type), the error breakdown's numbers
(`error_breakdown`, bbox and segm) and the detections of the few worst images. Then
`write_plots` (the `evaluate --plots` folder) or `summary_images` (TensorBoard) draw them.
"""

from __future__ import annotations

import math
import os
import time

import cv2
import numpy as np

from mrcnn_tf import visualize
from mrcnn_tf.evaluation import coco_eval as coco_eval_lib
from mrcnn_tf.evaluation import error_breakdown, worst_images
from mrcnn_tf.io_utils import write_json_atomic, write_png_atomic

PR_IOUS = (0.5, 0.75)
# The maxDets COCOeval reports AP at: 100 detections per image for boxes and masks, 20 for
# keypoints (its only value there).
_MAX_DETS = {"bbox": 100, "segm": 100, "keypoints": 20}
_ERROR_LABELS = {"classification": "class", "localization": "localization", "both": "both",
                 "duplicate": "duplicate", "background": "background", "missed": "missed"}


class PlotCollector:
    """Gathers what the pictures need from each evaluated type (see the module doc).

    Args:
      score_threshold: the detections the worst images are ranked on and drawn with.
      worst: how many worst images to keep (those with the most false positives plus
        misses at IoU 0.5, ties broken by lower F1).
      breakdown: compute TIDE's error breakdown (bbox and segm).

    Attributes:
      curves: {iou_type: {"names": K category names, "precision": float [2, 101, K] at
        PR_IOUS (-1: no ground truth)}}.
      breakdowns: {iou_type: `Breakdown.summary()`}.
      worst: {iou_type: [per-image dict of `Breakdown.images` plus "file_name" and
        "detections", the image's COCO results >= score_threshold]}, worst first.
      seconds: time spent in the hook.
    """

    def __init__(self, score_threshold: float = 0.5, worst: int = 12, breakdown: bool = True):
        self.score_threshold = float(score_threshold)
        self.worst_count = int(worst)
        self.breakdown = bool(breakdown)
        self.curves, self.breakdowns, self.worst = {}, {}, {}
        self.coco_gt, self.cat_ids = None, None
        self.seconds = 0.0

    def on_evaluated(self, iou_type: str, coco_eval) -> None:
        """Keeps the precision curves, breakdown and worst images of one accumulated eval."""
        start = time.perf_counter()
        params = coco_eval.params
        area = list(params.areaRngLbl).index("all")
        max_dets = list(params.maxDets).index(_MAX_DETS.get(iou_type, max(params.maxDets)))
        ious = [int(np.flatnonzero(np.isclose(params.iouThrs, t))[0]) for t in PR_IOUS]
        self.coco_gt, self.cat_ids = coco_eval.cocoGt, list(params.catIds)
        self.curves[iou_type] = {
            "names": coco_eval_lib._category_names(coco_eval.cocoGt, params.catIds),
            "precision": np.array(coco_eval.eval["precision"][ious, :, :, area, max_dets]),
        }
        if self.breakdown and iou_type in ("bbox", "segm"):
            detections = list(coco_eval.cocoDt.anns.values())
            found = error_breakdown.analyze(
                coco_eval.cocoGt, detections, iou_type, image_ids=params.imgIds,
                cat_ids=params.catIds, max_dets=max(params.maxDets),
                score_threshold=self.score_threshold)
            self.breakdowns[iou_type] = found.summary()
            self.worst[iou_type] = self._worst(found.images, detections, coco_eval.cocoGt)
        self.seconds += time.perf_counter() - start

    def _worst(self, images, detections, coco_gt):
        ranked = sorted((im for im in images if im["fp"] + im["fn"] > 0),
                        key=lambda im: (-(im["fp"] + im["fn"]), im["f1"], im["image_id"]))
        ranked = ranked[:self.worst_count]
        wanted = {im["image_id"]: dict(
            im, file_name=coco_gt.imgs.get(im["image_id"], {}).get("file_name", ""),
            detections=[]) for im in ranked}
        for d in detections:
            if d["image_id"] in wanted and d["score"] >= self.score_threshold:
                wanted[d["image_id"]]["detections"].append(
                    {k: d[k] for k in ("category_id", "score", "bbox", "segmentation")
                     if k in d})
        return [wanted[im["image_id"]] for im in ranked]


def pr_curve_data(curve: dict, iou_index: int) -> dict:
    """{"overall": {"ap", "precision" [101]}, "classes": {name: {"ap", "precision"}}} at
    PR_IOUS[iou_index]; "overall" is the mean over categories with ground truth, so its AP is
    COCOeval's AP50 (AP75)."""
    precision = curve["precision"][iou_index]  # [R, K]
    valid = [k for k in range(precision.shape[1]) if (precision[:, k] > -1).all()]
    overall = (precision[:, valid].mean(axis=1) if valid
               else np.zeros(precision.shape[0]))
    return {
        "overall": {"ap": float(overall.mean()), "precision": overall.tolist()},
        "classes": {curve["names"][k]: {"ap": float(precision[:, k].mean()),
                                        "precision": precision[:, k].tolist()}
                    for k in valid},
    }


def draw_pr_curve(iou_type: str, curve: dict, iou_index: int) -> np.ndarray:
    """The precision-recall chart of one type at PR_IOUS[iou_index]: one line per category
    (the first 12 coloured and named, the rest grey) and the mean over categories in black;
    each legend entry carries that curve's AP. uint8 RGB [420, 560, 3]."""
    data = pr_curve_data(curve, iou_index)
    recall = error_breakdown.RECALL_POINTS
    lines = [{"x": recall, "y": c["precision"], "label": f"{name}  {c['ap']:.3f}"}
             for name, c in data["classes"].items()]
    lines.append({"x": recall, "y": data["overall"]["precision"], "color": (0, 0, 0),
                  "width": 3, "label": f"all classes  {data['overall']['ap']:.3f}"})
    iou = PR_IOUS[iou_index]
    return visualize.line_chart(
        f"{iou_type} precision-recall at IoU {iou:.2f} (AP{round(iou * 100)} in legend)",
        lines, x_label="recall", y_label="precision")


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5, 10, 20, 50, 100 at or above `value`."""
    return next((c for c in (1, 2, 5, 10, 20, 50) if value <= c), 100)


def draw_error_breakdown(breakdowns: dict) -> np.ndarray:
    """Bars of ΔAP50 (AP points) per TIDE error type, one series per evaluated type, with
    each type's error counts under its name. uint8 RGB [480, 760, 3]."""
    types = list(breakdowns)
    deltas = np.array([[100 * breakdowns[t]["delta_ap50"][e] for t in types]
                       for e in error_breakdown.ERROR_TYPES])
    notes = [" / ".join(str(breakdowns[t]["counts"][e]) for t in types)
             for e in error_breakdown.ERROR_TYPES]
    series = [f"{t} (AP50 {100 * breakdowns[t]['ap50']:.1f})" for t in types]
    return visualize.grouped_bar_chart(
        "AP50 points gained by fixing each error type (TIDE; counts below)",
        [_ERROR_LABELS[e] for e in error_breakdown.ERROR_TYPES], series, deltas, deltas, deltas,
        notes=notes, y_max=_nice_ceiling(float(deltas.max(initial=0.0))))


def summary_images(collector: PlotCollector) -> dict[str, np.ndarray]:
    """{name: uint8 RGB image}: "pr_<type>_iou50", "pr_<type>_iou75" per type evaluated and
    "errors" when a breakdown was computed (no worst images: they need the examples)."""
    images = {}
    for iou_type, curve in collector.curves.items():
        for i, iou in enumerate(PR_IOUS):
            images[f"pr_{iou_type}_iou{round(iou * 100)}"] = draw_pr_curve(iou_type, curve, i)
    if collector.breakdowns:
        images["errors"] = draw_error_breakdown(collector.breakdowns)
    return images


def _drawn_type(collector: PlotCollector) -> str | None:
    """The type the worst images are ranked by: masks when evaluated, else boxes."""
    return next((t for t in ("segm", "bbox") if collector.worst.get(t)), None)


def plots_json(collector: PlotCollector, files: list[str]) -> dict:
    """The numbers behind the pictures (see `write_plots`)."""
    drawn = _drawn_type(collector)
    return {
        "score_threshold": collector.score_threshold,
        "recall": error_breakdown.RECALL_POINTS.tolist(),
        "pr_curves": {t: {f"{iou:.2f}": pr_curve_data(c, i) for i, iou in enumerate(PR_IOUS)}
                      for t, c in collector.curves.items()},
        "errors": collector.breakdowns,
        "worst_images": {
            "iou_type": drawn,
            "images": [{k: v for k, v in im.items() if k != "detections"}
                       for im in collector.worst.get(drawn, [])],
        },
        "files": files,
    }


def write_plots(out_dir: str, collector: PlotCollector, examples=None) -> list[str]:
    """Writes the pictures and plots.json into folder `out_dir` (made if missing; each file
    atomically).

    Files: pr_<type>_iou50.png and pr_<type>_iou75.png per type evaluated; errors.png (TIDE
    breakdown, bbox and segm); worst_images.png (needs `examples` to read the images again:
    a `CocoDataset`, whose `load_example` reads just those, or any iterable of examples);
    overview.png (the first PR chart, the breakdown and the worst images on one page); and
    plots.json with every number drawn. Returns the paths written.
    """
    os.makedirs(out_dir, exist_ok=True)
    pictures = summary_images(collector)
    drawn = _drawn_type(collector)
    if examples is not None and drawn is not None:
        pictures["worst_images"] = worst_images.worst_images_grid(
            collector.worst[drawn], examples, collector.coco_gt, collector.cat_ids,
            collector.curves[drawn]["names"], drawn, collector.score_threshold)
    if pictures:
        pictures["overview"] = _overview(pictures)
    paths = []
    for name, image in pictures.items():
        paths.append(os.path.join(out_dir, f"{name}.png"))
        write_png_atomic(paths[-1], image)
    paths.append(os.path.join(out_dir, "plots.json"))
    write_json_atomic(paths[-1], plots_json(collector, [os.path.basename(p) for p in paths]))
    return paths


def _overview(pictures: dict) -> np.ndarray:
    """One page: the last type's PR chart at IoU 0.5 and the error bars above, the worst
    images below (scaled to the top row's width when wider)."""
    charts = [im for name, im in pictures.items() if name.endswith("_iou50")][-1:]
    charts += [pictures["errors"]] if "errors" in pictures else []
    rows = [charts]
    if "worst_images" in pictures:
        grid = pictures["worst_images"]
        width = sum(im.shape[1] for im in charts) + 8 * (len(charts) - 1)
        if grid.shape[1] > width:
            scale = width / grid.shape[1]
            grid = cv2.resize(grid, (width, math.ceil(grid.shape[0] * scale)),
                              interpolation=cv2.INTER_AREA)
        rows.append([grid])
    return visualize.stack_rows(rows)
