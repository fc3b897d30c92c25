"""COCO annotation files from examples: the ground truth the synthetic datasets write and the
evaluation builds, and the encoders (RLE masks, boxes, keypoints) that the evaluation's results
writer shares.

Box convention: (y1, x1, y2, x2) float pixels with exclusive right/bottom edges, so a mask
covering columns 3..7 has x1 = 3, x2 = 8 and COCO width x2 - x1 = 5, the same width
`pycocotools.mask.toBbox` reports for that mask. Keypoints (y, x, v) in continuous pixels are
written in COCO's integer-index convention (x - 0.5, y - 0.5), Detectron2's rule (see
mrcnn_tf.keypoint_spec).
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from mrcnn_tf import keypoint_spec
from mrcnn_tf.io_utils import write_json_atomic
from mrcnn_tf.labels import LabelMap


def encode_masks(masks: np.ndarray) -> list[dict]:
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


def yxyx_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """[N, 4] (y1, x1, y2, x2) exclusive edges -> [N, 4] COCO (x, y, width, height)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack(
        [boxes[:, 1], boxes[:, 0], boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]], axis=1
    )


def keypoints_to_coco_rows(keypoints: Any, n: int, where: str, third: str) -> np.ndarray:
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
    rows = keypoints_to_coco_rows(keypoints, n, where, "v")
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
            rles = encode_masks(masks)
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
        xywh = yxyx_to_xywh(boxes)

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


def coco_from_dict(dataset: dict) -> COCO:
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
    return coco_from_dict(
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
