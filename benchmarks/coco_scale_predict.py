"""coco_scale part `predict`: `MaskRCNN.predict_images` over photos of COCO-like mixed sizes,
one image at a time against batches of 8 (images grouped by padded canvas,
`modeling.predictor`), with the check that batching changes the detections by no more than
float rounding does (see MIN_MATCHED_FRACTION).

The model has seeded random weights made numerically sane (benchmarks/models.py) and score
threshold 0, so every image carries config.detections_per_image detections through the mask
head and the pasting, as a trained model's busy image does. The full run uses the COCO preset
at a smaller input size (shorter side 512, longer at most 853 instead of 800 / 1333) so it
takes minutes on a CPU, not tens of minutes; the quick run a tiny model on small images.
"""

import time

import numpy as np

from benchmarks import coco_like_images, models, threads
from mrcnn_tf.config import get_config

BATCH_SIZES = (1, 8)
BOX_ATOL = 1e-3  # pixels: batched kernels may round floats differently, nothing more
# Random weights score detections almost alike (within a few hundredths), so the rounding of
# another batch size (features differ by ~2e-6, whichever image shares the batch) can swap two
# near-tied detections in order, or across the top-k cut-offs of proposals and detections.
# An image agrees when at least this share of its detections is found in both lists; a batch
# that mixed images up, or misplaced one in its canvas, would match next to none.
MIN_MATCHED_FRACTION = 0.9
# scale: of COCO_LIKE_SIZES' sides.
FULL = {"preset": "coco_r50_fpn", "overrides": {"image_min_size": 512, "image_max_size": 853},
        "num_images": 64, "scale": 1.0}
QUICK = {"preset": "shapes_tiny", "overrides": {}, "num_images": 8, "scale": 0.2}


def identical_in_order(alone, batched):
    """Whether two images' detections are the same list: as many, boxes allclose (BOX_ATOL)
    and the same class ids, row by row."""
    return (alone["boxes"].shape == batched["boxes"].shape
            and np.allclose(alone["boxes"], batched["boxes"], atol=BOX_ATOL)
            and np.array_equal(alone["class_ids"], batched["class_ids"]))


def matched_fraction(alone, batched):
    """The share of one image's detections found in both lists, in any order: pairs of the
    same class with boxes within BOX_ATOL, each detection paired once, over the longer list
    (1.0 when both are empty)."""
    count = max(len(alone["boxes"]), len(batched["boxes"]))
    if count == 0:
        return 1.0
    close = ((np.abs(alone["boxes"][:, None] - batched["boxes"][None]).max(axis=-1)
              <= BOX_ATOL)
             & (alone["class_ids"][:, None] == batched["class_ids"][None]))  # [n1, n8]
    taken = np.zeros(len(batched["boxes"]), bool)
    for candidates in close:
        free = np.flatnonzero(candidates & ~taken)
        if free.size:
            taken[free[0]] = True
    return float(taken.sum()) / count


def _timed_pass(model, images, batch_size):
    """(detections, seconds) of one predict_images pass over `images`."""
    start = time.perf_counter()
    detections = model.predict_images(images, batch_size=batch_size)
    return detections, time.perf_counter() - start


def run(quick=False):
    """Predicts every photo with each batch size (one untimed warm-up pass each, so tracing
    is not timed, then one timed pass). Returns {"rows": one per batch size,
    "batched_over_alone": images/s ratio, "detections_agree": True (asserted: every image's
    `matched_fraction` at least MIN_MATCHED_FRACTION), "images_identical_in_order" (how many
    images' lists are identical, `identical_in_order`), "matched_fraction_min" and
    "matched_fraction_mean", "settings"}."""
    settings = QUICK if quick else FULL
    config = get_config(settings["preset"], backbone_weights=None, score_threshold=0.0,
                        **settings["overrides"])
    sizes = coco_like_images.coco_like_sizes(settings["num_images"], seed=1,
                                             scale=settings["scale"])
    images = coco_like_images.photos(sizes, seed=1)
    model = models.build_model(config, seed=0, folded=True)
    rows, detections = [], {}
    for batch_size in BATCH_SIZES:
        _timed_pass(model, images, batch_size)  # warm-up: traces every canvas and batch shape
        detections[batch_size], seconds = _timed_pass(model, images, batch_size)
        rows.append({"batch_size": batch_size, "seconds": round(seconds, 3),
                     "images_per_s": round(len(images) / seconds, 3),
                     "detections_per_image": round(float(np.mean(
                         [len(d["scores"]) for d in detections[batch_size]])), 2)})
    alone, batched = detections[BATCH_SIZES[0]], detections[BATCH_SIZES[-1]]
    matched = [matched_fraction(a, b) for a, b in zip(alone, batched)]
    disagree = [i for i, m in enumerate(matched) if m < MIN_MATCHED_FRACTION]
    assert not disagree, (f"batch {BATCH_SIZES[-1]} changed the detections of images "
                          f"{disagree} (sizes {[sizes[i] for i in disagree]}, matched "
                          f"{[round(matched[i], 3) for i in disagree]})")
    return {
        "rows": rows,
        "batched_over_alone": round(rows[-1]["images_per_s"] / rows[0]["images_per_s"], 3),
        "detections_agree": not disagree,
        "images_identical_in_order": sum(identical_in_order(a, b)
                                         for a, b in zip(alone, batched)),
        "matched_fraction_min": round(min(matched), 4),
        "matched_fraction_mean": round(float(np.mean(matched)), 4),
        "settings": {
            "quick": bool(quick), "preset": settings["preset"],
            "overrides": dict(settings["overrides"], score_threshold=0.0,
                              backbone_weights=None),
            "image_min_size": config.image_min_size, "image_max_size": config.image_max_size,
            "detections_per_image": config.detections_per_image,
            "num_images": len(images), "size_scale": settings["scale"],
            "sizes_mix": [list(s) for s in coco_like_images.COCO_LIKE_SIZES],
            "sizes_drawn": {f"{w}x{h}": sizes.count((w, h)) for w, h in sorted(set(sizes))},
            "batch_sizes": list(BATCH_SIZES), "warmup_passes": 1, "timed_passes": 1,
            "box_atol": BOX_ATOL, "min_matched_fraction": MIN_MATCHED_FRACTION,
            **threads.tensorflow_threads()},
    }
