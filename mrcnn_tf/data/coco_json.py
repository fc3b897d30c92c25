"""Reading a COCO annotations JSON: its lists indexed by id, the label map, the keypoint set.

Everything here works on the JSON alone (no image is read). Ids and names the file cannot be
used without (an image without an integer id or a file_name, duplicate ids, a category
without a name) raise `DatasetError`; an image entry without a valid size, or an annotation
of an unknown image or category, is one bad sample for the `ProblemLog`.

Category ids are any integers (0 included) and map to 1..K in increasing id. A category
literally named "_background_" or "background" (any case) that has no annotations is a
placeholder some tools write for class 0; it is left out of the label map, with a log line.
With annotations it is an ordinary class. `category_names` selects categories (in that order).
"""

from __future__ import annotations

import collections
import json
import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from mrcnn_tf.data.coco_problems import (ANN_UNKNOWN_CATEGORY, ANN_UNKNOWN_IMAGE,
                                         IMAGE_NO_SIZE, IMAGE_OUTSIDE_FOLDER, DatasetError,
                                         ProblemLog)
from mrcnn_tf.keypoint_spec import skeleton_from_coco
from mrcnn_tf.labels import LabelMap

BACKGROUND_NAMES = ("_background_", "background")


def as_int(value: Any) -> Optional[int]:
    """An integer id from JSON (1 or 1.0), or None (strings, bools, 1.5, null)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def is_number(value: Any) -> bool:
    """A finite JSON number (not a bool)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def load_annotations_json(path: str) -> dict:
    """The parsed JSON of a COCO annotations file, its three lists checked to be lists.

    Raises:
      DatasetError: a missing file, invalid JSON, or not a COCO annotations file.
    """
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


def parse_categories(entries: list, path: str) -> Dict[int, dict]:
    """Category id -> entry, in JSON order; ids and names are required."""
    categories: Dict[int, dict] = {}
    for index, entry in enumerate(entries):
        cat_id = as_int(entry.get("id")) if isinstance(entry, dict) else None
        if cat_id is None or not isinstance(entry.get("name"), str):
            raise DatasetError(f"{path}: categories[{index}] = "
                               f"{str(entry)[:80]}; expected {{'id': integer, 'name': str}}")
        if cat_id in categories:
            raise DatasetError(f"{path}: category id {cat_id} appears more "
                               "than once; expected unique category ids")
        entry["id"] = cat_id
        categories[cat_id] = entry
    return categories


def leaves_folder(file_name: str) -> bool:
    """Whether a JSON `file_name` would name a file outside the images folder it is relative
    to: an absolute path (POSIX, Windows drive or UNC), one that climbs out with '..', or an
    empty name. '/' and '\\' both count as separators (exports made on Windows use '\\')."""
    parts = file_name.replace("\\", "/").split("/")
    drive = len(file_name) > 1 and file_name[0].isalpha() and file_name[1] == ":"
    if not file_name or file_name[0] in "/\\" or drive:
        return True
    depth = 0
    for part in parts:
        depth += -1 if part == ".." else (0 if part in ("", ".") else 1)
        if depth < 0:
            return True
    return depth == 0


def parse_images(entries: list, path: str, problems: ProblemLog
                 ) -> Tuple[Dict[int, dict], Set[int]]:
    """(image id -> entry for usable entries in JSON order, ids of the entries without a size).

    An entry without an integer id or a file_name makes the file unusable (DatasetError);
    one without a positive width and height, or whose file_name leaves the images folder
    (`leaves_folder`), is one bad image (skipped and counted).
    """
    images: Dict[int, dict] = {}
    dropped: Set[int] = set()
    seen: set = set()
    for index, entry in enumerate(entries):
        image_id = as_int(entry.get("id")) if isinstance(entry, dict) else None
        if image_id is None or not isinstance(entry.get("file_name"), str):
            raise DatasetError(f"{path}: images[{index}] = "
                               f"{str(entry)[:80]}; expected {{'id': integer, 'file_name': "
                               "str, 'width': integer, 'height': integer}")
        if image_id in seen:
            raise DatasetError(f"{path}: image id {image_id} appears more "
                               "than once; expected unique image ids")
        seen.add(image_id)
        entry["id"] = image_id
        if leaves_folder(entry["file_name"]):
            problems.problem(IMAGE_OUTSIDE_FOLDER, f"{problems.name}: image {image_id} "
                             f"('{entry['file_name']}'): its file_name leaves the images "
                             "folder; expected a path inside it (no '..' above it, no leading "
                             "'/' or drive); image skipped", image_id=image_id)
            dropped.add(image_id)
            continue
        width, height = as_int(entry.get("width")), as_int(entry.get("height"))
        if width is None or height is None or width <= 0 or height <= 0:
            problems.problem(IMAGE_NO_SIZE, f"{problems.name}: image {image_id} "
                             f"('{entry['file_name']}'): width={entry.get('width')!r}, "
                             f"height={entry.get('height')!r}; expected positive integers "
                             "(the image size); image skipped", image_id=image_id)
            dropped.add(image_id)
            continue
        entry["width"], entry["height"] = width, height
        images[image_id] = entry
    return images, dropped


def parse_annotations(entries: list, path: str, images: Mapping[int, dict],
                      dropped_image_ids: Set[int], categories: Mapping[int, dict],
                      problems: ProblemLog, describe: Callable[[Mapping[str, Any]], str]
                      ) -> Tuple[List[dict], int]:
    """(annotations whose image and category exist, the largest annotation id or 0); the
    others are skipped and counted.

    Annotation ids must be unique integers: COCOeval indexes annotations by id, and
    messages name annotations by it.

    Args:
      describe: annotation -> where it is, the start of its messages.
    """
    seen: set = set()
    usable = []
    all_ids = set()
    for index, ann in enumerate(entries):
        ann_id = as_int(ann.get("id")) if isinstance(ann, dict) else None
        if ann_id is None:
            raise DatasetError(f"{path}: annotations[{index}] = "
                               f"{str(ann)[:80]}; expected an object with an integer 'id'")
        if ann_id in seen:
            raise DatasetError(f"{path}: annotation id {ann_id} appears "
                               "more than once; expected unique annotation ids")
        seen.add(ann_id)
        ann["id"] = ann_id
        all_ids.add(ann_id)
        image_id = as_int(ann.get("image_id"))
        if image_id is None or image_id not in images:
            # An image entry dropped for its size has already been reported; its
            # annotations go with it without a second message.
            if image_id not in dropped_image_ids:
                problems.problem(ANN_UNKNOWN_IMAGE,
                                 f"{problems.name}: annotation {ann_id}: image_id "
                                 f"{ann.get('image_id')!r} is not in 'images'; annotation "
                                 "skipped", annotation_id=ann_id)
            continue
        ann["image_id"] = image_id
        cat_id = as_int(ann.get("category_id"))
        if cat_id is None or cat_id not in categories:
            problems.problem(ANN_UNKNOWN_CATEGORY,
                             f"{describe(ann)}: category_id {ann.get('category_id')!r} "
                             f"is not in 'categories' (ids {sorted(categories)[:20]}); "
                             "annotation skipped", annotation_id=ann_id, image_id=image_id)
            continue
        ann["category_id"] = cat_id
        usable.append(ann)
    return usable, max(all_ids, default=0)


def make_label_map(categories: Mapping[int, dict], annotations: List[dict],
                   category_names: Optional[Sequence[str]], path: str, name: str) -> LabelMap:
    """The categories as classes 1..K: `category_names` in that order, or else every category
    in increasing id except unannotated background placeholders (see module doc)."""
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
        for wanted in names:
            matches = [c for c, entry in categories.items() if entry["name"] == wanted]
            if not matches:
                known = ", ".join(repr(e["name"]) for e in categories.values())
                raise DatasetError(f"{path}: category name {wanted!r} (in category_names) is "
                                   f"not in the file; its categories are: {known}")
            if len(matches) > 1:
                raise DatasetError(f"{path}: category name {wanted!r} is used by category "
                                   f"ids {matches}; expected it to name one category")
            ids.append(matches[0])
        return LabelMap(tuple(ids), tuple(names))

    counts = collections.Counter(a["category_id"] for a in annotations)
    chosen = []
    for cat_id in sorted(categories):
        cat_name = categories[cat_id]["name"]
        if cat_name.strip().lower() in BACKGROUND_NAMES:
            if counts[cat_id] == 0:
                logging.info("%s: category %d %r has no annotations and names the "
                             "background (class 0); it is not made a class", name,
                             cat_id, cat_name)
                continue
            logging.warning("%s: category %d %r has %d annotations; it is treated as an "
                            "ordinary class, not as the background", name, cat_id,
                            cat_name, counts[cat_id])
        chosen.append(categories[cat_id])
    if not chosen:
        raise DatasetError(f"{path}: no object categories (background placeholders aside); "
                           "expected at least one entry in 'categories'")
    return LabelMap.from_coco_categories(chosen)


def parse_keypoint_spec(categories: Mapping[int, dict], label_map: LabelMap, path: str,
                        name: str) -> Tuple[Tuple[str, ...], Tuple[int, ...], Set[int]]:
    """The keypoint set of the label map's categories.

    A category may declare "keypoints" (K names) and "skeleton" (1-based [[a, b], ...]
    limbs); every selected category that declares keypoints must declare the same names.

    Returns:
      (keypoint_names, keypoint_skeleton flat 0-based (the first such category's), ids of
      the categories that declare keypoints); empty when none does.
    """
    declaring = set()
    names: Tuple[str, ...] = ()
    skeleton: Tuple[int, ...] = ()
    first = None  # (id, name) of the category the names were taken from
    for cat_id in label_map.dataset_ids:
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
    if names:
        logging.info("%s: %d keypoint types (%s) on categories %s", name, len(names),
                     ", ".join(names), sorted(declaring))
    return names, skeleton, declaring
