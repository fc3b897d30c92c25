"""Batch prediction on image files: overlays and a COCO results file (`mrcnn-tf predict`).

    paths = expand_inputs(["photos/", "more/*.jpg", "one.png"])
    summary = predict_files(model, paths, "out/", score_threshold=0.5,
                            image_ids=image_ids_from_annotations("instances_val.json"))

writes, for every readable input, `out/<stem>.png` (the image with the detections scoring at
least `score_threshold` drawn on it: tinted masks, boxes, class names and scores) and one
`out/results.json` in COCO results format ([{"image_id", "category_id", "bbox" [x, y, w, h],
"score", "segmentation" (compressed RLE), "file_name"}, ...]) that `pycocotools`'
`COCO.loadRes` and `mrcnn_tf.evaluation.coco_eval.evaluate_coco` read. Category ids are the
dataset's own ids (the model's label map), so the file scores against the dataset's
annotations as is.

Image ids. With an annotations file, each input is looked up there (by its path, by its
trailing path components or by its basename; see `resolve_image_ids`), so the results line up
with the ground truth. Without one, an input's id is its 1-based position in `paths`.

Unreadable or corrupt images are skipped with a warning naming the file; they are counted in
the summary and never stop the run (one bad file in a folder of thousands should not cost the
other results).
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any, Mapping, Sequence, Union

import numpy as np
from absl import logging

from mrcnn_tf import visualize
from mrcnn_tf.data.images import ImageReadError, read_image
from mrcnn_tf.evaluation.coco_eval import predictions_to_coco_results
from mrcnn_tf.io_utils import write_json_atomic, write_png_atomic

PathLike = Union[str, "os.PathLike[str]"]

# Extensions picked up from folders and glob patterns (compared case-insensitively). A file
# named explicitly is taken whatever its extension: the user asked for it.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
RESULTS_FILE_NAME = "results.json"
# Characters that make a string a glob pattern rather than a literal path.
_GLOB_CHARS = frozenset("*?[")


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _folder_images(folder: str) -> list[str]:
    """The image files directly inside `folder` (not recursive), sorted by name."""
    return [os.path.join(folder, name) for name in sorted(os.listdir(folder))
            if _is_image_name(name) and os.path.isfile(os.path.join(folder, name))]


def expand_inputs(patterns: Union[PathLike, Sequence[PathLike]],
                  glob_extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[str]:
    """Turns files, folders and glob patterns into a sorted list of unique image paths.

    Args:
      patterns: one or more of
        * a file: taken as is (any extension);
        * a folder: its .jpg/.jpeg/.png/.bmp files (any case), not recursive;
        * a glob pattern (`*`, `?`, `[...]`; `**` recurses): the matching files with one of
          `glob_extensions` (any case), and the images of matching folders.
      glob_extensions: what a glob pattern picks up; `mrcnn-tf predict` adds the video
        extensions (`mrcnn_tf.video`), so "clips/*.mp4" works while folders stay images only.

    Returns:
      Sorted, de-duplicated paths (normalized with `os.path.normpath`, so "a/./b.png" and
      "a/b.png" count once).

    Raises:
      ValueError: naming the pattern, when one matches no image (a missing file, a folder
        without images, a glob matching nothing); or when there are no patterns at all.
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    patterns = [os.fspath(p) for p in patterns]
    if not patterns:
        raise ValueError("no inputs given: expected image files, folders or glob patterns")
    found: set[str] = set()
    for pattern in patterns:
        if os.path.isdir(pattern):
            matched = _folder_images(pattern)
            if not matched:
                raise ValueError(f"input folder {pattern!r} contains no image files "
                                 f"({', '.join(IMAGE_EXTENSIONS)})")
        elif os.path.isfile(pattern):
            matched = [pattern]
        elif _GLOB_CHARS & set(pattern):
            matched = []
            extensions = tuple(e.lower() for e in glob_extensions)
            for hit in sorted(glob.glob(pattern, recursive=True)):
                if os.path.isdir(hit):
                    matched += _folder_images(hit)
                elif hit.lower().endswith(extensions):
                    matched.append(hit)
            if not matched:
                kind = "image file" if set(extensions) <= set(IMAGE_EXTENSIONS) else "file"
                raise ValueError(f"input pattern {pattern!r} matches no {kind} "
                                 f"({', '.join(extensions)})")
        else:
            raise ValueError(f"input {pattern!r}: no such file or folder")
        found.update(os.path.normpath(p) for p in matched)
    if not found:  # unreachable with the checks above; kept so the contract holds on its own
        raise ValueError(f"inputs {patterns!r} name no image files")
    return sorted(found)


# -- image ids -----------------------------------------------------------------------------

def image_ids_from_annotations(path: PathLike) -> dict[str, int]:
    """Maps the image file names of a COCO annotations file to their image ids.

    Args:
      path: a COCO JSON file: {"images": [{"id": int, "file_name": str, ...}, ...], ...}.

    Returns:
      {file_name: id} for every image, plus {basename(file_name): id} for file names in
      sub-folders whose basename no other image shares (an ambiguous basename is left out,
      so a lookup can never pick the wrong image).

    Raises:
      OSError: the file cannot be read.
      ValueError: naming the file, if it is not JSON or not COCO-shaped.
    """
    path = os.fspath(path)
    expected = ("expected a COCO annotations JSON object with an 'images' list of "
                "{'id': int, 'file_name': str} entries")
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not a JSON file ({e}); {expected}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        got = (f"a JSON {type(data).__name__}" if not isinstance(data, dict)
               else f"keys {sorted(data)[:8]}")
        raise ValueError(f"{path}: not a COCO annotations file: {expected}, got {got}")
    ids: dict[str, int] = {}
    basenames: dict[str, set[int]] = {}
    for index, entry in enumerate(data["images"]):
        where = f"{path}: images[{index}]"
        if not isinstance(entry, dict) or "file_name" not in entry or "id" not in entry:
            raise ValueError(f"{where}: {expected}, got {str(entry)[:120]}")
        file_name = entry["file_name"]
        image_id = entry["id"]
        if not isinstance(file_name, str) or not file_name:
            raise ValueError(f"{where}: 'file_name' must be a non-empty string, got "
                             f"{file_name!r}")
        if isinstance(image_id, bool) or not isinstance(image_id, (int, float)) or (
                float(image_id) != int(image_id)):
            raise ValueError(f"{where} ({file_name!r}): 'id' must be an integer, got "
                             f"{image_id!r}")
        image_id = int(image_id)
        key = _normalize_key(file_name)
        if key in ids and ids[key] != image_id:
            raise ValueError(f"{where}: file_name {file_name!r} is listed twice, with ids "
                             f"{ids[key]} and {image_id}")
        ids[key] = image_id
        basenames.setdefault(key.rsplit("/", 1)[-1], set()).add(image_id)
    for base, id_set in basenames.items():
        if len(id_set) == 1 and base not in ids:
            ids[base] = next(iter(id_set))
    return ids


def _normalize_key(name: str) -> str:
    """"./a\\b.jpg" -> "a/b.jpg": one spelling for paths from JSON files and command lines."""
    return os.path.normpath(name.replace("\\", "/")).replace(os.sep, "/")


def resolve_image_ids(paths: Sequence[PathLike],
                      image_ids: Mapping[str, int] | None = None) -> list[int]:
    """The COCO image id of each input file.

    Args:
      paths: N image paths.
      image_ids: None, or a mapping from file names to ids (e.g. `image_ids_from_annotations`).
        A path is looked up as given, then by its trailing components, longest first
        ("/data/val/a.jpg" tries "/data/val/a.jpg", "data/val/a.jpg", "val/a.jpg", "a.jpg"),
        so annotation file names relative to any images folder match.

    Returns:
      N ints: the mapped ids, or 1..N (the position in `paths`) without a mapping.

    Raises:
      ValueError: naming the files that have no id in the mapping, or two files that map to
        the same id (their results would be scored as one image).
    """
    paths = [os.fspath(p) for p in paths]
    if image_ids is None:
        return list(range(1, len(paths) + 1))
    table = {_normalize_key(str(k)): int(v) for k, v in image_ids.items()}
    resolved, missing = [], []
    for path in paths:
        key = _normalize_key(path)
        parts = key.split("/")
        candidates = [path, key] + ["/".join(parts[i:]) for i in range(1, len(parts))]
        image_id = next((table[c] for c in candidates if c in table), None)
        if image_id is None:
            missing.append(path)
        resolved.append(image_id)
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ValueError(f"no image id for {shown}{more} in the image id mapping "
                         f"({len(table)} entries): is it the annotations file of these images?")
    first_path: dict[int, str] = {}
    for path, image_id in zip(paths, resolved):
        if image_id in first_path:
            raise ValueError(f"{first_path[image_id]!r} and {path!r} both map to image id "
                             f"{image_id}")
        first_path[image_id] = path
    return resolved


# -- overlays --------------------------------------------------------------------------------

def overlay_names(paths: Sequence[PathLike]) -> list[str]:
    """Output PNG name of each input: its stem + ".png", made unique deterministically.

    The first input with a stem gets "<stem>.png", later ones "<stem>_2.png", "<stem>_3.png",
    ... (skipping names already taken). Names are compared case-insensitively, so two outputs
    never overwrite each other on case-insensitive file systems (macOS, Windows) either.
    """
    used: set[str] = set()
    names = []
    for path in paths:
        stem = os.path.splitext(os.path.basename(os.fspath(path)))[0] or "image"
        name, k = f"{stem}.png", 1
        while name.lower() in used:
            k += 1
            name = f"{stem}_{k}.png"
        used.add(name.lower())
        names.append(name)
    return names


def draw_prediction(image: np.ndarray, prediction: Mapping[str, Any],
                    class_names: Sequence[str] | None, skeleton: Sequence[int] = (),
                    keypoint_threshold: float = visualize.KEYPOINT_SCORE_THRESHOLD
                    ) -> np.ndarray:
    """The overlay `predict_files` writes: every detection of `prediction` on the image.

    Masks are drawn when the prediction has them, poses when it has keypoints. The prediction
    is already kept by score (`MaskRCNN.predict_images(..., score_threshold)`), so nothing is
    filtered here.

    Args:
      image: uint8 [H, W, 3] RGB.
      prediction: one entry of `MaskRCNN.predict_images`: boxes [n, 4] pixels, class_ids [n],
        scores [n]; optionally masks [n, H, W] bool (absent with mask_on=False) and keypoints
        [n, K, 3] (y, x, score) in continuous pixels (models with num_keypoints > 0).
      class_names: ["background", name_1, ...] (`LabelMap.class_names`) or K names.
      skeleton: flat 0-based limb pairs (`Config.keypoint_skeleton`); () draws dots only.
      keypoint_threshold: minimum keypoint score drawn (see `visualize.draw_keypoints`).

    Returns:
      uint8 [H, W, 3]; equal to `image` where nothing is drawn.
    """
    return visualize.draw_instances(
        image, np.asarray(prediction["boxes"], np.float32).reshape(-1, 4),
        np.asarray(prediction["class_ids"]).reshape(-1),
        np.asarray(prediction["scores"], np.float32).reshape(-1), prediction.get("masks"),
        class_names, keypoints=prediction.get("keypoints"), skeleton=skeleton,
        keypoint_threshold=keypoint_threshold)


def predict_files(model, paths: Sequence[PathLike], out_dir: PathLike,
                  score_threshold: float = 0.5, results_path: PathLike | None = None,
                  image_ids: Mapping[str, int] | None = None,
                  keypoint_threshold: float = visualize.KEYPOINT_SCORE_THRESHOLD,
                  batch_size: int = 1) -> dict[str, Any]:
    """Runs the model on image files; writes overlays and a COCO results JSON.

    Args:
      model: a `MaskRCNN` (anything with `predict_images(images, score_threshold,
        batch_size)` and `label_map`).
      paths: image files (see `expand_inputs`).
      out_dir: folder for the overlays (created if missing).
      score_threshold: detections scoring below it are neither drawn nor written.
      results_path: the results JSON; default `out_dir/results.json`.
      image_ids: optional {file name: COCO image id}, e.g. `image_ids_from_annotations`;
        see `resolve_image_ids`. Default: 1-based positions in `paths`.
      keypoint_threshold: keypoints scoring below it are not drawn on the overlays; poses
        are drawn with the model's `config.keypoint_skeleton`.
      batch_size: images read and predicted together (`MaskRCNN.predict_images`: only
        images of one padded size share a batch; the results are those of one at a time).

    Returns:
      {"images": inputs processed, "skipped": unreadable inputs, "skipped_files": their paths,
       "detections": detections written (score >= threshold), "results_path": str,
       "overlays": [overlay path of each processed input, in input order]}.

    Raises:
      ValueError: no paths, or an input without an id in `image_ids` (checked before any
        image is read, so a long run cannot fail at its end).
    """
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("predict_files: no image paths given")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"predict_files: batch_size={batch_size!r}, expected an integer >= 1")
    ids = resolve_image_ids(paths, image_ids)
    names = overlay_names(paths)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    results_path = (os.path.join(out_dir, RESULTS_FILE_NAME) if results_path is None
                    else os.fspath(results_path))
    results_dir = os.path.dirname(os.path.abspath(results_path))
    os.makedirs(results_dir, exist_ok=True)
    label_map = model.label_map
    class_names = label_map.class_names
    # Anything with predict_images and label_map will do; without a config, no limbs.
    skeleton = tuple(getattr(getattr(model, "config", None), "keypoint_skeleton", ()))

    results: list[dict] = []
    overlays: list[str] = []
    skipped: list[str] = []
    for chunk in _chunks(list(zip(paths, ids, names)), batch_size):
        readable = []
        for path, image_id, name in chunk:
            try:
                readable.append((path, image_id, name, read_image(path)))
            except ImageReadError as e:
                # The message already starts with the path.
                logging.warning("skipping unreadable image: %s", e)
                skipped.append(path)
        if not readable:
            continue
        # Kept by score before masks are pasted (mrcnn_tf.postprocess); images of one
        # padded size run together (modeling.predictor).
        predictions = model.predict_images([item[3] for item in readable],
                                           score_threshold=score_threshold,
                                           batch_size=batch_size)
        for (path, image_id, name, image), kept in zip(readable, predictions):
            overlay = draw_prediction(image, kept, class_names, skeleton, keypoint_threshold)
            overlay_path = os.path.join(out_dir, name)
            write_png_atomic(overlay_path, overlay)
            overlays.append(overlay_path)
            image_results = predictions_to_coco_results(image_id, kept, label_map)
            for r in image_results:
                r["file_name"] = path
            results += image_results
            logging.info("%s: %d detections with score >= %g (image id %d) -> %s", path,
                         len(kept["scores"]), score_threshold, image_id, overlay_path)

    write_json_atomic(results_path, results)
    summary = {
        "images": len(overlays),
        "skipped": len(skipped),
        "skipped_files": skipped,
        "detections": len(results),
        "results_path": results_path,
        "overlays": overlays,
    }
    logging.info("predicted %d images (%d skipped): %d detections, results in %s",
                 summary["images"], summary["skipped"], summary["detections"], results_path)
    return summary


def _chunks(items: list, size: int) -> list[list]:
    """`items` in consecutive lists of at most `size`."""
    return [items[start:start + size] for start in range(0, len(items), size)]
