"""coco_scale part `train`: training images/s of the R50-FPN COCO preset on this CPU, with
batches padded to the fixed square (before) and to each batch's own canvas (after).

The same photo-like images in the COCO-like size mix (benchmarks/coco_like_images.py), each with
its polygon objects as instances, go through `training.input.training_stream` (seed 0, so both
modes see the same images in the same order and the same scale jitter) into `model.fit` of
one model per mode with the same seeded random weights. Each mode first runs WARMUP_STEPS
steps (tracing, and in "batch" mode the canvas shapes the graph has not met yet) and then
STEPS timed steps; the modes are timed one after the other in this one process, each its own
model. images/s = STEPS x global batch / seconds.
"""

import time

import cv2
import keras
import numpy as np

from benchmarks.coco_like_images import coco_like_sizes, photo
from benchmarks.threads import tensorflow_threads
from benchmarks.models import build_model
from mrcnn_tf.config import get_config
from mrcnn_tf.data.shapes import tight_boxes
from mrcnn_tf.training.input import IndexedSource, training_stream

FULL = {"preset": "coco_r50_fpn", "images": 16, "scale": 1.0, "global_batch": 2,
        "warmup_steps": 2, "steps": 6}
QUICK = {"preset": "shapes_tiny", "images": 6, "scale": 0.15, "global_batch": 2,
         "warmup_steps": 1, "steps": 2, "overrides": {"image_min_size": 64,
                                                      "image_max_size": 128}}
MODES = ("square", "batch")
SEED = 0


def photo_examples(count, scale=1.0, seed=SEED):
    """`count` training examples (schema.example_signature) of photo-like images in the
    COCO-like size mix, `scale` shrinking each side, their objects as instances."""
    rng = np.random.default_rng(seed)
    examples = []
    for image_id, (width, height) in enumerate(coco_like_sizes(count, seed, scale)):
        image, objects = photo(width, height, rng)
        masks = np.zeros((len(objects), height, width), np.uint8)
        for row, (_, polygon) in enumerate(objects):
            cv2.fillPoly(masks[row], [np.round(polygon).astype(np.int32)], 1)
        keep = masks.reshape(len(masks), -1).any(axis=1)
        examples.append({
            "image": image, "boxes": tight_boxes(masks[keep]),
            "class_ids": np.asarray([c + 1 for c, _ in objects], np.int32)[keep],
            "masks": masks[keep], "is_crowd": np.zeros(int(keep.sum()), bool),
            "image_id": np.int64(image_id)})
    return examples


def time_mode(source, config, settings):
    """(images/s, seconds of the timed steps, padded pixels per content pixel) of one mode."""
    model = build_model(config, seed=SEED)
    model.compile(optimizer=keras.optimizers.SGD(0.001, momentum=0.9))
    batch = settings["global_batch"]
    stream = training_stream(source, config, batch, SEED)
    model.fit(stream, steps_per_epoch=settings["warmup_steps"], epochs=1, verbose=0)
    timed = stream.skip(settings["warmup_steps"])
    start = time.perf_counter()
    model.fit(timed, steps_per_epoch=settings["steps"], epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    padded = content = 0
    for data in timed.take(settings["steps"]).as_numpy_iterator():
        padded += int(np.prod(data["images"].shape[:3]))
        content += int(np.prod(data["image_shape"], axis=1).sum())
    return settings["steps"] * batch / seconds, seconds, padded / content


def run(quick=False):
    """{"rows": one per padding mode, "speedup" (batch over square), and the settings}."""
    settings = QUICK if quick else FULL
    config = get_config(settings["preset"], num_classes=3, backbone_weights=None,
                        **settings.get("overrides", {}))
    source = IndexedSource.from_examples(photo_examples(settings["images"], settings["scale"]))
    rows = []
    for mode in MODES:
        images_per_s, seconds, ratio = time_mode(source, config.replace(batch_padding=mode),
                                                 settings)
        rows.append({"batch_padding": mode, "images_per_s": round(images_per_s, 3),
                     "timed_s": round(seconds, 1), "padded_over_content": round(ratio, 3)})
    speedup = rows[1]["images_per_s"] / rows[0]["images_per_s"]
    return {"rows": rows, "speedup_batch_over_square": round(speedup, 2),
            "settings": dict(settings, threads=tensorflow_threads())}
