"""The checks of COCO annotations that need no pixels, and the fields COCOeval needs.

Structural problems of an annotation (malformed or negative bbox, short polygon, malformed
RLE, malformed keypoints) are found here, when the JSON is loaded; problems that need the
pixels are found when the image is loaded (`coco.CocoDataset.load_example`).

Choices, for what real exports contain:
  * Segmentation: polygons (one or several parts; a flat [x1, y1, ...] list is one polygon),
    uncompressed RLE (counts list) and compressed RLE (counts string). An annotation without
    a segmentation (missing, null or [], as CVAT writes rectangles) gets its box as a polygon,
    rasterized like pycocotools rasterizes boxes, so its mask is the box and COCOeval "segm"
    works.
  * Polygon parts with fewer than 3 points (or an odd number of coordinates) are dropped (a
    FIX_POLYGON_PART problem); the annotation is skipped only when no valid part remains.
    Dropping the whole object would leave it unlabelled in the image, teaching the model it is
    background.
  * Fields COCOeval needs but exports sometimes omit are filled in: `iscrowd` (0), `bbox` and
    `area` (from the mask; a box-only annotation's area is its box area), and for keypoint
    categories `keypoints` (3K zeros) and `num_keypoints` (the labelled ones).
"""

from __future__ import annotations

from typing import Any, Callable, List, Mapping, Optional, Sequence, Set

from absl import logging
from pycocotools import mask as mask_util

from mrcnn_tf.data.coco_json import as_int, is_number
from mrcnn_tf.data.coco_problems import (ANN_BAD_BBOX, ANN_BAD_KEYPOINTS, ANN_BAD_SEGMENTATION,
                                         ANN_EMPTY_MASK, ANN_NEGATIVE_BOX, ANN_NO_GEOMETRY,
                                         ANN_RLE_SIZE, ANN_SHORT_POLYGON, ANN_ZERO_BOX,
                                         FIX_POLYGON_PART, BadSampleError, ProblemLog)


def box_polygon(x: float, y: float, w: float, h: float) -> List[float]:
    """The COCO polygon [x1, y1, ...] of the box [x, y, w, h]."""
    # The corner order pycocotools uses when it rasterizes a box, so a box-only annotation's
    # polygon gives exactly the mask of the box.
    return [x, y, x, y + h, x + w, y + h, x + w, y]


# How far outside the image (in image sizes) a polygon's coordinates may reach.
_POLYGON_REACH = 100


def annotation_rle(ann: Mapping[str, Any], height: int, width: int) -> dict:
    """One compressed RLE for a checked annotation's segmentation (all parts merged)."""
    segmentation = ann["segmentation"]
    if isinstance(segmentation, list):
        return mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
    if isinstance(segmentation["counts"], list):
        return mask_util.frPyObjects(segmentation, height, width)
    return {"size": [height, width], "counts": segmentation["counts"]}


def compressed_rle_counts(text: str) -> Optional[List[int]]:
    """The runs of a COCO compressed RLE string (pycocotools' rleFrString, read in Python), or
    None when the string is not one: a character outside ASCII, a number cut short at the end,
    or a run that is negative or does not fit 32 bits.

    Each run is stored as 5-bit groups (character - 48; bit 0x20: another group follows; bit
    0x10 of the last group: negative), and from the third run on as the difference to the run
    two before it.
    """
    if not text.isascii():
        return None
    runs: List[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                return None
            code = ord(text[position]) - 48
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        if not 0 <= value < 2 ** 32:
            return None
        runs.append(value)
    return runs


def has_keypoints(ann: Mapping[str, Any], keypoint_categories: Set[int]) -> bool:
    """Whether a checked annotation's keypoints train (otherwise its row is all zero)."""
    return (ann["category_id"] in keypoint_categories and not ann["iscrowd"]
            and ann["num_keypoints"] != 0)


class AnnotationChecker:
    """Checks (and completes) the annotations of one annotations file.

    Args:
      images: image id -> its JSON entry (with a valid width and height).
      keypoint_names: the K keypoint names of the keypoint categories (empty when none).
      keypoint_categories: ids of the categories that declare keypoints.
      problems: where skipped annotations are reported.
      describe: annotation -> where it is, the start of its messages.
    """

    def __init__(self, images: Mapping[int, dict], keypoint_names: Sequence[str],
                 keypoint_categories: Set[int], problems: ProblemLog,
                 describe: Callable[[Mapping[str, Any]], str]):
        self._images = images
        self.keypoint_names = tuple(keypoint_names)
        self.num_keypoints = len(self.keypoint_names)
        self._keypoint_categories = keypoint_categories
        self._problems = problems
        self._ann_where = describe

    def check_all(self, annotations: List[dict], selected: Set[int]) -> List[dict]:
        """The annotations of label-map categories that pass the checks that need no pixels.

        Missing COCOeval fields are filled in place (see module doc).

        Args:
          annotations: parsed annotations (`coco_json.parse_annotations`).
          selected: the label map's dataset category ids; other categories are ignored.
        """
        kept = []
        ignored = box_only = 0
        for ann in annotations:
            if ann["category_id"] not in selected:
                ignored += 1
                continue
            try:
                had_segmentation = self.check(ann)
            except BadSampleError as e:
                self._problems.problem(e.reason, str(e), image_id=e.image_id,
                                       annotation_id=e.annotation_id)
                continue
            box_only += not had_segmentation
            kept.append(ann)
        if ignored:
            logging.info("%s: %d annotations of categories outside the label map are ignored",
                         self._problems.name, ignored)
        if box_only:
            logging.info("%s: %d annotations have no segmentation; their boxes are used as "
                         "masks", self._problems.name, box_only)
        return kept

    def check(self, ann: dict) -> bool:
        """Checks (and completes) one annotation; returns whether it has a segmentation.

        Raises:
          BadSampleError: for an annotation to skip. Polygon parts that are too short are
            dropped here with a FIX_POLYGON_PART problem (raised only when strict).
        """
        image = self._images[ann["image_id"]]
        height, width = image["height"], image["width"]

        def bad(reason: str, what: str) -> BadSampleError:
            return BadSampleError(f"{self._ann_where(ann)}: {what}; annotation skipped", reason,
                                  image_id=ann["image_id"], annotation_id=ann["id"])

        bbox = ann.get("bbox")
        if bbox is not None:
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(is_number, bbox))):
                raise bad(ANN_BAD_BBOX, f"bbox {str(bbox)[:80]}; expected 4 finite numbers "
                          "[x, y, width, height]")
            if bbox[2] < 0 or bbox[3] < 0:
                raise bad(ANN_NEGATIVE_BOX, f"bbox {bbox} has a negative width or height; "
                          "expected [x, y, width, height] with width, height >= 0")
            if bbox[2] == 0 or bbox[3] == 0:
                raise bad(ANN_ZERO_BOX, f"bbox {bbox} has zero area; expected width and "
                          "height > 0")
            # A box without a segmentation is rasterized as the mask (see _POLYGON_REACH).
            far = max(abs(float(bbox[0])), abs(float(bbox[1])),
                      abs(float(bbox[0]) + float(bbox[2])), abs(float(bbox[1]) + float(bbox[3])))
            if far > _POLYGON_REACH * max(height, width):
                raise bad(ANN_BAD_BBOX, f"bbox {bbox} reaches {far:g}, far outside the "
                          f"{width}x{height} image; expected it within {_POLYGON_REACH} image "
                          "sizes of it")

        segmentation = ann.get("segmentation")
        has_segmentation = segmentation not in (None, [], {})
        if not has_segmentation:
            if bbox is None:
                raise bad(ANN_NO_GEOMETRY, "no segmentation and no bbox; expected at least one")
            ann["segmentation"] = [box_polygon(*bbox)]
        elif isinstance(segmentation, list):
            if all(is_number(v) for v in segmentation):
                # A flat [x1, y1, x2, y2, ...] list (some converters): one polygon.
                segmentation = [segmentation]
            parts = []
            for k, part in enumerate(segmentation):
                if not (isinstance(part, list) and all(map(is_number, part))):
                    raise bad(ANN_BAD_SEGMENTATION, f"polygon part {k} is {str(part)[:60]}; "
                              "expected a list of numbers [x1, y1, x2, y2, ...]")
                # pycocotools rasterizes in int32 at 5x: a coordinate near 1e9 crashes it.
                far = max((abs(float(v)) for v in part), default=0.0)
                if far > _POLYGON_REACH * max(height, width):
                    raise bad(ANN_BAD_SEGMENTATION, f"polygon part {k} has a coordinate {far:g}, "
                              f"far outside the {width}x{height} image; expected coordinates "
                              f"within {_POLYGON_REACH} image sizes of it")
                if len(part) < 6 or len(part) % 2:
                    if len(segmentation) > 1:
                        self._problems.problem(
                            FIX_POLYGON_PART, f"{self._ann_where(ann)}: polygon part {k} has "
                            f"{len(part)} numbers; expected an even number >= 6 (3 points); "
                            "that part is dropped",
                            image_id=ann["image_id"], annotation_id=ann["id"])
                    continue
                parts.append(part)
            if not parts:
                sizes = [len(p) for p in segmentation]
                raise bad(ANN_SHORT_POLYGON, f"polygon parts with {sizes} numbers; expected an "
                          "even number >= 6 (3 points)")
            ann["segmentation"] = parts
        elif isinstance(segmentation, dict):
            size = segmentation.get("size")
            counts = segmentation.get("counts")
            if not (isinstance(size, list) and len(size) == 2
                    and all(as_int(s) is not None and s >= 0 for s in size)):
                raise bad(ANN_BAD_SEGMENTATION, f"RLE size {size!r}; expected [height, width]")
            if [int(s) for s in size] != [height, width]:
                raise bad(ANN_RLE_SIZE, f"RLE size {size} (height, width) differs from the "
                          f"image's {[height, width]}; expected the image size")
            if isinstance(counts, list):
                # pycocotools does not check that runs cover exactly H * W pixels.
                if not all(as_int(c) is not None and c >= 0 for c in counts):
                    raise bad(ANN_BAD_SEGMENTATION, "uncompressed RLE counts must be "
                              "non-negative integers")
                if sum(counts) != height * width:
                    raise bad(ANN_BAD_SEGMENTATION, f"uncompressed RLE counts sum to "
                              f"{sum(counts)}; expected height * width = {height * width}")
            elif isinstance(counts, str):
                # pycocotools' decoder writes every run it reads without a bounds check: runs
                # past H * W (or negative ones) would write outside the mask's buffer.
                runs = compressed_rle_counts(counts)
                if runs is None or sum(runs) != height * width:
                    total = "unreadable" if runs is None else f"summing to {sum(runs)}"
                    raise bad(ANN_BAD_SEGMENTATION, f"compressed RLE counts {total}; expected "
                              f"COCO's run-length string of runs >= 0 summing to height * "
                              f"width = {height * width}")
            else:
                raise bad(ANN_BAD_SEGMENTATION, f"RLE counts is a {type(counts).__name__}; "
                          "expected a list (uncompressed) or a string (compressed)")
        else:
            raise bad(ANN_BAD_SEGMENTATION, f"segmentation is a {type(segmentation).__name__};"
                      " expected polygons (list of lists) or RLE ({'size', 'counts'})")

        crowd = ann.get("iscrowd", 0)
        ann["iscrowd"] = int(bool(crowd)) if is_number(crowd) or isinstance(crowd, bool) else 0
        if bbox is None or "area" not in ann:
            try:
                rle = annotation_rle(ann, height, width)
            except Exception as e:  # malformed compressed counts string
                raise bad(ANN_BAD_SEGMENTATION, f"pycocotools cannot read the RLE: {e}")
            if bbox is None:
                ann["bbox"] = [float(v) for v in mask_util.toBbox(rle)]
                if ann["bbox"][2] <= 0 or ann["bbox"][3] <= 0:
                    raise bad(ANN_EMPTY_MASK, "the segmentation covers no pixel and there is "
                              "no bbox")
            if "area" not in ann:
                ann["area"] = (float(bbox[2] * bbox[3]) if not has_segmentation
                               else float(mask_util.area(rle)))
        if ann["category_id"] in self._keypoint_categories:
            self._check_keypoints(ann, bad)
        return has_segmentation

    def _check_keypoints(self, ann: dict, bad: Callable[[str, str], BadSampleError]) -> None:
        """Checks (and completes) the keypoints of an annotation of a keypoint category.

        COCOeval's "keypoints" evaluation reads "keypoints" and "num_keypoints" of every
        ground-truth annotation of the category (ignoring those with num_keypoints 0 or
        iscrowd), so both are filled in: a missing list becomes 3K zeros with num_keypoints 0,
        a missing num_keypoints the number of labelled keypoints. A crowd or num_keypoints 0
        annotation never uses its list, so a malformed one is replaced by zeros, not an error.

        Raises:
          BadSampleError: (made by `bad`) for a used list that is not 3K numbers with v in
            {0, 1, 2}.
        """
        k = self.num_keypoints
        values = ann.get("keypoints")
        if values is None:
            ann["keypoints"], ann["num_keypoints"] = [0] * (3 * k), 0
            return
        problem = self._keypoints_problem(values)
        if problem is not None:
            if not (ann["iscrowd"] or ann.get("num_keypoints") == 0):
                raise bad(ANN_BAD_KEYPOINTS, problem)
            ann["keypoints"], values = [0] * (3 * k), [0] * (3 * k)
        if "num_keypoints" not in ann:
            ann["num_keypoints"] = sum(1 for v in values[2::3] if v > 0)

    def _keypoints_problem(self, values: Any) -> Optional[str]:
        """What is wrong with a COCO keypoints list [x1, y1, v1, ...], or None."""
        k = self.num_keypoints
        if not (isinstance(values, list) and len(values) == 3 * k
                and all(map(is_number, values))):
            got = (f"{len(values)} values" if isinstance(values, list)
                   else f"a {type(values).__name__}")
            return (f"keypoints are {got} ({str(values)[:60]}); expected {3 * k} finite "
                    f"numbers [x1, y1, v1, ...] ({k} keypoints of its category)")
        visibility = values[2::3]
        wrong = [j for j, v in enumerate(visibility) if v not in (0, 1, 2)]
        if wrong:
            return (f"keypoint {wrong[0]} ('{self.keypoint_names[wrong[0]]}') has "
                    f"v = {visibility[wrong[0]]!r}; expected 0 (not labelled), 1 (occluded) or "
                    "2 (visible)")
        return None
