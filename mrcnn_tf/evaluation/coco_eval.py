"""COCO-style evaluation glue around pycocotools.

The model works with contiguous class ids 1..K (0 is background); datasets use their own
category ids (any integers, 0 included). `LabelMap` (mrcnn_tf.labels) converts between the
two. Predictions are turned into COCO results here, ground truth into COCO dicts by
mrcnn_tf.data.coco_writer, and AP/AR always come from a COCOeval: AP is never re-implemented,
so numbers are comparable with published results.

COCOeval backends (`make_cocoeval`): "faster", the default, is faster-coco-eval's
COCOeval_faster (pycocotools' algorithm with evaluate and accumulate in C++; several times
faster, and on COCO-like data its 12 numbers and precision tables equal pycocotools' to float
rounding: benchmarks/RESULTS.md, `python -m benchmarks coco_eval_backends`); "pycocotools" is
pycocotools' own COCOeval, the reference the tests hold the default to. Both run over
pycocotools' COCO objects (loading, loadRes and mask RLEs stay pycocotools'). The environment
variable MRCNN_TF_COCOEVAL=pycocotools, or evaluate_coco(backend="pycocotools"), picks the
reference.

Box convention: (y1, x1, y2, x2) float pixels with exclusive right/bottom edges, so a mask
covering columns 3..7 has x1 = 3, x2 = 8 and COCO width x2 - x1 = 5, the same width
`pycocotools.mask.toBbox` reports for that mask.

Keypoint convention (see mrcnn_tf.keypoint_spec): (y, x, v) in continuous pixels, pixel i
covering [i, i + 1). COCO stores integer pixel indices (x, y, v), so both the ground truth and
the results written here subtract 0.5 (Detectron2's rule): a keypoint read from a COCO file
comes back exactly, and a perfect prediction scores OKS 1 against either ground truth.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn_tf import keypoint_spec
# The ground-truth writers and LabelMap live lower down (the data readers use them too); they
# are imported here for the results writer and so that callers find them beside evaluate_coco.
from mrcnn_tf.data.coco_writer import (  # noqa: F401
    build_coco_ground_truth, coco_ground_truth_dict, encode_masks, keypoints_to_coco_rows,
    write_coco_json, yxyx_to_xywh)
from mrcnn_tf.labels import LabelMap  # noqa: F401

logger = logging.getLogger(__name__)

# Names of COCOeval.stats entries for box and mask evaluation, in COCOeval's order.
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# COCOeval's keypoint summary: 10 numbers, all at maxDets 20, no "small" range (COCO does not
# label keypoints on small people).
KEYPOINT_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
SUPPORTED_IOU_TYPES = ("bbox", "segm", "keypoints")
COCOEVAL_BACKENDS = ("faster", "pycocotools")
BACKEND_ENV = "MRCNN_TF_COCOEVAL"  # the default backend's name; unset: "faster"


def stat_names(iou_type: str) -> tuple[str, ...]:
    """Names of COCOeval.stats for `iou_type`, in COCOeval's order."""
    return KEYPOINT_STAT_NAMES if iou_type == "keypoints" else STAT_NAMES


# --------------------------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------------------------


def predictions_to_coco_results(
    image_id: int, prediction: Mapping[str, Any], label_map: LabelMap
) -> list[dict]:
    """One image's detections in COCO results format.

    Args:
        image_id: the ground truth's image id.
        prediction: "boxes" float [D, 4] (y1, x1, y2, x2) in original-image pixels,
            "class_ids" int [D] in 1..K, "scores" float [D], and optionally "masks" [D, H, W]
            full-image (bool; float masks are thresholded at 0.5) and "keypoints" float
            [D, K, 3] (y, x, score) in original-image continuous pixels.
        label_map: maps class ids to dataset category ids.

    Returns:
        D dicts {"image_id", "category_id" (dataset id), "bbox" [x, y, w, h], "score"} plus
        "segmentation" (compressed RLE, counts as str) when masks are given and "keypoints"
        (flat [x - 0.5, y - 0.5, keypoint score] * K, COCO's integer-index convention, as
        Detectron2 writes them) when keypoints are given. "score" stays the detection's score,
        which is what COCOeval ranks keypoint detections by.
    """
    image_id = int(image_id)
    boxes = np.asarray(prediction["boxes"], dtype=np.float64).reshape(-1, 4)
    class_ids = np.asarray(prediction["class_ids"]).reshape(-1)
    scores = np.asarray(prediction["scores"], dtype=np.float64).reshape(-1)
    d = boxes.shape[0]
    if class_ids.shape[0] != d or scores.shape[0] != d:
        raise ValueError(
            f"prediction for image {image_id}: {d} boxes, {class_ids.shape[0]} class ids, "
            f"{scores.shape[0]} scores; they must match"
        )
    rles = None
    masks = prediction.get("masks")
    if masks is not None:
        masks = np.asarray(masks)
        if masks.ndim != 3 or masks.shape[0] != d:
            raise ValueError(
                f"prediction for image {image_id}: masks have shape {masks.shape}, "
                f"expected [{d}, H, W]"
            )
        if np.issubdtype(masks.dtype, np.floating):
            masks = masks >= 0.5
        rles = encode_masks(masks)
    keypoints = None
    if prediction.get("keypoints") is not None:
        keypoints = keypoints_to_coco_rows(prediction["keypoints"], d,
                                       f"prediction for image {image_id}", "score")
    xywh = yxyx_to_xywh(boxes)
    results = []
    for i in range(d):
        result = {
            "image_id": image_id,
            "category_id": label_map.dataset_id(int(class_ids[i])),
            "bbox": [float(v) for v in xywh[i]],
            "score": float(scores[i]),
        }
        if rles is not None:
            result["segmentation"] = rles[i]
        if keypoints is not None:
            result["keypoints"] = [float(c) for c in keypoints[i]]
        results.append(result)
    return results


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def _category_names(coco_gt: COCO, cat_ids: Sequence[int]) -> list[str]:
    """Category names in `cat_ids` order, made unique by appending the id where they clash."""
    names = [str(coco_gt.cats[c].get("name", c)) for c in cat_ids]
    return [f"{n} ({c})" if names.count(n) > 1 else n for n, c in zip(names, cat_ids)]


def per_category_ap(coco_eval: COCOeval, coco_gt: COCO) -> dict[str, float]:
    """AP@[.5:.95] per category (area "all", the largest maxDets) from an accumulated eval.

    Reads COCOeval.eval["precision"], shaped [T IoU thresholds, R recall points, K categories,
    A area ranges, M maxDets], where -1 marks "no ground truth". A category without ground
    truth gets -1, like COCOeval's own summary.
    """
    precision = coco_eval.eval["precision"]
    cat_ids = coco_eval.params.catIds
    area_index = coco_eval.params.areaRngLbl.index("all")
    out = {}
    for k, name in enumerate(_category_names(coco_gt, cat_ids)):
        p = precision[:, :, k, area_index, -1]
        valid = p[p > -1]
        out[name] = float(np.mean(valid)) if valid.size else -1.0
    return out


def format_per_category_table(per_category: Mapping[str, float], columns: int = 3) -> str:
    """Per-category AP as a fixed-width text table with `columns` (name, AP) pairs per row."""
    items = list(per_category.items())
    if not items:
        return "(no categories)"
    name_width = max(8, max(len(n) for n, _ in items))
    cell = "{:<%d} {:>6}" % name_width
    rows = []
    header = " | ".join(cell.format("category", "AP") for _ in range(min(columns, len(items))))
    rows.append(header)
    rows.append("-" * len(header))
    for start in range(0, len(items), columns):
        chunk = items[start : start + columns]
        rows.append(
            " | ".join(
                cell.format(n, "n/a" if ap < 0 else f"{100 * ap:.1f}") for n, ap in chunk
            )
        )
    return "\n".join(rows)


# Per COCOeval type: the result field it scores, and the fields left out of its copies.
# loadRes picks its code path from the first result's keys and, when "bbox" is present, sets
# every result's area to the box area. For "segm" that would sort instances into
# small/medium/large by box area rather than mask area, so "bbox" is dropped. "keypoints" keeps
# "bbox", as Detectron2 does: the box, not the keypoints' extent, sizes a detection. Fields a
# type does not use are dropped.
_RESULT_FIELDS = {
    "bbox": ("bbox", ("segmentation", "keypoints")),
    "segm": ("segmentation", ("bbox", "keypoints")),
    "keypoints": ("keypoints", ("segmentation",)),
}
_MISSING_FIELD_HINTS = {
    "bbox": "",
    "segm": " Pass masks to predictions_to_coco_results or evaluate with iou_types=('bbox',).",
    "keypoints": " Pass keypoints to predictions_to_coco_results or leave 'keypoints' out of "
                 "iou_types.",
}


def _results_for(iou_type: str, results: list[dict]) -> list[dict]:
    """Shallow copies of `results` shaped for one COCOeval type (see _RESULT_FIELDS).

    Copies also keep loadRes from writing "id"/"area"/"iscrowd" into the caller's dicts.
    """
    field, dropped = _RESULT_FIELDS[iou_type]
    for i, r in enumerate(results):
        if field not in r:
            raise ValueError(
                f"'{iou_type}' evaluation needs a '{field}' in every result; result #{i} "
                f"(image_id {r.get('image_id')}) has none.{_MISSING_FIELD_HINTS[iou_type]}"
            )
    return [{k: v for k, v in r.items() if k not in dropped} for r in results]


def _keypoint_setup(
    coco_gt: COCO, oks_sigmas: Sequence[float] | None
) -> tuple[list[int], np.ndarray]:
    """The categories keypoint evaluation scores and the OKS sigmas it uses.

    Keypoint categories are those listing "keypoints" names, as in COCO's person_keypoints
    files and in `coco_ground_truth_dict` output for examples with keypoints.

    Args:
        coco_gt: the ground truth.
        oks_sigmas: K per-keypoint sigmas; None takes COCO's for COCO's person keypoints.

    Returns:
        (the sorted keypoint category ids, float64 [K] sigmas).

    Raises:
        ValueError: no keypoint category, categories with different K, annotations of a
            keypoint category without "keypoints", or a sigma count other than K.
    """
    cats = [coco_gt.cats[c] for c in sorted(coco_gt.getCatIds())]
    kp_cats = [c for c in cats if c.get("keypoints")]
    if not kp_cats:
        raise ValueError("'keypoints' evaluation: no category of the ground truth lists "
                         "'keypoints' names (a COCO person_keypoints file does, and so does "
                         "ground truth built from examples carrying 'keypoints')")
    names = list(kp_cats[0]["keypoints"])
    for c in kp_cats[1:]:
        if len(c["keypoints"]) != len(names):
            raise ValueError(f"'keypoints' evaluation: category {c['id']} has "
                             f"{len(c['keypoints'])} keypoints, expected {len(names)} like "
                             f"category {kp_cats[0]['id']} (one set of sigmas serves all)")
    cat_ids = [int(c["id"]) for c in kp_cats]
    for ann in coco_gt.loadAnns(coco_gt.getAnnIds(catIds=cat_ids)):
        if len(ann.get("keypoints", ())) != 3 * len(names) or "num_keypoints" not in ann:
            raise ValueError(f"'keypoints' evaluation: annotation {ann.get('id')} (category "
                             f"{ann['category_id']}): expected 'keypoints' with "
                             f"{3 * len(names)} numbers (x, y, v per keypoint) and "
                             "'num_keypoints'")
    if oks_sigmas is None:
        oks_sigmas = keypoint_spec.default_oks_sigmas(names)
    sigmas = np.asarray(oks_sigmas, dtype=np.float64).reshape(-1)
    if sigmas.shape[0] != len(names) or not (sigmas > 0).all():
        raise ValueError(f"oks_sigmas: {sigmas.shape[0]} sigmas {sigmas.tolist()}, expected "
                         f"{len(names)} positive ones, one per keypoint of the ground truth "
                         f"({names})")
    return cat_ids, sigmas


def default_backend() -> str:
    """The COCOeval backend evaluate_coco uses when not told: $MRCNN_TF_COCOEVAL, else "faster".

    Raises:
        ValueError: the variable names no backend of COCOEVAL_BACKENDS.
    """
    name = os.environ.get(BACKEND_ENV, "").strip() or "faster"
    if name not in COCOEVAL_BACKENDS:
        raise ValueError(f"{BACKEND_ENV}={name!r}: expected one of {COCOEVAL_BACKENDS}")
    return name


def _chosen_backend(backend: str | None) -> str:
    """`backend`, or `default_backend()` for None; ValueError naming the choices otherwise."""
    backend = default_backend() if backend is None else backend
    if backend not in COCOEVAL_BACKENDS:
        raise ValueError(f"COCOeval backend {backend!r}: expected one of {COCOEVAL_BACKENDS}")
    return backend


def make_cocoeval(coco_gt: COCO, coco_dt: COCO, iou_type: str, backend: str | None = None):
    """A COCOeval of `backend` (None: `default_backend()`) over pycocotools COCO objects, with
    pycocotools' default parameters: every image and category of `coco_gt`.

    Both backends take the same params (imgIds, catIds, kpt_oks_sigmas) and fill the same
    `eval["precision"]` [T, R, K, A, M], `eval["recall"]` and `stats`. The "faster" one keeps
    its per-image match tables in C++ (no `evalImgs`), prints its summary with two more lines
    (AR at IoU .5 and .75, left out of `stats`) and stores each evaluated annotation's RLE
    under "rle" (pycocotools instead replaces a ground-truth polygon by its RLE).

    Raises:
        ValueError: an unknown backend. ImportError: "faster" without faster-coco-eval.
    """
    if _chosen_backend(backend) == "pycocotools":
        return COCOeval(coco_gt, coco_dt, iouType=iou_type)
    try:
        from faster_coco_eval import COCOeval_faster  # noqa: PLC0415 (only where chosen)
    except ImportError as error:
        raise ImportError(f"the 'faster' COCOeval backend needs faster-coco-eval ({error}): "
                          f"pip install -r requirements.txt, or set {BACKEND_ENV}=pycocotools"
                          ) from error
    # Built empty and given the COCO objects afterwards, as pycocotools' constructor does:
    # handed pycocotools' COCO, its constructor reads an index only its own COCO has
    # (cat_img_map, for keypoints). print is its summary's output, as pycocotools'.
    coco_eval = COCOeval_faster(None, None, iouType=iou_type, print_function=print)
    coco_eval.cocoGt, coco_eval.cocoDt = coco_gt, coco_dt
    coco_eval.params.imgIds = sorted(coco_gt.getImgIds())
    coco_eval.params.catIds = sorted(coco_gt.getCatIds())
    return coco_eval


def evaluate_coco(
    coco_gt: COCO,
    results: Sequence[Mapping[str, Any]] | str | os.PathLike,
    iou_types: Sequence[str] = ("bbox", "segm"),
    print_summary: bool = True,
    image_ids: Sequence[int] | None = None,
    oks_sigmas: Sequence[float] | None = None,
    backend: str | None = None,
    on_evaluated: Callable[[str, Any], None] | None = None,
) -> dict:
    """Runs COCOeval for each IoU type and returns the metrics as a flat dict.

    Args:
        coco_gt: ground truth, e.g. from `build_coco_ground_truth` or `COCO(path)`.
        results: COCO results (list of dicts, e.g. concatenated `predictions_to_coco_results`)
            or the path of a results JSON file. Every image_id must be in `coco_gt`.
        iou_types: any of "bbox", "segm", "keypoints" (OKS, over the categories that list
            "keypoints" names).
        print_summary: print COCOeval's summary and a per-category AP table per type.
        image_ids: evaluate on these images only (the ones the model was run on); None means
            every image of `coco_gt`, so an image left out would count as all misses.
        oks_sigmas: K per-keypoint OKS sigmas for "keypoints" (e.g. config.oks_sigmas); None
            takes COCO's when the ground truth's keypoints are COCO's 17 person keypoints.
        backend: the COCOeval, "faster" or "pycocotools" (see `make_cocoeval`); None:
            `default_backend()` ($MRCNN_TF_COCOEVAL, else "faster").
        on_evaluated: optional callable(iou_type, coco_eval) given each type's accumulated and
            summarized COCOeval before it is freed (e.g. `plots.PlotCollector.on_evaluated`
            reads its precision table and detections); not called when there are no results.

    Returns:
        For "bbox" and "segm": {"<type>/AP": .., "<type>/AP50", "<type>/AP75", "<type>/APs",
        "<type>/APm", "<type>/APl", "<type>/AR1", "<type>/AR10", "<type>/AR100",
        "<type>/ARs", "<type>/ARm", "<type>/ARl"} (STAT_NAMES); for "keypoints":
        "keypoints/AP", "keypoints/AP50", "keypoints/AP75", "keypoints/APm", "keypoints/APl",
        "keypoints/AR", "keypoints/AR50", "keypoints/AR75", "keypoints/ARm", "keypoints/ARl"
        (KEYPOINT_STAT_NAMES, all at 20 detections per image); and "<type>/per_category":
        {name: AP@[.5:.95]} for each type. Values are in [0, 1]; -1 means "not applicable"
        (no ground truth in that area range/category), as in COCOeval. With no results at all
        every value is 0.0 (COCO's loadRes cannot load an empty list) and a warning says so.

    Raises:
        ValueError: an unknown iou type or backend, results for unknown images or lacking the
            scored field, or (for "keypoints") see `_keypoint_setup`.
    """
    iou_types = tuple(iou_types)
    for t in iou_types:
        if t not in SUPPORTED_IOU_TYPES:
            raise ValueError(f"unsupported iou type {t!r}; expected one of {SUPPORTED_IOU_TYPES}")
    backend = _chosen_backend(backend)
    if isinstance(results, (str, os.PathLike)):
        with open(results) as f:
            results = json.load(f)
    results = list(results)

    gt_image_ids = set(coco_gt.getImgIds())
    unknown = sorted({int(r["image_id"]) for r in results} - gt_image_ids)
    if unknown:
        # loadRes only asserts; name the offending ids instead.
        raise ValueError(
            f"results refer to image ids not in the ground truth: {unknown[:10]}"
            + (" ..." if len(unknown) > 10 else "")
        )
    # Categories scored per type (None: all); checked before any work, empty results included.
    cat_ids: dict[str, list[int] | None] = {t: None for t in iou_types}
    sigmas = None
    if "keypoints" in iou_types:
        cat_ids["keypoints"], sigmas = _keypoint_setup(coco_gt, oks_sigmas)

    metrics: dict[str, Any] = {}
    if not results:
        logger.warning("evaluate_coco: no detections to evaluate; every metric is reported as 0")
        for t in iou_types:
            metrics.update({f"{t}/{s}": 0.0 for s in stat_names(t)})
            names = _category_names(coco_gt, cat_ids[t] or sorted(coco_gt.getCatIds()))
            metrics[f"{t}/per_category"] = {n: 0.0 for n in names}
        if print_summary:
            print("evaluate_coco: no detections; all metrics are 0.")
        return metrics

    for t in iou_types:
        # loadRes, evaluate and accumulate print progress lines; keep only the summary.
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = coco_gt.loadRes(_results_for(t, results))
            coco_eval = make_cocoeval(coco_gt, coco_dt, t, backend)
            if image_ids is not None:
                coco_eval.params.imgIds = sorted(int(i) for i in image_ids)
            if cat_ids[t] is not None:
                coco_eval.params.catIds = cat_ids[t]
            if t == "keypoints":
                coco_eval.params.kpt_oks_sigmas = sigmas
            coco_eval.evaluate()
            coco_eval.accumulate()
        if print_summary:
            print(f"COCO {t} evaluation:")
            coco_eval.summarize()
        else:
            with contextlib.redirect_stdout(io.StringIO()):
                coco_eval.summarize()
        per_cat = per_category_ap(coco_eval, coco_gt)
        if print_summary:
            print(f"Per-category {t} AP@[.5:.95] (%):")
            print(format_per_category_table(per_cat))
        metrics.update({f"{t}/{s}": float(v) for s, v in zip(stat_names(t), coco_eval.stats)})
        metrics[f"{t}/per_category"] = per_cat
        if on_evaluated is not None:
            on_evaluated(t, coco_eval)
        # Freed before the next type is evaluated, so that one type's per-image IoUs and
        # matches (what grows with the number of images) are in memory at a time.
        del coco_eval, coco_dt
    return metrics
