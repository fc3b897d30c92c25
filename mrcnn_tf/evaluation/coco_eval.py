"""COCO-style evaluation glue around pycocotools.

The model works with contiguous class ids 1..K (0 is background); datasets use their own
category ids (any integers, 0 included). `LabelMap` converts between the two. Ground truth and
predictions are turned into COCO dicts here, and AP/AR always come from pycocotools' COCOeval:
AP is never re-implemented, so numbers are comparable with published results.

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
import dataclasses
import io
import json
import logging
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn_tf import keypoint_spec
from mrcnn_tf.io_utils import write_json_atomic

logger = logging.getLogger(__name__)

# Names of COCOeval.stats entries for box and mask evaluation, in COCOeval's order.
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# COCOeval's keypoint summary: 10 numbers, all at maxDets 20, no "small" range (COCO does not
# label keypoints on small people).
KEYPOINT_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
SUPPORTED_IOU_TYPES = ("bbox", "segm", "keypoints")


def stat_names(iou_type: str) -> tuple[str, ...]:
    """Names of COCOeval.stats for `iou_type`, in COCOeval's order."""
    return KEYPOINT_STAT_NAMES if iou_type == "keypoints" else STAT_NAMES


@dataclasses.dataclass(frozen=True)
class LabelMap:
    """Contiguous class ids 1..K <-> dataset category ids and names.

    Contiguous id i (1-based) has dataset id `dataset_ids[i - 1]` and name `names[i - 1]`.
    Dataset ids may be any distinct integers (0 allowed, gaps allowed, any order).
    """

    dataset_ids: tuple[int, ...]
    names: tuple[str, ...]

    def __post_init__(self):
        # Normalise lists / NumPy ints so equality and hashing behave and JSON stays plain.
        object.__setattr__(self, "dataset_ids", tuple(int(i) for i in self.dataset_ids))
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        if len(self.dataset_ids) != len(self.names):
            raise ValueError(
                f"LabelMap: {len(self.dataset_ids)} dataset ids but {len(self.names)} names"
            )
        if len(set(self.dataset_ids)) != len(self.dataset_ids):
            dupes = sorted({i for i in self.dataset_ids if self.dataset_ids.count(i) > 1})
            raise ValueError(f"LabelMap: dataset category ids must be distinct, repeated: {dupes}")
        object.__setattr__(
            self, "_to_contiguous", {d: i + 1 for i, d in enumerate(self.dataset_ids)}
        )

    @classmethod
    def from_names(cls, names: Sequence[str]) -> "LabelMap":
        """Label map whose dataset ids are 1..K, i.e. equal to the contiguous ids."""
        return cls(tuple(range(1, len(names) + 1)), tuple(names))

    @classmethod
    def from_coco_categories(cls, categories: Iterable[Mapping[str, Any]]) -> "LabelMap":
        """Label map from a COCO "categories" list, contiguous ids in increasing dataset id."""
        cats = sorted(categories, key=lambda c: int(c["id"]))
        return cls(tuple(int(c["id"]) for c in cats), tuple(str(c["name"]) for c in cats))

    @property
    def num_classes(self) -> int:
        """K, the number of object classes (background not counted)."""
        return len(self.names)

    @property
    def class_names(self) -> list[str]:
        """["background", name_1, ..., name_K]: indexable by contiguous id."""
        return ["background", *self.names]

    def dataset_id(self, contiguous_id: int) -> int:
        """Dataset category id of contiguous class id `contiguous_id` (1..K)."""
        c = int(contiguous_id)
        if not 1 <= c <= len(self.dataset_ids):
            raise KeyError(
                f"contiguous class id {c} is outside 1..{len(self.dataset_ids)} of this label map"
            )
        return self.dataset_ids[c - 1]

    def contiguous_id(self, dataset_id: int) -> int:
        """Contiguous class id (1..K) of dataset category id `dataset_id`."""
        try:
            return self._to_contiguous[int(dataset_id)]  # type: ignore[attr-defined]
        except KeyError:
            raise KeyError(
                f"dataset category id {int(dataset_id)} is not in the label map "
                f"(known ids: {sorted(self.dataset_ids)})"
            ) from None

    def name(self, contiguous_id: int) -> str:
        """Name of contiguous class id `contiguous_id` (1..K)."""
        self.dataset_id(contiguous_id)  # range check with a clear message
        return self.names[int(contiguous_id) - 1]

    def to_dict(self) -> dict:
        """JSON-able form: {"categories": [{"id": contiguous, "dataset_id": .., "name": ..}]}."""
        return {
            "categories": [
                {"id": i + 1, "dataset_id": d, "name": n}
                for i, (d, n) in enumerate(zip(self.dataset_ids, self.names))
            ]
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LabelMap":
        """Inverse of `to_dict`; entries may come in any order, ids must be exactly 1..K."""
        try:
            cats = sorted(data["categories"], key=lambda c: int(c["id"]))
            ids = [int(c["id"]) for c in cats]
            dataset_ids = tuple(int(c["dataset_id"]) for c in cats)
            names = tuple(str(c["name"]) for c in cats)
        except (KeyError, TypeError) as e:
            raise ValueError(
                "label map dict must look like {'categories': [{'id', 'dataset_id', 'name'}, ...]}"
                f"; {e!r}"
            ) from None
        if ids != list(range(1, len(ids) + 1)):
            raise ValueError(f"label map contiguous ids must be 1..K, got {ids}")
        return cls(dataset_ids, names)

    def coco_categories(self) -> list[dict]:
        """COCO "categories" list, with the dataset's own ids."""
        return [{"id": d, "name": n} for d, n in zip(self.dataset_ids, self.names)]


# --------------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------------


def _encode_masks(masks: np.ndarray) -> list[dict]:
    """Compressed RLE of each mask, with counts as str so the dict is JSON-able.

    Args:
        masks: [N, H, W] bool/uint8 (non-zero = foreground).

    Returns:
        N dicts {"size": [H, W], "counts": str}.
    """
    if masks.shape[0] == 0:
        return []
    # pycocotools wants a Fortran-ordered uint8 [H, W, N] array.
    stacked = np.asfortranarray(np.transpose(masks != 0, (1, 2, 0)).astype(np.uint8))
    rles = mask_util.encode(stacked)
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def _yxyx_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """[N, 4] (y1, x1, y2, x2) exclusive edges -> [N, 4] COCO (x, y, width, height)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack(
        [boxes[:, 1], boxes[:, 0], boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]], axis=1
    )


def _keypoints_to_coco(keypoints: Any, n: int, where: str, third: str) -> np.ndarray:
    """Keypoints in this package's convention -> COCO's flat rows.

    Args:
        keypoints: float [N, K, 3] (y, x, `third`) in continuous pixels.
        n: the expected N (number of boxes).
        where: what the keypoints belong to, for error messages.
        third: the third value's meaning ("v" or "score"), for error messages.

    Returns:
        float64 [N, 3 K]: (x - 0.5, y - 0.5, third) per keypoint, COCO's integer-index
        convention (pixel i's centre is i + 0.5 here and i in COCO).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[0] != n or kp.shape[2] != 3:
        raise ValueError(f"{where}: keypoints have shape {kp.shape}, expected [{n}, K, 3] "
                         f"(y, x, {third})")
    return keypoint_spec.keypoints_to_coco(kp)


def _ground_truth_keypoints(keypoints: Any, n: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One example's "keypoints" as COCO annotation fields.

    Args:
        keypoints: float [N, K, 3] (y, x, v), v 0 = not labelled, 1 = occluded, 2 = visible.

    Returns:
        (rows float64 [N, 3 K] in COCO's convention with every unlabelled keypoint written as
        0, 0, 0 as in COCO files, num_keypoints int [N]: the labelled keypoints per instance,
        which COCOeval uses to ignore instances without any).
    """
    rows = _keypoints_to_coco(keypoints, n, where, "v")
    triples = rows.reshape(n, rows.shape[1] // 3, 3)
    v = triples[..., 2]
    if not np.isin(v, (0, 1, 2)).all():
        raise ValueError(f"{where}: keypoint visibilities {sorted(set(v.ravel().tolist()))}: "
                         "expected 0 (not labelled), 1 (occluded) or 2 (visible)")
    triples = np.where((v == 0)[..., None], 0.0, triples)
    return triples.reshape(rows.shape), (v > 0).sum(axis=1)


def _keypoint_categories(label_map: LabelMap, num_keypoints: int,
                         keypoint_names: Sequence[str] | None,
                         keypoint_skeleton: Sequence[int]) -> list[dict]:
    """COCO categories with "keypoints" (names) and "skeleton" (1-based pairs) added.

    Without `keypoint_names` the keypoints are called "kp0", "kp1", ... and have no skeleton.
    """
    if keypoint_names is None:
        names = [f"kp{k}" for k in range(num_keypoints)]
        keypoint_skeleton = ()
    else:
        names = [str(n) for n in keypoint_names]
        if len(names) != num_keypoints:
            raise ValueError(f"keypoint_names: {len(names)} names, expected {num_keypoints} "
                             "(the examples' keypoints are [N, K, 3] with that K)")
    if len(keypoint_skeleton) % 2 or not all(0 <= int(i) < num_keypoints
                                             for i in keypoint_skeleton):
        raise ValueError(f"keypoint_skeleton: {list(keypoint_skeleton)}: expected flat 0-based "
                         f"index pairs in 0..{num_keypoints - 1}")
    skeleton = keypoint_spec.skeleton_to_coco(keypoint_skeleton)
    return [{**c, "keypoints": list(names), "skeleton": skeleton}
            for c in label_map.coco_categories()]


def coco_ground_truth_dict(
    examples: Iterable[Mapping[str, Any]],
    label_map: LabelMap,
    keypoint_names: Sequence[str] | None = None,
    keypoint_skeleton: Sequence[int] = (),
) -> dict:
    """COCO annotation-file dict ({"images", "annotations", "categories"}) from examples.

    Args:
        examples: ground-truth dicts with "image" uint8 [H, W, 3] (only its shape is used;
            "height"/"width" keys may replace it), "boxes" float [N, 4] (y1, x1, y2, x2),
            "class_ids" int [N] in 1..K, "masks" uint8 [N, H, W] (optional: without masks the
            box becomes the segmentation, so "segm" AP then equals box AP), "is_crowd" bool [N]
            (optional, default False), "image_id" int (unique), and optionally "keypoints"
            float [N, K, 3] (y, x, v) in continuous pixels (see the module docstring). When
            any example carries keypoints, every example with instances must.
        label_map: maps class ids to dataset category ids and names.
        keypoint_names: the K keypoint names written into each category (COCO's
            categories[i]["keypoints"]); None gives "kp0", "kp1", ... Used only when the
            examples carry keypoints.
        keypoint_skeleton: flat 0-based index pairs (a0, b0, a1, b1, ...), written as COCO's
            1-based [[a + 1, b + 1], ...]; ignored when keypoint_names is None.

    Returns:
        A dict in COCO annotation-file format. Annotation ids start at 1 because COCOeval
        treats a matched id of 0 as "unmatched". With keypoints, annotations also get
        "keypoints" (flat x, y, v in COCO's integer-index convention, 0, 0, 0 where v == 0)
        and "num_keypoints"; their "area" (the mask's pixel count, else the box area) is
        OKS's object scale.
    """
    images, annotations = [], []
    seen_ids: set[int] = set()
    next_ann_id = 1
    num_keypoints = None  # K, once an example with keypoints is seen
    without_keypoints = []  # examples with instances but no keypoints
    for index, ex in enumerate(examples):
        if "image_id" not in ex:
            raise ValueError(f"ground-truth example #{index} has no 'image_id'")
        image_id = int(ex["image_id"])
        where = f"ground-truth example #{index} (image_id {image_id})"
        if image_id in seen_ids:
            raise ValueError(f"{where}: image_id is used by an earlier example")
        seen_ids.add(image_id)
        if "image" in ex and ex["image"] is not None:
            height, width = (int(s) for s in np.shape(ex["image"])[:2])
        elif "height" in ex and "width" in ex:
            height, width = int(ex["height"]), int(ex["width"])
        else:
            raise ValueError(f"{where}: needs 'image' or 'height' and 'width'")
        image_entry = {"id": image_id, "height": height, "width": width}
        if "file_name" in ex:
            image_entry["file_name"] = str(ex["file_name"])
        images.append(image_entry)

        boxes = np.asarray(ex["boxes"], dtype=np.float64).reshape(-1, 4)
        class_ids = np.asarray(ex["class_ids"], dtype=np.int64).reshape(-1)
        n = boxes.shape[0]
        if class_ids.shape[0] != n:
            raise ValueError(f"{where}: {n} boxes but {class_ids.shape[0]} class ids")
        is_crowd = np.asarray(ex.get("is_crowd", np.zeros([n], bool)), dtype=bool).reshape(-1)
        if is_crowd.shape[0] != n:
            raise ValueError(f"{where}: {n} boxes but {is_crowd.shape[0]} is_crowd flags")
        masks = ex.get("masks")
        if masks is not None:
            masks = np.asarray(masks)
            if masks.shape != (n, height, width):
                raise ValueError(
                    f"{where}: masks have shape {masks.shape}, expected {(n, height, width)}"
                )
            rles = _encode_masks(masks)
            areas = [float(a) for a in mask_util.area(rles)] if rles else []
        keypoints = None
        # An image without instances may carry keypoints of any empty shape, e.g. [0].
        if ex.get("keypoints") is not None and (n or np.ndim(ex["keypoints"]) == 3):
            keypoints, labelled = _ground_truth_keypoints(ex["keypoints"], n, where)
            k = keypoints.shape[1] // 3
            if num_keypoints not in (None, k):
                raise ValueError(f"{where}: keypoints are [{n}, {k}, 3], expected "
                                 f"[{n}, {num_keypoints}, 3] like the earlier examples")
            num_keypoints = k
        elif n:
            without_keypoints.append(where)
        xywh = _yxyx_to_xywh(boxes)

        for i in range(n):
            x, y, w, h = (float(v) for v in xywh[i])
            if masks is not None:
                segmentation: Any = rles[i]
                area = areas[i]
            else:
                segmentation = [[x, y, x + w, y, x + w, y + h, x, y + h]]
                area = w * h
            annotation = {
                "id": next_ann_id,
                "image_id": image_id,
                "category_id": label_map.dataset_id(int(class_ids[i])),
                "bbox": [x, y, w, h],
                "area": area,
                "iscrowd": int(is_crowd[i]),
                "segmentation": segmentation,
            }
            if keypoints is not None:
                annotation["keypoints"] = [float(c) for c in keypoints[i]]
                annotation["num_keypoints"] = int(labelled[i])
            annotations.append(annotation)
            next_ann_id += 1
    if num_keypoints is None:
        categories = label_map.coco_categories()
    else:
        if without_keypoints:
            # COCOeval would fail on the first annotation without "keypoints"; name them.
            raise ValueError(f"{', '.join(without_keypoints[:5])}: no 'keypoints', but other "
                             f"examples carry [N, {num_keypoints}, 3] keypoints; expected "
                             "keypoints on every example with instances")
        categories = _keypoint_categories(label_map, num_keypoints, keypoint_names,
                                          keypoint_skeleton)
    return {
        "info": {"description": "mrcnn_tf ground truth"},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def _coco_from_dict(dataset: dict) -> COCO:
    """In-memory COCO object; pycocotools' index-building chatter is silenced."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def build_coco_ground_truth(
    examples: Iterable[Mapping[str, Any]],
    label_map: LabelMap,
    keypoint_names: Sequence[str] | None = None,
    keypoint_skeleton: Sequence[int] = (),
) -> COCO:
    """In-memory `pycocotools.coco.COCO` ground truth; see `coco_ground_truth_dict` for input."""
    return _coco_from_dict(
        coco_ground_truth_dict(examples, label_map, keypoint_names, keypoint_skeleton))


def write_coco_json(
    examples: Iterable[Mapping[str, Any]],
    label_map: LabelMap,
    path: str | os.PathLike,
    keypoint_names: Sequence[str] | None = None,
    keypoint_skeleton: Sequence[int] = (),
) -> None:
    """Writes the ground truth of `examples` as a COCO annotations file, atomically; see
    `coco_ground_truth_dict` for the arguments."""
    write_json_atomic(
        path, coco_ground_truth_dict(examples, label_map, keypoint_names, keypoint_skeleton))


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
        rles = _encode_masks(masks)
    keypoints = None
    if prediction.get("keypoints") is not None:
        keypoints = _keypoints_to_coco(prediction["keypoints"], d,
                                       f"prediction for image {image_id}", "score")
    xywh = _yxyx_to_xywh(boxes)
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


def evaluate_coco(
    coco_gt: COCO,
    results: Sequence[Mapping[str, Any]] | str | os.PathLike,
    iou_types: Sequence[str] = ("bbox", "segm"),
    print_summary: bool = True,
    image_ids: Sequence[int] | None = None,
    oks_sigmas: Sequence[float] | None = None,
) -> dict:
    """Runs pycocotools' COCOeval for each IoU type and returns the metrics as a flat dict.

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
        ValueError: an unknown iou type, results for unknown images or lacking the scored
            field, or (for "keypoints") see `_keypoint_setup`.
    """
    iou_types = tuple(iou_types)
    for t in iou_types:
        if t not in SUPPORTED_IOU_TYPES:
            raise ValueError(f"unsupported iou type {t!r}; expected one of {SUPPORTED_IOU_TYPES}")
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
            coco_eval = COCOeval(coco_gt, coco_dt, iouType=t)
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
    return metrics
