"""Synthetic COCO-val-like ground truth and a detector's results for timing COCOeval backends.

No pixels: only what COCOeval reads. Built with NumPy over all instances at once (the only
per-image loop is pycocotools' polygon-to-RLE encoding of the results), so 5,000 images take
seconds.

Ground truth (`ground_truth`), shaped like COCO val2017 (5,000 images, 36,781 instances,
80 categories, about 41% small / 34% medium / 24% large, 1% crowd, 48 images without any):
  * image sizes from benchmarks/coco_like_images.py's COCO-like mix (mostly 640x480);
  * instances per image: negative binomial, mean 7.3, so some images have none and a few
    many;
  * COCO's 80 category ids (1..90 with its gaps), frequencies falling off like a Zipf law
    (the first, "person"-like, about a quarter of the instances);
  * each instance a star-shaped polygon of 16 vertices (a polygon like COCO's, 2-decimal
    coordinates) whose area is drawn per size class; "area" is the polygon's area, "bbox" its
    extent;
  * crowd instances (iscrowd=1) carry an uncompressed RLE, as COCO's do.

Results (`detections`), like a real detector's: `per_image` per image (100), sorted by
nothing. Each non-crowd instance draws 0-3 detections near it (vertices jittered, the whole
shifted and rescaled a little, 10% with a wrong category), scored high; the rest are false
positives anywhere (mostly small, any category) scored low. Each result has "bbox" (the
polygon's extent, jittered) and "segmentation" (compressed RLE, counts as str, as
mrcnn_tf.evaluation.coco_eval writes them).

Keypoints (`keypoint_ground_truth`, `keypoint_detections`): one "person" category with K
named keypoints and custom sigmas (KEYPOINT_SIGMAS, not COCO's), people with some keypoints
unlabelled or occluded, some with none (COCOeval ignores those) and some crowd; 20 results an
image (COCOeval's keypoint maxDets), jittered people and false positives.
"""

import numpy as np
from pycocotools import mask as mask_util

from benchmarks.coco_like_images import coco_like_sizes

# COCO's 80 category ids: 1..90 with the ten ids COCO left out.
COCO_CATEGORY_IDS = tuple(i for i in range(1, 91)
                          if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))
VERTICES = 16
INSTANCES_PER_IMAGE = 7.3
# (label, share of instances, area range in px^2): COCOeval's size classes.
SIZE_CLASSES = (("small", 0.41, (12.0, 32.0 ** 2)), ("medium", 0.34, (32.0 ** 2, 96.0 ** 2)),
                ("large", 0.25, (96.0 ** 2, 200_000.0)))
CROWD_SHARE = 0.01
DETECTIONS_PER_IMAGE = 100
# Of a non-crowd instance: how many detections land near it (0, 1, 2, 3).
NEAR_COUNT_P = (0.15, 0.5, 0.25, 0.1)
WRONG_CATEGORY_SHARE = 0.1
KEYPOINT_NAMES = tuple(f"kp{i}" for i in range(17))
KEYPOINT_SIGMAS = tuple(float(s) for s in np.linspace(0.03, 0.11, len(KEYPOINT_NAMES)))
KEYPOINT_DETECTIONS_PER_IMAGE = 20


def _zipf_weights(count, exponent=1.0):
    weights = 1.0 / np.arange(1, count + 1) ** exponent
    return weights / weights.sum()


def _images(num_images, seed):
    """COCO image entries (ids 1..N) and their (width, height) as arrays [N]."""
    sizes = np.asarray(coco_like_sizes(num_images, seed), np.float64)
    images = [{"id": i + 1, "width": int(w), "height": int(h), "file_name": f"{i + 1:012d}.jpg"}
              for i, (w, h) in enumerate(sizes)]
    return images, sizes[:, 0], sizes[:, 1]


def _areas(rng, count, small_share=None):
    """Target areas [count] drawn per SIZE_CLASSES (log-uniform inside a class)."""
    shares = np.array([share for _, share, _ in SIZE_CLASSES])
    if small_share is not None:
        shares = np.array([small_share, (1 - small_share) * 0.6, (1 - small_share) * 0.4])
    classes = rng.choice(len(SIZE_CLASSES), size=count, p=shares / shares.sum())
    low = np.log([SIZE_CLASSES[c][2][0] for c in classes])
    high = np.log([SIZE_CLASSES[c][2][1] for c in classes])
    return np.exp(rng.uniform(low, high))


def _star_polygons(rng, width, height, areas):
    """Star-shaped polygons [N, VERTICES, 2] (x, y) of about `areas` inside images of
    `width` x `height` [N] each: an ellipse of random aspect with radii varying 0.7-1.0."""
    count = len(areas)
    aspect = np.exp(rng.uniform(np.log(0.4), np.log(2.5), count))
    # Mean r^2 of U(0.7, 1) is ~0.73: an ellipse of area A / (0.73 pi) gives polygons of ~A.
    rx = np.sqrt(areas / (0.73 * np.pi) * aspect)
    ry = np.sqrt(areas / (0.73 * np.pi) / aspect)
    rx, ry = np.minimum(rx, width / 2), np.minimum(ry, height / 2)
    cx = rng.uniform(rx, width - rx)
    cy = rng.uniform(ry, height - ry)
    angles = (np.arange(VERTICES) / VERTICES * 2 * np.pi
              + rng.uniform(-0.1, 0.1, (count, VERTICES)))
    radius = rng.uniform(0.7, 1.0, (count, VERTICES))
    x = cx[:, None] + rx[:, None] * radius * np.cos(angles)
    y = cy[:, None] + ry[:, None] * radius * np.sin(angles)
    return np.stack([np.clip(x, 0, width[:, None]), np.clip(y, 0, height[:, None])], -1)


def _polygon_area(polygons):
    """Shoelace areas [N] of polygons [N, V, 2]."""
    x, y = polygons[..., 0], polygons[..., 1]
    return 0.5 * np.abs(np.sum(x * np.roll(y, -1, 1) - np.roll(x, -1, 1) * y, axis=1))


def _extent(polygons):
    """[x, y, w, h] [N, 4] of polygons [N, V, 2]."""
    low, high = polygons.min(1), polygons.max(1)
    return np.concatenate([low, high - low], 1)


def _uncompressed_rle(polygon, height, width):
    """COCO's crowd encoding of one polygon [V, 2]: {"counts": [runs...], "size": [h, w]},
    runs of 0s and 1s down the columns, starting with 0s."""
    rle = mask_util.frPyObjects([polygon.reshape(-1).tolist()], height, width)
    flat = mask_util.decode(rle)[..., 0].reshape(-1, order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(edges).tolist()
    if flat[0]:
        counts = [0] + counts
    return {"counts": counts, "size": [int(height), int(width)]}


def _categories(keypoints=False):
    if keypoints:
        skeleton = [[i + 1, i + 2] for i in range(len(KEYPOINT_NAMES) - 1)]
        return [{"id": 1, "name": "person", "supercategory": "person",
                 "keypoints": list(KEYPOINT_NAMES), "skeleton": skeleton}]
    return [{"id": c, "name": f"category_{c}", "supercategory": "thing"}
            for c in COCO_CATEGORY_IDS]


def ground_truth(num_images, seed=0):
    """A COCO ground-truth dict (images, annotations, categories) like COCO val (module doc)."""
    rng = np.random.default_rng(seed)
    images, widths, heights = _images(num_images, seed)
    # Negative binomial with n=4: mean INSTANCES_PER_IMAGE, ~2% of images empty.
    per_image = rng.negative_binomial(4, 4 / (4 + INSTANCES_PER_IMAGE), num_images)
    per_image = np.minimum(per_image, 60)
    image_index = np.repeat(np.arange(num_images), per_image)
    count = len(image_index)
    width, height = widths[image_index], heights[image_index]
    polygons = _star_polygons(rng, width, height, _areas(rng, count))
    categories = rng.choice(COCO_CATEGORY_IDS, size=count, p=_zipf_weights(80))
    crowd = rng.random(count) < CROWD_SHARE
    areas, boxes = _polygon_area(polygons), _extent(polygons)
    annotations = []
    for i in range(count):
        if crowd[i]:
            segmentation = _uncompressed_rle(polygons[i], int(height[i]), int(width[i]))
        else:
            segmentation = [np.round(polygons[i].reshape(-1), 2).tolist()]
        annotations.append({
            "id": i + 1, "image_id": int(image_index[i]) + 1, "category_id": int(categories[i]),
            "segmentation": segmentation, "area": float(areas[i]),
            "bbox": [round(float(v), 2) for v in boxes[i]], "iscrowd": int(crowd[i])})
    return {"images": images, "annotations": annotations, "categories": _categories()}


def _jitter(rng, polygons, width, height, strength):
    """Polygons [N, V, 2] moved like a detector's masks: each vertex by ~strength of the
    object's size, the whole shifted by ~strength and rescaled by ~strength about its centre."""
    size = np.sqrt(np.maximum(_polygon_area(polygons), 1.0))[:, None, None]
    centre = polygons.mean(1, keepdims=True)
    scale = np.exp(rng.normal(0, strength, (len(polygons), 1, 1)))
    shift = rng.normal(0, strength, (len(polygons), 1, 2)) * size
    moved = (centre + (polygons - centre) * scale + shift
             + rng.normal(0, strength / 2, polygons.shape) * size)
    return np.stack([np.clip(moved[..., 0], 0, width[:, None]),
                     np.clip(moved[..., 1], 0, height[:, None])], -1)


def _near_and_false(rng, gt, per_image):
    """Indices, per result, of the image (0-based) and of the instance it is near (-1: a false
    positive), `per_image` results an image."""
    annotations = gt["annotations"]
    num_images = len(gt["images"])
    candidates = np.array([i for i, a in enumerate(annotations) if not a["iscrowd"]], np.int64)
    near = rng.choice(len(NEAR_COUNT_P), size=len(candidates), p=NEAR_COUNT_P)
    near_index = np.repeat(candidates, near)
    near_image = np.array([annotations[i]["image_id"] - 1 for i in near_index], np.int64)
    # At most per_image near results an image (a crowded image keeps its first ones).
    order = np.argsort(near_image, kind="stable")
    near_index, near_image = near_index[order], near_image[order]
    starts = np.searchsorted(near_image, np.arange(num_images))
    rank = np.arange(len(near_image)) - starts[near_image]
    keep = rank < per_image
    near_index, near_image = near_index[keep], near_image[keep]
    false_count = per_image - np.bincount(near_image, minlength=num_images)
    false_image = np.repeat(np.arange(num_images), false_count)
    image = np.concatenate([near_image, false_image])
    source = np.concatenate([near_index, np.full(len(false_image), -1)])
    order = np.argsort(image, kind="stable")
    return image[order], source[order]


def detections(gt, seed=0, per_image=DETECTIONS_PER_IMAGE):
    """COCO results (bbox, segmentation as compressed RLE, score) for `gt` (module doc)."""
    rng = np.random.default_rng(seed + 1)
    images, annotations = gt["images"], gt["annotations"]
    widths = np.array([im["width"] for im in images], np.float64)
    heights = np.array([im["height"] for im in images], np.float64)
    image, source = _near_and_false(rng, gt, per_image)
    count, is_near = len(image), source >= 0
    width, height = widths[image], heights[image]
    polygons = np.empty((count, VERTICES, 2))
    gt_polygons = np.array([annotations[i]["segmentation"][0] for i in source[is_near]],
                           np.float64).reshape(-1, VERTICES, 2)
    polygons[is_near] = _jitter(rng, gt_polygons, width[is_near], height[is_near], 0.08)
    false_areas = _areas(rng, int((~is_near).sum()), small_share=0.6)
    polygons[~is_near] = _star_polygons(rng, width[~is_near], height[~is_near], false_areas)
    categories = rng.choice(COCO_CATEGORY_IDS, size=count, p=_zipf_weights(80))
    right = is_near & (rng.random(count) >= WRONG_CATEGORY_SHARE)
    categories[right] = [annotations[i]["category_id"] for i in source[right]]
    scores = np.where(is_near, rng.beta(5, 2, count), rng.beta(1, 6, count))
    boxes = _extent(polygons)
    boxes[:, :2] += rng.normal(0, 0.03, (count, 2)) * boxes[:, 2:]
    boxes[:, 2:] *= np.exp(rng.normal(0, 0.03, (count, 2)))
    results = []
    bounds = np.flatnonzero(np.diff(np.concatenate([[-1], image, [len(images)]])))
    for start, stop in zip(bounds[:-1], bounds[1:]):
        index = int(image[start])
        rles = mask_util.frPyObjects([p.reshape(-1) for p in polygons[start:stop]],
                                     int(heights[index]), int(widths[index]))
        for j, rle in zip(range(start, stop), rles):
            results.append({
                "image_id": index + 1, "category_id": int(categories[j]),
                "bbox": [float(v) for v in boxes[j]], "score": float(scores[j]),
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")}})
    return results


def keypoint_ground_truth(num_images, seed=0):
    """A COCO person-keypoints ground-truth dict: ~3 people an image (module doc)."""
    rng = np.random.default_rng(seed + 2)
    images, widths, heights = _images(num_images, seed)
    per_image = rng.poisson(3.0, num_images)
    image_index = np.repeat(np.arange(num_images), per_image)
    count, k = len(image_index), len(KEYPOINT_NAMES)
    width, height = widths[image_index], heights[image_index]
    # People are medium or large: COCO labels no keypoints on small people.
    areas = _areas(rng, count, small_share=0.05)
    boxes = _extent(_star_polygons(rng, width, height, areas))
    points = boxes[:, None, :2] + rng.random((count, k, 2)) * boxes[:, None, 2:]
    visibility = rng.choice(3, size=(count, k), p=(0.3, 0.15, 0.55))
    visibility[rng.random(count) < 0.1] = 0  # people with no labelled keypoint
    points[visibility == 0] = 0
    crowd = rng.random(count) < 0.02
    annotations = []
    for i in range(count):
        rows = np.concatenate([np.round(points[i], 1), visibility[i][:, None]], 1)
        annotations.append({
            "id": i + 1, "image_id": int(image_index[i]) + 1, "category_id": 1,
            "bbox": [round(float(v), 2) for v in boxes[i]],
            "area": float(boxes[i, 2] * boxes[i, 3] * 0.6), "iscrowd": int(crowd[i]),
            "keypoints": rows.reshape(-1).tolist(),
            "num_keypoints": int((visibility[i] > 0).sum())})
    return {"images": images, "annotations": annotations,
            "categories": _categories(keypoints=True)}


def keypoint_detections(gt, seed=0, per_image=KEYPOINT_DETECTIONS_PER_IMAGE):
    """COCO keypoint results (keypoints, bbox, score) for `gt`: people found with jittered
    keypoints, and false positives."""
    rng = np.random.default_rng(seed + 3)
    annotations, k = gt["annotations"], len(KEYPOINT_NAMES)
    widths = np.array([im["width"] for im in gt["images"]], np.float64)
    heights = np.array([im["height"] for im in gt["images"]], np.float64)
    image, source = _near_and_false(rng, gt, per_image)
    count, is_near = len(image), source >= 0
    boxes = _extent(_star_polygons(rng, widths[image], heights[image],
                                   _areas(rng, count, small_share=0.3)))
    boxes[is_near] = [annotations[i]["bbox"] for i in source[is_near]]
    points = boxes[:, None, :2] + rng.random((count, k, 2)) * boxes[:, None, 2:]
    gt_points = np.array([annotations[i]["keypoints"] for i in source[is_near]],
                         np.float64).reshape(-1, k, 3)
    labelled = gt_points[..., 2] > 0
    size = np.sqrt(boxes[is_near, 2] * boxes[is_near, 3])[:, None, None]
    moved = gt_points[..., :2] + rng.normal(0, 0.05, (len(gt_points), k, 2)) * size
    points[is_near] = np.where(labelled[..., None], moved, points[is_near])
    scores = np.where(is_near, rng.beta(5, 2, count), rng.beta(1, 6, count))
    rows = np.concatenate([points, rng.random((count, k, 1))], -1).reshape(count, -1)
    return [{"image_id": int(image[j]) + 1, "category_id": 1, "score": float(scores[j]),
             "bbox": [float(v) for v in boxes[j]], "keypoints": rows[j].tolist()}
            for j in range(count)]
