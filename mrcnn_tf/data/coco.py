"""COCO-format instance segmentation data: COCO itself and CVAT, labelme, Roboflow exports.

`CocoDataset(annotations_path, images_dir)` reads one annotations JSON and yields examples with
the common structure of `mrcnn_tf.data` (see `mrcnn_tf.data.shapes`):

    image      uint8   [H, W, 3]  RGB, the right way up (EXIF orientation applied)
    boxes      float32 [N, 4]     (y1, x1, y2, x2) pixels = (y, x, y + h, x + w) of the COCO
                                  bbox [x, y, w, h], clipped to the image
    class_ids  int32   [N]        contiguous 1..K (`label_map`)
    masks      uint8   [N, H, W]  0/1, decoded by pycocotools
    is_crowd   bool    [N]        the annotation's `iscrowd`
    image_id   int64   []         the JSON's own image id (any integer, 0 included)
    keypoints  float32 [N, K, 3]  only when a category of the label map declares keypoints
                                  (person_keypoints_*.json): (y, x, v) per instance, see below

Keypoints (`mrcnn_tf.keypoint_spec`): a category may declare "keypoints" (K names) and
"skeleton" (1-based [[a, b], ...] limbs). Every label-map category that declares keypoints must
declare the same names (otherwise `DatasetError`); the dataset's `keypoint_names`,
`keypoint_skeleton` (flat, 0-based; the first such category's) and `num_keypoints` (K, 0 when
none) come from them. An annotation's "keypoints" [x1, y1, v1, ...] are integer pixel indices;
each labelled one (v = 1 occluded, v = 2 visible) becomes (y + 0.5, x + 0.5, v) in continuous
pixels (Detectron2's rule), an unlabelled one (v = 0) (0, 0, 0). Annotations of a category
without keypoints, crowd annotations and annotations without "keypoints" or with "num_keypoints"
0 get all-zero rows. A malformed list (not 3K numbers, v not in {0, 1, 2}) of any other
annotation makes it bad (skipped, below). Images are not filtered by their number of labelled
keypoints (Detectron2's MIN_KEYPOINTS_PER_IMAGE); an image without any trains the other heads
only.

Only the JSON is held in memory; images and masks are decoded one image at a time.

Choices, for what real exports contain:
  * Segmentation: polygons (one or several parts), uncompressed RLE (counts list) and
    compressed RLE (counts string). An annotation without a segmentation (missing, null or [],
    as CVAT writes rectangles) uses its box as its mask, rasterized like pycocotools rasterizes
    boxes; its `coco` ground truth gets the same box as a polygon so COCOeval "segm" works.
  * Polygon parts with fewer than 3 points (or an odd number of coordinates) are dropped (with
    a warning); the annotation is skipped only when no valid part remains. Dropping the whole
    object would leave it unlabelled in the image, teaching the model it is background.
  * Crowd annotations (`iscrowd` 1) are kept with is_crowd True, never dropped silently.
  * Category ids are any integers (0 included) and map to 1..K in increasing id. A category
    literally named "_background_" or "background" (any case) that has no annotations is a
    placeholder some tools write for class 0; it is left out of the label map, with a log
    line. With annotations it is an ordinary class. `category_names` selects categories (in
    that order); annotations of other categories are ignored, as are these placeholders.
  * Image width/height in the JSON must match the decoded, upright image. If they match the
    stored size before a 90-degree EXIF orientation (tools that read the size from the file
    header without applying EXIF, e.g. PIL's `Image.size`), the image is accepted upright and
    its annotations are taken to be upright too (annotation tools show images upright); this
    is logged once per dataset. RLE masks of such an image (whose size is the stored one) are
    dropped with a warning.
  * An empty image is one without a non-crowd annotation (a crowd region alone gives no
    positive training target); `keep_empty_images=False` drops them.

Bad input: structural problems of an annotation (unknown image or category id, malformed or
negative bbox, short polygon, malformed RLE) are found when the JSON is loaded; problems that
need the pixels (unreadable or truncated image, size mismatch, mask or box outside the image,
empty mask) when the image is loaded. Each bad annotation or image is skipped with an absl
warning that names the JSON, the annotation and image ids and the image file, and is counted
once in `skipped` (a bad sample met again in the next epoch is neither re-warned nor
re-counted); `report()` summarizes. With `strict=True` the first problem raises
`BadSampleError`. A file that is not a COCO annotations file raises `DatasetError`.

`coco` (a `pycocotools.coco.COCO`) holds the ground truth COCOeval should score the model on:
the JSON's images (those with a valid size), the label map's categories with their own ids, and
their structurally valid annotations. Fields COCOeval needs but exports sometimes omit are
filled in: `iscrowd` (0), `segmentation` (the box), `bbox` and `area` (from the mask; a box-only
annotation's area is its box area), and for keypoint categories `keypoints` (3K zeros) and
`num_keypoints` (the labelled ones), which COCOeval "keypoints" reads. COCOeval counts a
detection matched to a ground-truth annotation of id 0 as a false positive, so an annotation
id 0 is renumbered to max(id) + 1 in `coco` (logged; messages still call it 0).
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import math
import os
import threading
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from mrcnn_tf.data.images import (SWAPPING_ORIENTATIONS, ImageReadError,
                                  read_image_and_orientation)
from mrcnn_tf.data.validation import validate_example
from mrcnn_tf.labels import LabelMap
from mrcnn_tf.keypoint_spec import keypoints_from_coco, skeleton_from_coco

PathLike = Any  # str or os.PathLike

BACKGROUND_NAMES = ("_background_", "background")

# Reasons counted in `CocoDataset.skipped`, by what they cost.
IMAGE_NO_SIZE = "image without valid width/height"
IMAGE_UNREADABLE = "unreadable image"
IMAGE_SIZE_MISMATCH = "image size differs from JSON"
IMAGE_INVALID = "invalid example"
IMAGE_NO_ANNOTATIONS = "no usable annotations"  # only with keep_empty_images=False
ANN_UNKNOWN_IMAGE = "unknown image_id"
ANN_UNKNOWN_CATEGORY = "unknown category_id"
ANN_BAD_BBOX = "malformed bbox"
ANN_NEGATIVE_BOX = "negative box width/height"
ANN_ZERO_BOX = "zero-area box"
ANN_NO_GEOMETRY = "neither segmentation nor bbox"
ANN_SHORT_POLYGON = "polygon with < 3 points"
ANN_BAD_SEGMENTATION = "malformed segmentation"
ANN_RLE_SIZE = "RLE size differs from image"
ANN_OUTSIDE = "outside the image"
ANN_EMPTY_MASK = "empty mask"
ANN_BAD_KEYPOINTS = "malformed keypoints"
FIX_POLYGON_PART = "polygon part with < 3 points dropped"

IMAGE_REASONS = (IMAGE_NO_SIZE, IMAGE_UNREADABLE, IMAGE_SIZE_MISMATCH, IMAGE_INVALID,
                 IMAGE_NO_ANNOTATIONS)
ANNOTATION_REASONS = (ANN_UNKNOWN_IMAGE, ANN_UNKNOWN_CATEGORY, ANN_BAD_BBOX, ANN_NEGATIVE_BOX,
                      ANN_ZERO_BOX, ANN_NO_GEOMETRY, ANN_SHORT_POLYGON, ANN_BAD_SEGMENTATION,
                      ANN_RLE_SIZE, ANN_OUTSIDE, ANN_EMPTY_MASK, ANN_BAD_KEYPOINTS)
FIX_REASONS = (FIX_POLYGON_PART,)

# Each reason is logged this many times; later occurrences are only counted (a dataset with
# thousands of bad annotations should not bury the training log).
MAX_WARNINGS_PER_REASON = 20


class DatasetError(ValueError):
    """The annotations file or images folder cannot be used at all (one-line message)."""


class BadSampleError(ValueError):
    """One image or annotation is unusable. The message names the JSON, ids and image file.

    Attributes:
      reason: one of the module's IMAGE_*, ANN_* or FIX_* strings (the `skipped` key).
      image_id, annotation_id: what it is about (None where unknown or not applicable).
    """

    def __init__(self, message: str, reason: str, image_id: Optional[int] = None,
                 annotation_id: Optional[int] = None):
        super().__init__(message)
        self.reason = reason
        self.image_id = image_id
        self.annotation_id = annotation_id


def _as_int(value: Any) -> Optional[int]:
    """An integer id from JSON (1 or 1.0), or None (strings, bools, 1.5, null)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _box_polygon(x: float, y: float, w: float, h: float) -> List[float]:
    # The corner order pycocotools uses when it rasterizes a box, so a box-only annotation's
    # polygon gives exactly the mask of the box.
    return [x, y, x, y + h, x + w, y + h, x + w, y]


def example_signature(num_keypoints: int = 0) -> Dict[str, tf.TensorSpec]:
    """`tf.TensorSpec` of one example; H, W and N are dynamic.

    Args:
      num_keypoints: K; when > 0 the signature also has keypoints float32 [N, K, 3].
    """
    signature = {
        "image": tf.TensorSpec([None, None, 3], tf.uint8),
        "boxes": tf.TensorSpec([None, 4], tf.float32),
        "class_ids": tf.TensorSpec([None], tf.int32),
        "masks": tf.TensorSpec([None, None, None], tf.uint8),
        "is_crowd": tf.TensorSpec([None], tf.bool),
        "image_id": tf.TensorSpec([], tf.int64),
    }
    if num_keypoints:
        signature["keypoints"] = tf.TensorSpec([None, int(num_keypoints), 3], tf.float32)
    return signature


class CocoDataset:
    """A COCO-format annotations file plus its images folder (see module doc).

    Attributes:
      label_map: contiguous class ids 1..K <-> dataset category ids and names.
      keypoint_names: names of the K keypoint types the label map's categories declare (a
        tuple, empty when none does); examples then carry keypoints [N, K, 3].
      keypoint_skeleton: flat 0-based limb pairs (a0, b0, a1, b1, ...), empty when none.
      num_keypoints: K = len(keypoint_names), 0 without keypoints.
      coco: pycocotools COCO ground truth, original ids, for COCOeval (see module doc).
      image_ids: ids of the images iterated, in JSON order.
      skipped: Counter reason -> number of distinct images/annotations skipped (or, for
        FIX_* reasons, repaired) so far.
    """

    def __init__(self, annotations_path: PathLike, images_dir: PathLike,
                 category_names: Optional[Sequence[str]] = None,
                 keep_empty_images: bool = True, strict: bool = False):
        """Loads and checks the JSON; images are not touched until iterated.

        Args:
          annotations_path: the COCO annotations JSON.
          images_dir: folder that the images' `file_name` entries are relative to.
          category_names: if given, only these categories, as classes 1..K in this order.
          keep_empty_images: keep images without non-crowd annotations (they teach what is
            background; evaluation needs them too).
          strict: raise BadSampleError at the first bad image or annotation instead of
            skipping it.

        Raises:
          DatasetError: missing path, invalid JSON, not a COCO annotations file (missing
            lists, entries without ids, duplicate ids), unknown or ambiguous category name,
            malformed or differing keypoint names or skeleton of the selected categories.
          BadSampleError: with strict=True, for the first bad annotation or image entry.
        """
        self.annotations_path = os.fspath(annotations_path)
        self.images_dir = os.fspath(images_dir)
        self.keep_empty_images = bool(keep_empty_images)
        self.strict = bool(strict)
        self.skipped: collections.Counter = collections.Counter()
        self._name = os.path.basename(self.annotations_path) or self.annotations_path
        # Bookkeeping for warnings, shared with tf.data's parallel map threads.
        self._lock = threading.Lock()
        self._noted: set = set()
        self._warned: collections.Counter = collections.Counter()
        self._logged_once: set = set()
        self._dropped_image_ids: set = set()  # image entries without a valid size
        self._renumbered_zero: Optional[int] = None  # new id of annotation 0, see _make_coco

        if not tf.io.gfile.isdir(self.images_dir):
            raise DatasetError(f"{self.images_dir}: no such folder; expected the images folder "
                               f"that the file_name entries of {self._name} are relative to")
        data = self._load_json()
        categories = self._parse_categories(data["categories"])
        self._images = self._parse_images(data["images"])
        annotations = self._parse_annotations(data["annotations"], categories)
        self.label_map = self._make_label_map(categories, annotations, category_names)
        self._keypoint_categories = self._parse_keypoint_spec(categories)
        kept = self._check_annotations(annotations)
        self.coco = self._make_coco(data, kept, [categories[i] for i in
                                                 self.label_map.dataset_ids])

        if self.keep_empty_images:
            self.image_ids = list(self._images)
        else:
            self.image_ids = [i for i in self._images
                              if any(not a["iscrowd"] for a in self.coco.imgToAnns.get(i, ()))]
            dropped = len(self._images) - len(self.image_ids)
            if dropped:
                logging.info("%s: %d images without (non-crowd) annotations are not used "
                             "(keep_empty_images=False)", self._name, dropped)
        logging.info("%s: %d images, %d annotations, %d classes", self._name,
                     len(self.image_ids), len(kept), self.label_map.num_classes)

    # -- loading the JSON ----------------------------------------------------------------------

    def _load_json(self) -> dict:
        path = self.annotations_path
        if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
            raise DatasetError(f"{path}: no such file; expected a COCO annotations JSON file")
        try:
            with tf.io.gfile.GFile(path, "rb") as f:
                data = json.loads(f.read())
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column "
                               f"{e.colno}); expected a COCO annotations file") from None
        except (UnicodeDecodeError, OSError, tf.errors.OpError) as e:
            raise DatasetError(f"{path}: cannot read it as JSON text ({e}); expected a COCO "
                               "annotations file") from None
        expected = ("expected a COCO annotations file: a JSON object with 'images', "
                    "'annotations' and 'categories' lists")
        if not isinstance(data, dict):
            raise DatasetError(f"{path}: the JSON is a {type(data).__name__}; {expected}")
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                got = "missing" if key not in data else f"a {type(data[key]).__name__}"
                raise DatasetError(f"{path}: '{key}' is {got}; {expected}")
        return data

    def _parse_categories(self, entries: list) -> Dict[int, dict]:
        """Category id -> entry, in JSON order; ids and names are required."""
        categories: Dict[int, dict] = {}
        for index, entry in enumerate(entries):
            cat_id = _as_int(entry.get("id")) if isinstance(entry, dict) else None
            if cat_id is None or not isinstance(entry.get("name"), str):
                raise DatasetError(f"{self.annotations_path}: categories[{index}] = "
                                   f"{str(entry)[:80]}; expected {{'id': integer, 'name': str}}")
            if cat_id in categories:
                raise DatasetError(f"{self.annotations_path}: category id {cat_id} appears more "
                                   "than once; expected unique category ids")
            entry["id"] = cat_id
            categories[cat_id] = entry
        return categories

    def _parse_images(self, entries: list) -> Dict[int, dict]:
        """Image id -> entry for usable entries, in JSON order.

        An entry without an integer id or a file_name makes the file unusable (DatasetError);
        one without a positive width and height is one bad image (skipped and counted).
        """
        images: Dict[int, dict] = {}
        seen: set = set()
        for index, entry in enumerate(entries):
            image_id = _as_int(entry.get("id")) if isinstance(entry, dict) else None
            if image_id is None or not isinstance(entry.get("file_name"), str):
                raise DatasetError(f"{self.annotations_path}: images[{index}] = "
                                   f"{str(entry)[:80]}; expected {{'id': integer, 'file_name': "
                                   "str, 'width': integer, 'height': integer}")
            if image_id in seen:
                raise DatasetError(f"{self.annotations_path}: image id {image_id} appears more "
                                   "than once; expected unique image ids")
            seen.add(image_id)
            entry["id"] = image_id
            width, height = _as_int(entry.get("width")), _as_int(entry.get("height"))
            if width is None or height is None or width <= 0 or height <= 0:
                self._problem(IMAGE_NO_SIZE, f"{self._name}: image {image_id} "
                              f"('{entry['file_name']}'): width={entry.get('width')!r}, "
                              f"height={entry.get('height')!r}; expected positive integers "
                              "(the image size); image skipped", image_id=image_id)
                self._dropped_image_ids.add(image_id)
                continue
            entry["width"], entry["height"] = width, height
            images[image_id] = entry
        return images

    def _parse_annotations(self, entries: list, categories: Mapping[int, dict]) -> List[dict]:
        """Annotations whose image and category exist; the others are skipped and counted.

        Annotation ids must be unique integers: COCOeval indexes annotations by id, and
        messages name annotations by it.
        """
        seen: set = set()
        usable = []
        all_ids = set()
        for index, ann in enumerate(entries):
            ann_id = _as_int(ann.get("id")) if isinstance(ann, dict) else None
            if ann_id is None:
                raise DatasetError(f"{self.annotations_path}: annotations[{index}] = "
                                   f"{str(ann)[:80]}; expected an object with an integer 'id'")
            if ann_id in seen:
                raise DatasetError(f"{self.annotations_path}: annotation id {ann_id} appears "
                                   "more than once; expected unique annotation ids")
            seen.add(ann_id)
            ann["id"] = ann_id
            all_ids.add(ann_id)
            image_id = _as_int(ann.get("image_id"))
            if image_id is None or image_id not in self._images:
                # An image entry dropped for its size has already been reported; its
                # annotations go with it without a second message.
                if image_id not in self._dropped_image_ids:
                    self._problem(ANN_UNKNOWN_IMAGE,
                                  f"{self._name}: annotation {ann_id}: image_id "
                                  f"{ann.get('image_id')!r} is not in 'images'; annotation "
                                  "skipped", annotation_id=ann_id)
                continue
            ann["image_id"] = image_id
            cat_id = _as_int(ann.get("category_id"))
            if cat_id is None or cat_id not in categories:
                self._problem(ANN_UNKNOWN_CATEGORY,
                              f"{self._ann_where(ann)}: category_id {ann.get('category_id')!r} "
                              f"is not in 'categories' (ids {sorted(categories)[:20]}); "
                              "annotation skipped", annotation_id=ann_id, image_id=image_id)
                continue
            ann["category_id"] = cat_id
            usable.append(ann)
        self._max_annotation_id = max(all_ids, default=0)
        return usable

    def _make_label_map(self, categories: Mapping[int, dict], annotations: List[dict],
                        category_names: Optional[Sequence[str]]) -> LabelMap:
        path = self.annotations_path
        if category_names is not None:
            if isinstance(category_names, str):
                category_names = [category_names]
            names = [str(n) for n in category_names]
            if not names:
                raise DatasetError(f"{path}: category_names is empty; expected at least one "
                                   "category name")
            if len(set(names)) != len(names):
                raise DatasetError(f"{path}: category_names {names} repeats a name; expected "
                                   "distinct names")
            ids = []
            for name in names:
                matches = [c for c, entry in categories.items() if entry["name"] == name]
                if not matches:
                    known = ", ".join(repr(e["name"]) for e in categories.values())
                    raise DatasetError(f"{path}: category name {name!r} (in category_names) is "
                                       f"not in the file; its categories are: {known}")
                if len(matches) > 1:
                    raise DatasetError(f"{path}: category name {name!r} is used by category "
                                       f"ids {matches}; expected it to name one category")
                ids.append(matches[0])
            return LabelMap(tuple(ids), tuple(names))

        counts = collections.Counter(a["category_id"] for a in annotations)
        chosen = []
        for cat_id in sorted(categories):
            name = categories[cat_id]["name"]
            if name.strip().lower() in BACKGROUND_NAMES:
                if counts[cat_id] == 0:
                    logging.info("%s: category %d %r has no annotations and names the "
                                 "background (class 0); it is not made a class", self._name,
                                 cat_id, name)
                    continue
                logging.warning("%s: category %d %r has %d annotations; it is treated as an "
                                "ordinary class, not as the background", self._name, cat_id,
                                name, counts[cat_id])
            chosen.append(categories[cat_id])
        if not chosen:
            raise DatasetError(f"{path}: no object categories (background placeholders aside); "
                               "expected at least one entry in 'categories'")
        return LabelMap.from_coco_categories(chosen)

    def _parse_keypoint_spec(self, categories: Mapping[int, dict]) -> set:
        """Sets keypoint_names, keypoint_skeleton and num_keypoints from the label map's
        categories; returns the ids of those that declare keypoints."""
        path = self.annotations_path
        declaring = set()
        names: Tuple[str, ...] = ()
        skeleton: Tuple[int, ...] = ()
        first = None  # (id, name) of the category the names were taken from
        for cat_id in self.label_map.dataset_ids:
            entry = categories[cat_id]
            where = f"{path}: category {cat_id} {entry['name']!r}"
            declared = entry.get("keypoints")
            if declared in (None, []):
                continue
            if not (isinstance(declared, list) and all(isinstance(n, str) for n in declared)
                    and len(set(declared)) == len(declared)):
                raise DatasetError(f"{where}: 'keypoints' is {str(declared)[:80]}; expected a "
                                   "list of distinct keypoint names")
            if not names:
                names, first = tuple(declared), (cat_id, entry["name"])
                try:
                    skeleton = skeleton_from_coco(entry.get("skeleton") or [], len(names),
                                                  source=f"{where}: 'skeleton'")
                except (TypeError, ValueError) as e:
                    raise DatasetError(str(e)) from None
            elif tuple(declared) != names:
                raise DatasetError(f"{where}: 'keypoints' {declared} differ from category "
                                   f"{first[0]} {first[1]!r}'s {list(names)}; expected every "
                                   "selected category with keypoints to declare the same names "
                                   "in the same order (select categories with category_names)")
            declaring.add(cat_id)
        self.keypoint_names = names
        self.keypoint_skeleton = skeleton
        self.num_keypoints = len(names)
        if names:
            logging.info("%s: %d keypoint types (%s) on categories %s", self._name, len(names),
                         ", ".join(names), sorted(declaring))
        return declaring

    # -- structural checks of annotations -----------------------------------------------------

    def _check_annotations(self, annotations: List[dict]) -> List[dict]:
        """The annotations of label-map categories that pass the checks that need no pixels.

        Missing COCOeval fields are filled in place (see module doc).
        """
        selected = set(self.label_map.dataset_ids)
        kept = []
        ignored = box_only = 0
        for ann in annotations:
            if ann["category_id"] not in selected:
                ignored += 1
                continue
            try:
                had_segmentation = self._check_annotation(ann)
            except BadSampleError as e:
                self._problem(e.reason, str(e), image_id=e.image_id,
                              annotation_id=e.annotation_id)
                continue
            box_only += not had_segmentation
            kept.append(ann)
        if ignored:
            logging.info("%s: %d annotations of categories outside the label map are ignored",
                         self._name, ignored)
        if box_only:
            logging.info("%s: %d annotations have no segmentation; their boxes are used as "
                         "masks", self._name, box_only)
        return kept

    def _check_annotation(self, ann: dict) -> bool:
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
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))):
                raise bad(ANN_BAD_BBOX, f"bbox {str(bbox)[:80]}; expected 4 finite numbers "
                          "[x, y, width, height]")
            if bbox[2] < 0 or bbox[3] < 0:
                raise bad(ANN_NEGATIVE_BOX, f"bbox {bbox} has a negative width or height; "
                          "expected [x, y, width, height] with width, height >= 0")
            if bbox[2] == 0 or bbox[3] == 0:
                raise bad(ANN_ZERO_BOX, f"bbox {bbox} has zero area; expected width and "
                          "height > 0")

        segmentation = ann.get("segmentation")
        has_segmentation = segmentation not in (None, [], {})
        if not has_segmentation:
            if bbox is None:
                raise bad(ANN_NO_GEOMETRY, "no segmentation and no bbox; expected at least one")
            ann["segmentation"] = [_box_polygon(*bbox)]
        elif isinstance(segmentation, list):
            if all(_is_number(v) for v in segmentation):
                # A flat [x1, y1, x2, y2, ...] list (some converters): one polygon.
                segmentation = [segmentation]
            parts = []
            for k, part in enumerate(segmentation):
                if not (isinstance(part, list) and all(map(_is_number, part))):
                    raise bad(ANN_BAD_SEGMENTATION, f"polygon part {k} is {str(part)[:60]}; "
                              "expected a list of numbers [x1, y1, x2, y2, ...]")
                if len(part) < 6 or len(part) % 2:
                    if len(segmentation) > 1:
                        self._problem(FIX_POLYGON_PART,
                                      f"{self._ann_where(ann)}: polygon part {k} has "
                                      f"{len(part)} numbers; expected an even number >= 6 (3 "
                                      "points); that part is dropped",
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
                    and all(_as_int(s) is not None and s >= 0 for s in size)):
                raise bad(ANN_BAD_SEGMENTATION, f"RLE size {size!r}; expected [height, width]")
            if [int(s) for s in size] != [height, width]:
                raise bad(ANN_RLE_SIZE, f"RLE size {size} (height, width) differs from the "
                          f"image's {[height, width]}; expected the image size")
            if isinstance(counts, list):
                # pycocotools does not check that runs cover exactly H * W pixels.
                if not all(_as_int(c) is not None and c >= 0 for c in counts):
                    raise bad(ANN_BAD_SEGMENTATION, "uncompressed RLE counts must be "
                              "non-negative integers")
                if sum(counts) != height * width:
                    raise bad(ANN_BAD_SEGMENTATION, f"uncompressed RLE counts sum to "
                              f"{sum(counts)}; expected height * width = {height * width}")
            elif not isinstance(counts, str):
                raise bad(ANN_BAD_SEGMENTATION, f"RLE counts is a {type(counts).__name__}; "
                          "expected a list (uncompressed) or a string (compressed)")
        else:
            raise bad(ANN_BAD_SEGMENTATION, f"segmentation is a {type(segmentation).__name__};"
                      " expected polygons (list of lists) or RLE ({'size', 'counts'})")

        crowd = ann.get("iscrowd", 0)
        ann["iscrowd"] = int(bool(crowd)) if _is_number(crowd) or isinstance(crowd, bool) else 0
        if bbox is None or "area" not in ann:
            try:
                rle = self._rle(ann, height, width)
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

    def _has_keypoints(self, ann: Mapping[str, Any]) -> bool:
        """Whether a checked annotation's keypoints train (otherwise its row is all zero)."""
        return (ann["category_id"] in self._keypoint_categories and not ann["iscrowd"]
                and ann["num_keypoints"] != 0)

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
                and all(map(_is_number, values))):
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

    @staticmethod
    def _rle(ann: dict, height: int, width: int) -> dict:
        """One compressed RLE for a checked annotation's segmentation (all parts merged)."""
        segmentation = ann["segmentation"]
        if isinstance(segmentation, list):
            return mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
        if isinstance(segmentation["counts"], list):
            return mask_util.frPyObjects(segmentation, height, width)
        return {"size": [height, width], "counts": segmentation["counts"]}

    def _make_coco(self, data: dict, annotations: List[dict], categories: List[dict]) -> COCO:
        zero = [a for a in annotations if a["id"] == 0]
        if zero:
            self._renumbered_zero = self._max_annotation_id + 1
            zero[0]["id"] = self._renumbered_zero
            logging.info("%s: annotation id 0 is renumbered %d in the COCO ground truth "
                         "(COCOeval treats a match with id 0 as no match)", self._name,
                         self._renumbered_zero)
        dataset = {key: value for key, value in data.items()
                   if key not in ("images", "annotations", "categories")}
        dataset.update(images=list(self._images.values()), annotations=annotations,
                       categories=categories)
        coco = COCO()
        coco.dataset = dataset
        # createIndex prints progress; the dataset summary is logged instead.
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco

    # -- bookkeeping -------------------------------------------------------------------------

    def _image_where(self, image_id: int) -> str:
        return f"{self._name}: image {image_id} ('{self._images[image_id]['file_name']}')"

    def _ann_where(self, ann: Mapping[str, Any]) -> str:
        # Messages use the JSON's id, also for an annotation 0 renumbered for COCOeval.
        renumbered = self._renumbered_zero
        ann_id = 0 if renumbered is not None and ann["id"] == renumbered else ann["id"]
        image_id = ann["image_id"]
        return (f"{self._name}: annotation {ann_id} (image {image_id}, "
                f"'{self._images[image_id]['file_name']}')")

    def _problem(self, reason: str, message: str, image_id: Optional[int] = None,
                 annotation_id: Optional[int] = None) -> None:
        """Raises (strict) or warns about and counts one problem, once per image/annotation."""
        if self.strict:
            raise BadSampleError(message, reason, image_id=image_id, annotation_id=annotation_id)
        key = (("annotation", annotation_id) if annotation_id is not None
               else ("image", image_id), reason)
        with self._lock:
            if key in self._noted:
                return
            self._noted.add(key)
            self.skipped[reason] += 1
            self._warned[reason] += 1
            count = self._warned[reason]
        if count <= MAX_WARNINGS_PER_REASON:
            logging.warning("%s", message)
        if count == MAX_WARNINGS_PER_REASON:
            logging.warning("%s: further '%s' problems are counted but not logged; see the "
                            "summary at the end", self._name, reason)

    def _log_once(self, key: str, message: str) -> None:
        with self._lock:
            if key in self._logged_once:
                return
            self._logged_once.add(key)
        logging.warning("%s", message)

    # -- examples ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, image_id: int) -> str:
        """Path of an image's file: images_dir joined with its JSON `file_name`."""
        file_name = self._images[int(image_id)]["file_name"]
        path = os.path.join(self.images_dir, file_name)
        if "\\" in file_name and os.sep == "/" and not os.path.exists(path):
            # Exports made on Windows may write "train\\img.jpg".
            path = os.path.join(self.images_dir, *file_name.split("\\"))
        return path

    def load_example(self, image_id: int) -> Dict[str, np.ndarray]:
        """Reads one image and decodes its masks (see module doc for the structure).

        Unusable annotations are dropped with a warning and counted (strict: raised).

        Returns:
          dict: image uint8 [H, W, 3], boxes float32 [N, 4], class_ids int32 [N],
          masks uint8 [N, H, W], is_crowd bool [N], image_id int64 [], and, when
          `num_keypoints` K > 0, keypoints float32 [N, K, 3] (y, x, v).

        Raises:
          KeyError: image_id is not an image of the JSON (or its entry had no valid size).
          BadSampleError: the image is unusable (missing, unreadable, truncated, size
            mismatch), or, when strict, an annotation is.
        """
        image_id = int(image_id)
        if image_id not in self._images:
            raise KeyError(f"{self._name}: no usable image with id {image_id}")
        info = self._images[image_id]
        where = self._image_where(image_id)
        try:
            image, orientation = read_image_and_orientation(self.image_path(image_id))
        except ImageReadError as e:
            raise BadSampleError(f"{where}: {e}; image skipped", IMAGE_UNREADABLE,
                                 image_id=image_id) from None
        height, width = image.shape[:2]
        json_size = (info["height"], info["width"])
        if json_size != (height, width):
            if orientation in SWAPPING_ORIENTATIONS and json_size == (width, height):
                self._log_once(
                    "stored_size",
                    f"{where}: the JSON gives the stored size {info['width']}x{info['height']} "
                    f"(width x height) before EXIF orientation {orientation}; the image is used "
                    f"upright ({width}x{height}) with its annotations taken as upright "
                    "coordinates. Other such images are not logged.")
            else:
                turned = f" after EXIF orientation {orientation}" if orientation != 1 else ""
                raise BadSampleError(
                    f"{where}: the JSON says {info['width']}x{info['height']} (width x height) "
                    f"but the file is {width}x{height}{turned}; expected them to match (fix "
                    "width/height in the JSON or the file); image skipped",
                    IMAGE_SIZE_MISMATCH, image_id=image_id)

        boxes, class_ids, masks, is_crowd, keypoints = [], [], [], [], []
        k = self.num_keypoints
        for ann in self.coco.imgToAnns.get(image_id, ()):
            try:
                box, mask = self._instance(ann, height, width)
            except BadSampleError as e:
                self._problem(e.reason, str(e), image_id=image_id, annotation_id=ann["id"])
                continue
            boxes.append(box)
            masks.append(mask)
            class_ids.append(self.label_map.contiguous_id(ann["category_id"]))
            is_crowd.append(bool(ann["iscrowd"]))
            if k:
                keypoints.append(keypoints_from_coco(ann["keypoints"], k) if self._has_keypoints(ann)
                                 else np.zeros((k, 3), np.float32))
        example = {
            "image": image,
            "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
            "class_ids": np.asarray(class_ids, np.int32),
            "masks": (np.stack(masks) if masks else np.zeros((0, height, width), np.uint8)),
            "is_crowd": np.asarray(is_crowd, bool),
            "image_id": np.int64(image_id),
        }
        if k:
            example["keypoints"] = np.asarray(keypoints, np.float32).reshape(-1, k, 3)
        try:
            return validate_example(example, self.label_map.num_classes, source=where,
                                    num_keypoints=k or None)
        except ValueError as e:
            raise BadSampleError(f"{e}; image skipped", IMAGE_INVALID,
                                 image_id=image_id) from None

    def _instance(self, ann: dict, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
        """(box float32 [4] (y1, x1, y2, x2) clipped to the image, mask uint8 [H, W])."""

        def bad(reason: str, what: str) -> BadSampleError:
            return BadSampleError(f"{self._ann_where(ann)}: {what}; annotation skipped", reason,
                                  image_id=ann["image_id"], annotation_id=ann["id"])

        segmentation = ann["segmentation"]
        if isinstance(segmentation, dict) and list(segmentation["size"]) != [height, width]:
            # Only possible for an image whose JSON size is its stored, un-rotated size.
            raise bad(ANN_RLE_SIZE, f"RLE size {segmentation['size']} (height, width) differs "
                      f"from the upright image's {[height, width]}")
        try:
            mask = mask_util.decode(self._rle(ann, height, width))
        except Exception as e:  # pycocotools raises ValueError / TypeError for bad RLE
            raise bad(ANN_BAD_SEGMENTATION, f"pycocotools cannot decode the mask: {e}")

        x, y, w, h = (float(v) for v in ann["bbox"])
        x1, x2 = np.clip([x, x + w], 0.0, float(width))
        y1, y2 = np.clip([y, y + h], 0.0, float(height))
        if x2 <= x1 or y2 <= y1:
            raise bad(ANN_OUTSIDE, f"bbox {ann['bbox']} lies outside the {width}x{height} "
                      "image; expected it to overlap the image")
        if not mask.any():
            raise bad(ANN_EMPTY_MASK, "its mask covers no pixel of the image (zero area or "
                      "outside it); expected a non-empty mask")
        return np.array([y1, x1, y2, x2], np.float32), mask

    def _example_or_none(self, image_id: int) -> Optional[Dict[str, np.ndarray]]:
        """load_example, with a bad image reported and counted (None) unless strict."""
        try:
            example = self.load_example(image_id)
        except BadSampleError as e:
            self._problem(e.reason, str(e), image_id=e.image_id, annotation_id=e.annotation_id)
            return None
        if not self.keep_empty_images and example["is_crowd"].all():
            # Only reachable when every non-crowd annotation of the image was unusable.
            self._problem(IMAGE_NO_ANNOTATIONS, f"{self._image_where(image_id)}: no usable "
                          "non-crowd annotation left; image skipped (keep_empty_images=False)",
                          image_id=image_id)
            return None
        return example

    def __iter__(self) -> Iterator[Dict[str, np.ndarray]]:
        """Yields the examples of `image_ids` in order, skipping (and counting) bad ones."""
        for image_id in self.image_ids:
            example = self._example_or_none(image_id)
            if example is not None:
                yield example

    def as_tf_dataset(self, shuffle: bool = False, seed: Optional[int] = None
                      ) -> tf.data.Dataset:
        """The examples as a finite `tf.data.Dataset` (see `example_signature`; keypoints
        [N, K, 3] are included when `num_keypoints` K > 0).

        Images are read and masks decoded in Python (`tf.numpy_function`) inside a parallel,
        order-preserving map; bad samples are skipped as in `__iter__`.

        Args:
          shuffle: shuffle the image order, anew each epoch, before loading (cheap: only ids
            are shuffled, never decoded images).
          seed: shuffle seed.
        """
        signature = example_signature(self.num_keypoints)
        keys = list(signature)
        placeholder = {  # returned for a skipped image, then filtered out
            "image": np.zeros((0, 0, 3), np.uint8), "boxes": np.zeros((0, 4), np.float32),
            "class_ids": np.zeros((0,), np.int32), "masks": np.zeros((0, 0, 0), np.uint8),
            "is_crowd": np.zeros((0,), bool), "image_id": np.int64(-1),
            "keypoints": np.zeros((0, self.num_keypoints, 3), np.float32),
        }

        def load(image_id):
            example = self._example_or_none(int(image_id))
            values = placeholder if example is None else example
            return [values[k] for k in keys] + [np.bool_(example is not None)]

        def load_tensors(image_id):
            values = tf.numpy_function(load, [image_id],
                                       [signature[k].dtype for k in keys] + [tf.bool],
                                       stateful=False)
            # numpy_function forgets shapes; restore (and check) them from the signature.
            example = {k: tf.ensure_shape(v, signature[k].shape) for k, v in zip(keys, values)}
            return example, tf.ensure_shape(values[-1], [])

        ds = tf.data.Dataset.from_tensor_slices(np.asarray(self.image_ids, np.int64))
        if shuffle and len(self.image_ids) > 1:
            ds = ds.shuffle(len(self.image_ids), seed=seed, reshuffle_each_iteration=True)
        ds = ds.map(load_tensors, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        # Named functions, not two lambdas on one line: autograph reads a function's source
        # and cannot tell two same-signature lambdas on one line apart (it warns on each run).
        return ds.filter(_loaded_ok).map(_drop_ok_flag)

    def report(self) -> str:
        """One line: what was skipped (or repaired) and why, e.g. for the end of training."""
        def part(reasons: Sequence[str], noun: str) -> Optional[str]:
            counts = [(r, self.skipped[r]) for r in reasons if self.skipped[r]]
            if not counts:
                return None
            details = ", ".join(f"{r}: {n}" for r, n in counts)
            return f"{sum(n for _, n in counts)} {noun} ({details})"

        parts = [p for p in (part(IMAGE_REASONS, "images skipped"),
                             part(ANNOTATION_REASONS, "annotations skipped"),
                             part(FIX_REASONS, "annotations repaired")) if p]
        summary = "; ".join(parts) if parts else "nothing skipped"
        return f"{self._name}: {len(self.image_ids)} images, {summary}"


def _loaded_ok(example, ok):
    """Filter predicate for `CocoDataset.as_tf_dataset`: the image loaded without error."""
    del example
    return ok


def _drop_ok_flag(example, ok):
    del ok
    return example
