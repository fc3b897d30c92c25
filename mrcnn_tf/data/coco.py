"""COCO-format instance segmentation data: COCO itself and CVAT, labelme, Roboflow exports.

`CocoDataset(annotations_path, images_dir)` reads one annotations JSON and yields examples with
the common structure of `mrcnn_tf.data` (see `mrcnn_tf.data.schema`):

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
  * Segmentations (polygons, RLE, none at all: the box is the mask), short polygon parts and
    the fields exports omit: see `mrcnn_tf.data.coco_checks`.
  * Category ids (any integers, 0 included), background placeholders and `category_names`:
    see `mrcnn_tf.data.coco_json`. Annotations of categories outside the label map are ignored.
  * Crowd annotations (`iscrowd` 1) are kept with is_crowd True, never dropped silently.
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
`BadSampleError`. A file that is not a COCO annotations file raises `DatasetError`. (Reasons,
errors and the counting: `mrcnn_tf.data.coco_problems`.)

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

import contextlib
import io
import os
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from mrcnn_tf.data import schema
from mrcnn_tf.data.coco_checks import AnnotationChecker, annotation_rle, has_keypoints
from mrcnn_tf.data.coco_json import (load_annotations_json, make_label_map, parse_annotations,
                                     parse_categories, parse_images, parse_keypoint_spec)
from mrcnn_tf.data.coco_problems import (ANN_BAD_SEGMENTATION, ANN_EMPTY_MASK, ANN_OUTSIDE,
                                         ANN_RLE_SIZE, IMAGE_INVALID, IMAGE_NO_ANNOTATIONS,
                                         IMAGE_SIZE_MISMATCH, IMAGE_UNREADABLE,
                                         BadSampleError, DatasetError, ProblemLog)
from mrcnn_tf.data.coco_tf_data import examples_dataset
from mrcnn_tf.data.images import (SWAPPING_ORIENTATIONS, ImageReadError,
                                  read_image_and_orientation)
from mrcnn_tf.data.validation import validate_example
from mrcnn_tf.keypoint_spec import keypoints_from_coco

PathLike = Any  # str or os.PathLike


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
        FIX_* reasons, repaired) so far (reasons in `coco_problems`).
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
        self._name = os.path.basename(self.annotations_path) or self.annotations_path
        # Warnings and counts, shared with tf.data's parallel map threads.
        self._problems = ProblemLog(self._name, self.strict)
        self.skipped = self._problems.skipped
        self._renumbered_zero: Optional[int] = None  # new id of annotation 0, see _make_coco

        if not tf.io.gfile.isdir(self.images_dir):
            raise DatasetError(f"{self.images_dir}: no such folder; expected the images folder "
                               f"that the file_name entries of {self._name} are relative to")
        path = self.annotations_path
        data = load_annotations_json(path)
        categories = parse_categories(data["categories"], path)
        self._images, dropped_image_ids = parse_images(data["images"], path, self._problems)
        annotations, max_annotation_id = parse_annotations(
            data["annotations"], path, self._images, dropped_image_ids, categories,
            self._problems, self._ann_where)
        self.label_map = make_label_map(categories, annotations, category_names, path,
                                        self._name)
        self.keypoint_names, self.keypoint_skeleton, self._keypoint_categories = (
            parse_keypoint_spec(categories, self.label_map, path, self._name))
        self.num_keypoints = len(self.keypoint_names)
        checker = AnnotationChecker(self._images, self.keypoint_names,
                                    self._keypoint_categories, self._problems, self._ann_where)
        kept = checker.check_all(annotations, set(self.label_map.dataset_ids))
        self.coco = self._make_coco(data, kept, [categories[i] for i in
                                                 self.label_map.dataset_ids], max_annotation_id)

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

    # -- ground truth and message prefixes ---------------------------------------------------

    def _make_coco(self, data: dict, annotations: List[dict], categories: List[dict],
                   max_annotation_id: int) -> COCO:
        """The ground truth COCOeval scores on (see module doc)."""
        zero = [a for a in annotations if a["id"] == 0]
        if zero:
            self._renumbered_zero = max_annotation_id + 1
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

    def _image_where(self, image_id: int) -> str:
        return f"{self._name}: image {image_id} ('{self._images[image_id]['file_name']}')"

    def _ann_where(self, ann: Mapping[str, Any]) -> str:
        # Messages use the JSON's id, also for an annotation 0 renumbered for COCOeval.
        renumbered = self._renumbered_zero
        ann_id = 0 if renumbered is not None and ann["id"] == renumbered else ann["id"]
        image_id = ann["image_id"]
        return (f"{self._name}: annotation {ann_id} (image {image_id}, "
                f"'{self._images[image_id]['file_name']}')")

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
                self._problems.log_once(
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
                self._problems.problem(e.reason, str(e), image_id=image_id,
                                       annotation_id=ann["id"])
                continue
            boxes.append(box)
            masks.append(mask)
            class_ids.append(self.label_map.contiguous_id(ann["category_id"]))
            is_crowd.append(bool(ann["iscrowd"]))
            if k:
                keypoints.append(keypoints_from_coco(ann["keypoints"], k)
                                 if has_keypoints(ann, self._keypoint_categories)
                                 else np.zeros((k, 3), np.float32))
        example = {
            schema.IMAGE: image,
            schema.BOXES: np.asarray(boxes, np.float32).reshape(-1, 4),
            schema.CLASS_IDS: np.asarray(class_ids, np.int32),
            schema.MASKS: (np.stack(masks) if masks
                           else np.zeros((0, height, width), np.uint8)),
            schema.IS_CROWD: np.asarray(is_crowd, bool),
            schema.IMAGE_ID: np.int64(image_id),
        }
        if k:
            example[schema.KEYPOINTS] = np.asarray(keypoints, np.float32).reshape(-1, k, 3)
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
            mask = mask_util.decode(annotation_rle(ann, height, width))
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

    def declared_size(self, image_id: int) -> Tuple[int, int]:
        """(height, width) the JSON gives for the image, without reading the file (training
        groups images by orientation with it; the file's EXIF orientation may still turn
        it)."""
        info = self._images[int(image_id)]
        return int(info["height"]), int(info["width"])

    def _example_or_none(self, image_id: int) -> Optional[Dict[str, np.ndarray]]:
        """load_example, with a bad image reported and counted (None) unless strict."""
        try:
            example = self.load_example(image_id)
        except BadSampleError as e:
            self._problems.problem(e.reason, str(e), image_id=e.image_id,
                                   annotation_id=e.annotation_id)
            return None
        if not self.keep_empty_images and example[schema.IS_CROWD].all():
            # Only reachable when every non-crowd annotation of the image was unusable.
            self._problems.problem(
                IMAGE_NO_ANNOTATIONS, f"{self._image_where(image_id)}: no usable non-crowd "
                "annotation left; image skipped (keep_empty_images=False)", image_id=image_id)
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
        """The examples as a finite `tf.data.Dataset` (see `schema.example_signature`;
        keypoints [N, K, 3] are included when `num_keypoints` K > 0).

        Images are read and masks decoded in Python (`tf.numpy_function`) inside a parallel,
        order-preserving map; bad samples are skipped as in `__iter__`.

        Args:
          shuffle: shuffle the image order, anew each epoch, before loading (cheap: only ids
            are shuffled, never decoded images).
          seed: shuffle seed.
        """
        return examples_dataset(self.image_ids, self._example_or_none, self.num_keypoints,
                                shuffle=shuffle, seed=seed)

    def report(self) -> str:
        """One line: what was skipped (or repaired) and why, e.g. for the end of training."""
        return f"{self._name}: {len(self.image_ids)} images, {self._problems.summary()}"
