"""What a COCO-format dataset skips, and why: the errors, the reasons and the problem log.

A file that cannot be used at all raises `DatasetError`. One bad image or annotation is a
`BadSampleError` with a reason (the IMAGE_*, ANN_* and FIX_* strings below); `ProblemLog`
either raises it (strict) or warns about it and counts it once, so that a bad sample met again
in the next epoch is neither re-warned nor re-counted, and `summary()` tells what was skipped.
"""

from __future__ import annotations

import collections
import threading
from typing import Optional, Sequence

from absl import logging

# Reasons counted in `ProblemLog.skipped`, by what they cost.
IMAGE_NO_SIZE = "image without valid width/height"
IMAGE_OUTSIDE_FOLDER = "file_name outside the images folder"
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
# Not a bad sample: an image with more instances than Config.max_instances, whose first
# max_instances are trained on (`ProblemLog.too_many_instances`).
CUT_TO_MAX_INSTANCES = "more instances than max_instances"

IMAGE_REASONS = (IMAGE_NO_SIZE, IMAGE_OUTSIDE_FOLDER, IMAGE_UNREADABLE, IMAGE_SIZE_MISMATCH, IMAGE_INVALID,
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


class ProblemLog:
    """Raises, or warns about and counts, the problems of one dataset.

    Safe to use from tf.data's parallel map threads.

    Attributes:
      skipped: Counter reason -> number of distinct images/annotations skipped (or, for
        FIX_* reasons, repaired) so far.
    """

    def __init__(self, name: str, strict: bool):
        """
        Args:
          name: the annotations file's name, for the "further problems" line.
          strict: raise BadSampleError at the first problem instead of counting it.
        """
        self.name = name
        self.strict = bool(strict)
        self.skipped: collections.Counter = collections.Counter()
        self._lock = threading.Lock()
        self._noted: set = set()
        self._warned: collections.Counter = collections.Counter()
        self._logged_once: set = set()
        self.instances_dropped = 0

    def problem(self, reason: str, message: str, image_id: Optional[int] = None,
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
                            "summary at the end", self.name, reason)

    def too_many_instances(self, image_id: int, count: int, limit: int) -> None:
        """Counts an image with `count` > `limit` (Config.max_instances) instances, of which
        training keeps the first `limit`: once per image, warned about for the first only
        (never raised: the image is still used)."""
        key = (("image", int(image_id)), CUT_TO_MAX_INSTANCES)
        with self._lock:
            if key in self._noted:
                return
            self._noted.add(key)
            self.skipped[CUT_TO_MAX_INSTANCES] += 1
            self.instances_dropped += int(count) - int(limit)
            first = self.skipped[CUT_TO_MAX_INSTANCES] == 1
        if first:
            logging.warning(
                "%s: image %d has %d instances, more than max_instances=%d; training uses the "
                "first %d and drops the rest (pass --override max_instances=%d or more to keep "
                "them). Further such images are counted, not logged; see the summary.",
                self.name, image_id, count, limit, limit, count)

    def log_once(self, key: str, message: str) -> None:
        """Warns with `message` the first time `key` is seen."""
        with self._lock:
            if key in self._logged_once:
                return
            self._logged_once.add(key)
        logging.warning("%s", message)

    def summary(self) -> str:
        """What was skipped (or repaired) and why, e.g. "4 images skipped (unreadable image:
        3, ...); 1 annotations repaired (...)", or "nothing skipped"."""
        def part(reasons: Sequence[str], noun: str) -> Optional[str]:
            counts = [(r, self.skipped[r]) for r in reasons if self.skipped[r]]
            if not counts:
                return None
            details = ", ".join(f"{r}: {n}" for r, n in counts)
            return f"{sum(n for _, n in counts)} {noun} ({details})"

        cut = self.skipped[CUT_TO_MAX_INSTANCES]
        parts = [p for p in (part(IMAGE_REASONS, "images skipped"),
                             part(ANNOTATION_REASONS, "annotations skipped"),
                             part(FIX_REASONS, "annotations repaired"),
                             cut and (f"{cut} images cut to max_instances "
                                      f"({self.instances_dropped} instances dropped)")) if p]
        return "; ".join(parts) if parts else "nothing skipped"
