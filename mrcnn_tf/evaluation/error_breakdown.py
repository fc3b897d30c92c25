"""Where a detector's AP50 goes: TIDE's error categories (Bolya et al., 2020) and what fixing
each with an oracle would add.

Detections are matched to ground truth exactly as pycocotools' COCOeval does at IoU 0.5
(per image and category, in score order, the best unmatched ground truth wins, crowd regions
absorb detections, at most `max_dets` per image and category, area "all"), so the AP50
computed here before any fix is COCOeval's AP50 (tests check it to 1e-9); the AP the tools
report still comes from COCOeval. Every detection COCOeval counts as a false positive then
falls in the first TIDE category it fits, tried in TIDE's order, against the image's
non-crowd ground truth (fg = 0.5, bg = 0.1):

  localization    same-class IoU in [bg, fg]: right class, box or mask not good enough
  classification  IoU >= fg with a ground truth of another class
  duplicate       same-class IoU >= fg with a ground truth another detection matched
  background      IoU <= bg with every ground truth
  both            what is left: wrong class and IoU in (bg, fg) to it
and a non-crowd ground truth no detection matched is "missed" unless a localization or
classification error points at it (fixing that error recovers it).

The oracle fixes, as TIDE defines them, one type at a time:
  localization, classification: the highest-scored such error on an unmatched ground truth
    becomes its true positive (in that ground truth's class); the others are dropped;
  duplicate, background, both: the detections are dropped;
  missed: the ground truth is removed from the count.
ΔAP of a type is AP50 with that type fixed minus AP50, floored at 0. "false_positive" (drop
every false positive) and "false_negative" (remove every unmatched ground truth) are TIDE's two
special ΔAPs. Fixing all six types gives AP 1 (every remaining ground truth found, nothing
else). Categories count as COCOeval counts them: those with non-crowd ground truth.

Where this follows COCOeval rather than TIDE's own code (tidecv 1.0.1, which needs matplotlib,
seaborn and pandas): recall is read at COCOeval's np.linspace points rather than x / 100 (a
few points differ in the last bit, which moves a precision step), detections on images
without ground truth are background errors (tidecv skips those images), crowd regions are
COCOeval's, and max_dets counts per category. On random boxes where these agree (no crowd,
ground truth in every image) and with recall read at x / 100, the counts equal tidecv's and
all eight ΔAPs agree to 1e-13 AP points (checked against tidecv by hand, 3 seeds).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils

ERROR_TYPES = ("classification", "localization", "both", "duplicate", "background", "missed")
SPECIAL_TYPES = ("false_positive", "false_negative")
# Per-detection outcome codes; errors are 0..4 in ERROR_TYPES order ("missed" is ground truth).
TRUE_POSITIVE, CROWD, NOT_SCORED = 10, 11, 12
_REMOVED_BY_FIX = ("both", "duplicate", "background")
# COCOeval's 101 recall points.
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def _geometry(annotations: Sequence[Mapping[str, Any]], iou_type: str, coco_gt=None) -> list:
    """What pycocotools.mask.iou compares: xywh boxes, or RLE masks (ground truth polygons are
    turned into RLE by `coco_gt.annToRLE`, as COCOeval does)."""
    if iou_type == "bbox":
        return [list(a["bbox"]) for a in annotations]
    if coco_gt is not None:
        return [coco_gt.annToRLE(a) for a in annotations]
    return [a["segmentation"] for a in annotations]


def _iou(detections: list, truths: list, crowd: Sequence[int]) -> np.ndarray:
    """float64 [D, G] IoU (against a crowd region: the detection's share inside it)."""
    if not detections or not truths:
        return np.zeros((len(detections), len(truths)))
    return np.asarray(mask_utils.iou(detections, truths, list(crowd)), np.float64).reshape(
        len(detections), len(truths))


def _match_one_category(iou: np.ndarray, crowd: np.ndarray, threshold: float):
    """COCOeval.evaluateImg's greedy matching at one IoU threshold.

    Args:
      iou: [D, G] with the detections in score order and the ground truth in its order.
      crowd: bool [G].
    Returns:
      (int [D] matched ground truth index or -1, bool [D] matched a crowd region).
    """
    order = np.argsort(crowd, kind="mergesort")  # crowd regions last, as COCOeval sorts them
    taken = np.zeros(len(order), bool)
    match = np.full(iou.shape[0], -1)
    for d in range(iou.shape[0]):
        best, m = min(threshold, 1 - 1e-10), -1
        for j, g in enumerate(order):
            if taken[j] and not crowd[g]:
                continue
            if m > -1 and not crowd[order[m]] and crowd[g]:
                break
            if iou[d, g] < best:
                continue
            best, m = iou[d, g], j
        if m > -1:
            taken[m] = True
            match[d] = order[m]
    return match, np.array([m > -1 and bool(crowd[m]) for m in match], bool)


def precision_at_recall(scores, order_keys, true_positive, num_truth: int) -> np.ndarray:
    """COCOeval.accumulate's interpolated precision of one category at the 101 recall points.

    Args:
      scores, order_keys: float [N] detection scores and their places in COCOeval's
        concatenation (ties in score keep that order).
      true_positive: bool [N].
      num_truth: the category's non-crowd ground truth count (> 0).
    Returns:
      float64 [101].
    """
    order = np.lexsort((np.asarray(order_keys), -np.asarray(scores, np.float64)))
    tp = np.asarray(true_positive, bool)[order]
    tp_sum = np.cumsum(tp).astype(np.float64)
    fp_sum = np.cumsum(~tp).astype(np.float64)
    recall = tp_sum / num_truth
    precision = tp_sum / (fp_sum + tp_sum + np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the envelope, from the right
    at = np.searchsorted(recall, RECALL_POINTS, side="left")
    out = np.zeros(RECALL_POINTS.size)
    reached = at < tp.size
    out[reached] = precision[at[reached]]
    return out


class Breakdown:
    """TIDE's errors of one evaluated type and the APs with each fixed (see the module doc).

    Attributes:
      iou_type: "bbox" or "segm".
      cat_ids: the K categories scored, sorted.
      outcome: int [D] per detection given to `analyze` (in its order): an index into
        ERROR_TYPES, or TRUE_POSITIVE, CROWD (matched a crowd region: not counted), NOT_SCORED
        (past max_dets, or an image or category not evaluated).
      target_id: int [D]: the ground truth annotation id a localization or classification
        error points at (-1 for the others).
      recovers: bool [D]: the error the oracle turns into its target's true positive (the
        highest-scored one on a target no detection matched).
      missed: ids of the ground truth annotations counted as missed.
      images: per image evaluated, {"image_id", "tp", "fp", "fn", "f1", "missed_ids"} counting
        only the detections scoring >= score_threshold (what is drawn), matched at fg IoU as
        above; "missed_ids" are the ground truth annotations none of them found.
    """

    def __init__(self, iou_type, cat_ids, outcome, category, score, order_key, target,
                 target_id, recovers, truth_count, missed_per_category,
                 unmatched_per_category, missed, images):
        self.iou_type = iou_type
        self.cat_ids = list(cat_ids)
        self.outcome = outcome
        self._category, self._score, self._order_key = category, score, order_key
        self._target = target
        self.target_id, self.recovers = target_id, recovers
        self._truth_count = truth_count
        self._missed_per_category = missed_per_category
        self._unmatched_per_category = unmatched_per_category
        self.missed = missed
        self.images = images

    def counts(self) -> dict[str, int]:
        """Detections (ground truth for "missed") in each error type."""
        out = {t: int(np.sum(self.outcome == i)) for i, t in enumerate(ERROR_TYPES[:-1])}
        out["missed"] = len(self.missed)
        return out

    def ap(self, fixed: Iterable[str] = ()) -> float:
        """AP at fg IoU (mean over categories with ground truth) with the error types in
        `fixed` (ERROR_TYPES and SPECIAL_TYPES) fixed by the oracle; () is COCOeval's AP50."""
        fixed = set(fixed)
        unknown = fixed - set(ERROR_TYPES) - set(SPECIAL_TYPES)
        if unknown:
            raise ValueError(f"Breakdown.ap: unknown error types {sorted(unknown)}; expected "
                             f"some of {ERROR_TYPES + SPECIAL_TYPES}")
        scored = (self.outcome != CROWD) & (self.outcome != NOT_SCORED)
        keep = scored.copy()
        category = self._category.copy()
        true_positive = self.outcome == TRUE_POSITIVE
        for i, name in enumerate(ERROR_TYPES[:-1]):
            if name not in fixed:
                continue
            is_type = self.outcome == i
            if name in _REMOVED_BY_FIX:
                keep &= ~is_type
            else:  # the best error on a ground truth becomes its true positive
                keep &= ~is_type | self.recovers
                promoted = is_type & self.recovers
                true_positive = true_positive | promoted
                category[promoted] = self._target[promoted]
        if "false_positive" in fixed:
            keep &= true_positive
        truth = self._truth_count.copy()
        if "missed" in fixed:
            truth -= self._missed_per_category
        if "false_negative" in fixed:
            truth = self._truth_count - self._unmatched_per_category
        per_point = []
        for k in range(len(self.cat_ids)):
            if truth[k] <= 0:
                continue
            rows = keep & (category == k)
            per_point.append(precision_at_recall(self._score[rows], self._order_key[rows],
                                                 true_positive[rows], int(truth[k])))
        if not per_point:
            return 0.0
        # COCOeval's mean over the [R, K] block, in its order.
        return float(np.mean(np.stack(per_point, axis=1)))

    def delta_ap(self) -> dict[str, float]:
        """ΔAP50 of fixing each type alone (ERROR_TYPES, then SPECIAL_TYPES), floored at 0."""
        base = self.ap()
        return {t: max(self.ap([t]) - base, 0.0) for t in ERROR_TYPES + SPECIAL_TYPES}

    def summary(self) -> dict:
        """The numbers for a JSON file: AP50, AP50 with all six types fixed, ΔAP and counts."""
        return {"ap50": self.ap(), "ap50_all_fixed": self.ap(ERROR_TYPES),
                "delta_ap50": self.delta_ap(), "counts": self.counts()}


def analyze(coco_gt, detections: Sequence[Mapping[str, Any]], iou_type: str,
            image_ids: Sequence[int] | None = None, cat_ids: Sequence[int] | None = None,
            max_dets: int = 100, fg_iou: float = 0.5, bg_iou: float = 0.1,
            score_threshold: float = 0.5) -> Breakdown:
    """TIDE's error breakdown of `detections` against `coco_gt`.

    Args:
      coco_gt: pycocotools COCO ground truth.
      detections: COCO results (dicts with "image_id", "category_id", "score" and "bbox"
        [x, y, w, h] or "segmentation" RLE), e.g. `COCOeval.cocoDt.dataset["annotations"]`.
      iou_type: "bbox" or "segm".
      image_ids, cat_ids: the images and categories evaluated (COCOeval.params.imgIds and
        catIds); None: all of `coco_gt`'s.
      max_dets: detections kept per image and category (COCOeval's largest maxDets).
      fg_iou, bg_iou: TIDE's foreground and background IoU thresholds.
      score_threshold: the detections counted in `Breakdown.images`.
    Raises:
      ValueError: another iou type, or thresholds out of order.
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"error breakdown: iou_type {iou_type!r}; expected 'bbox' or 'segm' "
                         "(TIDE defines its errors by box or mask IoU)")
    if not 0 < bg_iou < fg_iou <= 1:
        raise ValueError(f"error breakdown: expected 0 < bg_iou ({bg_iou}) < fg_iou ({fg_iou})"
                         " <= 1")
    image_ids = sorted({int(i) for i in (coco_gt.getImgIds() if image_ids is None
                                         else image_ids)})
    cat_ids = sorted(int(c) for c in (coco_gt.getCatIds() if cat_ids is None else cat_ids))
    cat_index = {c: k for k, c in enumerate(cat_ids)}
    wanted = set(image_ids)
    grouped = defaultdict(lambda: defaultdict(list))  # image -> category index -> detections
    for i, d in enumerate(detections):
        if int(d["image_id"]) in wanted and int(d["category_id"]) in cat_index:
            grouped[int(d["image_id"])][cat_index[int(d["category_id"])]].append(i)

    n = len(detections)
    outcome = np.full(n, NOT_SCORED)
    category = np.zeros(n, np.int64)
    score = np.array([float(d["score"]) for d in detections], np.float64)
    order_key = np.zeros(n, np.int64)
    target = np.full(n, -1)  # localization/classification: the ground truth's category index
    target_id = np.full(n, -1)
    recovers = np.zeros(n, bool)
    truth_count = np.zeros(len(cat_ids), np.int64)
    missed_per_category = np.zeros(len(cat_ids), np.int64)
    unmatched_per_category = np.zeros(len(cat_ids), np.int64)
    missed, images = [], []
    next_key = 0
    for image_id in image_ids:
        truths = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=[image_id], catIds=cat_ids))
        truth_cat = np.array([cat_index[int(t["category_id"])] for t in truths], np.int64)
        crowd = np.array([bool(t.get("iscrowd", 0)) for t in truths], bool)
        # Per category: its detections in score order (stable, as COCOeval sorts), cut to
        # max_dets; their concatenation, category by category, is this image's detection list.
        kept = []
        for k, mine in sorted(grouped.pop(image_id, {}).items()):
            mine = np.asarray(mine, np.int64)
            kept.append(mine[np.argsort(-score[mine], kind="mergesort")[:max_dets]])
            category[kept[-1]] = k
        kept = np.concatenate(kept) if kept else np.zeros(0, np.int64)
        # The order COCOeval concatenates a category's detections in: image by image.
        order_key[kept] = next_key + np.arange(kept.size)
        next_key += kept.size
        iou = _iou(_geometry([detections[i] for i in kept], iou_type),
                   _geometry(truths, iou_type, coco_gt), crowd.astype(int))
        matched_by = np.full(len(truths), -1)  # the detection (row of iou) matching each truth
        for k in range(len(cat_ids)):
            rows = np.flatnonzero(category[kept] == k)
            cols = np.flatnonzero(truth_cat == k)
            truth_count[k] += int(np.sum(~crowd[cols]))
            if rows.size == 0:
                continue
            match, on_crowd = _match_one_category(iou[np.ix_(rows, cols)], crowd[cols], fg_iou)
            for r, m, c in zip(rows, match, on_crowd):
                if m < 0:
                    continue
                outcome[kept[r]] = CROWD if c else TRUE_POSITIVE
                if not c:
                    matched_by[cols[m]] = r
        solid = np.flatnonzero(~crowd)
        # TIDE's pass over the image's false positives, by score (its order decides which
        # error on a truth is the best one).
        by_score = np.lexsort((order_key[kept], -score[kept]))
        rows = by_score[outcome[kept[by_score]] == NOT_SCORED]
        kinds, aims = _classify(iou[np.ix_(rows, solid)],
                                category[kept[rows]][:, None] == truth_cat[solid][None],
                                matched_by[solid] >= 0, fg_iou, bg_iou)
        outcome[kept[rows]] = kinds
        usable_by = {}  # unmatched truth -> the detection of the best error pointing at it
        for r, aim in zip(rows[aims >= 0], aims[aims >= 0]):
            i, g = kept[r], solid[aim]
            target[i] = truth_cat[g]
            target_id[i] = int(truths[g]["id"])
            if matched_by[g] < 0 and g not in usable_by:
                usable_by[g] = i  # the first in score order is the highest scored
        recovers[list(usable_by.values())] = True
        for g in solid:
            if matched_by[g] < 0:
                unmatched_per_category[truth_cat[g]] += 1
                if g not in usable_by:
                    missed.append(int(truths[g]["id"]))
                    missed_per_category[truth_cat[g]] += 1
        images.append(_image_counts(image_id, kept, outcome, score, matched_by[solid],
                                    [int(truths[g]["id"]) for g in solid], score_threshold))
    return Breakdown(iou_type, cat_ids, outcome, category, score, order_key, target, target_id,
                     recovers, truth_count, missed_per_category, unmatched_per_category, missed,
                     images)


def _classify(iou: np.ndarray, same_class: np.ndarray, matched: np.ndarray, fg: float,
              bg: float):
    """TIDE's category of false positives, trying its types in its order.

    Args:
      iou: [F, G] IoU of F false positives with the image's G non-crowd truths.
      same_class: bool [F, G]; matched: bool [G], truths a detection matched.
    Returns:
      (int [F] index into ERROR_TYPES, int [F] the truth a localization or classification
      error points at, else -1).
    """
    f = iou.shape[0]
    if iou.shape[1] == 0:
        return np.full(f, ERROR_TYPES.index("background")), np.full(f, -1)
    rows = np.arange(f)
    same = np.where(same_class, iou, 0.0)
    other = np.where(same_class, 0.0, iou)
    same_best, other_best = np.argmax(same, axis=1), np.argmax(other, axis=1)
    localization = (bg <= same[rows, same_best]) & (same[rows, same_best] <= fg)
    classification = other[rows, other_best] >= fg
    duplicate = np.max(np.where(matched[None], same, 0.0), axis=1) >= fg
    background = np.max(iou, axis=1) <= bg
    kinds = np.select([localization, classification, duplicate, background],
                      [ERROR_TYPES.index(t) for t in ("localization", "classification",
                                                      "duplicate", "background")],
                      ERROR_TYPES.index("both"))
    aims = np.where(localization, same_best, np.where(classification, other_best, -1))
    return kinds, aims


def _image_counts(image_id, kept, outcome, score, matched_by, truth_ids, threshold) -> dict:
    """One image's true and false positives and misses among detections >= threshold, and
    the ids of the (non-crowd) ground truth they miss.

    COCOeval matches in score order, so the matches of the detections above a threshold are
    the same as in the full matching; a truth matched only below it counts as missed here.
    """
    shown = kept[score[kept] >= threshold]
    tp = int(np.sum(outcome[shown] == TRUE_POSITIVE))
    fp = int(np.sum(outcome[shown] < len(ERROR_TYPES)))
    found = np.array([m >= 0 and score[kept[m]] >= threshold for m in matched_by], bool)
    fn = int(np.sum(~found))
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return {"image_id": int(image_id), "tp": tp, "fp": fp, "fn": fn, "f1": f1,
            "missed_ids": [t for t, f in zip(truth_ids, found) if not f]}
