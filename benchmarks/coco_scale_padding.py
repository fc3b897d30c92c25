"""coco_scale part `padding`: padded pixels per image over content pixels, per
`Config.batch_padding`, on a COCO-like size distribution.

The global batches of a training run are planned without reading a pixel
(`training.input.plan_batches` on an `IndexedSource` that knows only the images' sizes:
benchmarks/coco_like_images.COCO_LIKE_SIZES), with the COCO preset's resize and scale jitter,
over two passes of the images, and again without the jitter (every shorter side
image_min_size). For each padding mode the ratio is

    sum over batches of (canvas area x images in the batch) / sum of resized image areas,

1.0 meaning no padding at all. "square" is the fixed square every batch had before batches
were grouped by orientation; the issue's target for the default ("batch") is <= 1.25.
"""

import numpy as np

from benchmarks.coco_like_images import coco_like_sizes
from mrcnn_tf.config import BATCH_PADDINGS, get_config
from mrcnn_tf.training.input import IndexedSource, plan_batches

PRESET = "coco_r50_fpn"
FULL = {"images": 2000, "global_batches": (2, 16)}
QUICK = {"images": 200, "global_batches": (2, 16)}
SEED = 0


def padding_ratio(sizes, config, global_batch, passes=2, seed=SEED):
    """(padded / content pixel ratio, distinct canvases) of `passes` passes over images of
    `sizes` ((width, height) pairs) in global batches of `global_batch`."""
    heights_widths = np.asarray([(h, w) for w, h in sizes], np.int32)
    source = IndexedSource(len(sizes), lambda j: None, "sizes", sizes=heights_widths)
    steps = passes * len(sizes) // global_batch
    padded = content = 0
    canvases = set()
    plans = plan_batches(source, config, global_batch, seed).take(steps)
    for _, _, resized, canvas in plans.as_numpy_iterator():
        padded += int(canvas[0]) * int(canvas[1]) * global_batch
        content += int(np.prod(resized.astype(np.int64), axis=1).sum())
        canvases.add((int(canvas[0]), int(canvas[1])))
    return padded / content, sorted(canvases)


def run(quick=False):
    """{"rows": one per (scale jitter on or off, global batch, padding mode), and the
    settings}."""
    settings = QUICK if quick else FULL
    sizes = coco_like_sizes(settings["images"], seed=SEED)
    base = get_config(PRESET, backbone_weights=None)
    rows = []
    for jitter in (True, False):
        config = base if jitter else base.replace(train_min_sizes=())
        for global_batch in settings["global_batches"]:
            for mode in BATCH_PADDINGS:
                ratio, canvases = padding_ratio(sizes, config.replace(batch_padding=mode),
                                                global_batch)
                rows.append({"scale_jitter": jitter, "global_batch": global_batch,
                             "batch_padding": mode, "padded_over_content": round(ratio, 3),
                             "distinct_canvases": len(canvases),
                             "canvases": (canvases if len(canvases) <= 3
                                          else canvases[:3] + ["..."])})
    return {"rows": rows, "preset": PRESET, "images": settings["images"], "passes": 2,
            "train_min_sizes": list(base.train_min_sizes), "image_max_size": base.image_max_size,
            "size_mix": "benchmarks/coco_like_images.COCO_LIKE_SIZES"}
