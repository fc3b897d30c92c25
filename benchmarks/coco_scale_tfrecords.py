"""coco_scale part `tfrecords`: TFRecords of a COCO-like JPEG folder, storing the original
JPEG files (make_tfrecords' default) against PNG re-encodes (keep_originals=False).

For each way of storing images it measures: `make_tfrecords`' wall time and records/s, the
shards' bytes per record against the source JPEG files' bytes per image (the kept JPEGs'
target: at most 1.1x), and the images/s of the full training pipeline
(`training.input.training_stream` over a `TFRecordSource`, a COCO preset's sizes: scale
jitter to 640-800 px, flips, masks) after one warm-up batch.
"""

import os
import shutil
import tempfile
import time

import tensorflow as tf

from benchmarks import coco_like_images, threads
from benchmarks.input_pipeline import images_per_second
from mrcnn_tf.config import get_config
from mrcnn_tf.data.coco import CocoDataset
from mrcnn_tf.data.tfrecord_writer import make_tfrecords
from mrcnn_tf.training.input import TFRecordSource, training_stream

PRESET = "coco_r50_fpn"
GLOBAL_BATCH = 2
KEPT_JPEG_TARGET_RATIO = 1.1  # shard bytes per record / source JPEG bytes per image
# num_images: the COCO-like folder; batches: timed training batches after the warm-up one.
FULL = {"num_images": 200, "num_shards": 4, "batches": 50}
QUICK = {"num_images": 24, "num_shards": 2, "batches": 4}


def _storage_row(dataset, folder, prefix, keep_originals, num_shards):
    """make_tfrecords of `dataset` at `prefix`: its shard paths and its row (time, rate,
    bytes against the source JPEGs)."""
    start = time.perf_counter()
    paths = make_tfrecords(dataset, prefix, num_shards, progress=False,
                           keep_originals=keep_originals)
    seconds = time.perf_counter() - start
    shard_bytes = sum(tf.io.gfile.stat(p).length for p in paths)
    n = folder.num_images
    row = {"images_stored_as": "jpeg (kept)" if keep_originals else "png (re-encoded)",
           "keep_originals": keep_originals,
           "write_s": round(seconds, 3), "write_records_per_s": round(n / seconds, 2),
           "shard_bytes": shard_bytes, "kb_per_record": round(shard_bytes / n / 1e3, 2),
           "source_kb_per_image": round(folder.jpeg_bytes / n / 1e3, 2),
           "bytes_ratio": round(shard_bytes / folder.jpeg_bytes, 4)}
    return paths, row


def run(quick=False):
    """Writes the COCO-like folder, both kinds of shards, and reads each through the training
    pipeline. Returns {"rows": one per way of storing images, "kept_jpeg_ratio",
    "kept_jpeg_within_target", "settings"}."""
    settings = QUICK if quick else FULL
    num_images = settings["num_images"]
    config = get_config(PRESET, num_classes=len(coco_like_images.CATEGORY_NAMES),
                        backbone_weights=None)
    sizes = coco_like_images.coco_like_sizes(num_images, seed=0)
    root = tempfile.mkdtemp(prefix="mrcnn-bench-coco-scale-")
    try:
        folder = coco_like_images.write_coco_folder(os.path.join(root, "coco"), sizes, seed=0)
        dataset = CocoDataset(folder.annotations, folder.images)
        rows = []
        for keep_originals in (True, False):
            name = "jpeg" if keep_originals else "png"
            paths, row = _storage_row(dataset, folder, os.path.join(root, name, "train"),
                                      keep_originals, settings["num_shards"])
            stream = training_stream(TFRecordSource(paths), config, GLOBAL_BATCH, seed=0)
            row["train_stream_images_per_s"] = round(
                images_per_second(stream, GLOBAL_BATCH, settings["batches"]), 2)
            rows.append(row)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    kept_ratio = rows[0]["bytes_ratio"]
    return {
        "rows": rows,
        "kept_jpeg_ratio": kept_ratio,
        "kept_jpeg_within_target": kept_ratio <= KEPT_JPEG_TARGET_RATIO,
        "png_over_jpeg_bytes": round(rows[1]["shard_bytes"] / rows[0]["shard_bytes"], 2),
        "settings": {
            "quick": bool(quick), "num_images": num_images,
            "num_shards": settings["num_shards"], "jpeg_quality": coco_like_images.JPEG_QUALITY,
            "sizes_mix": [list(s) for s in coco_like_images.COCO_LIKE_SIZES],
            "sizes_drawn": {f"{w}x{h}": sizes.count((w, h)) for w, h in sorted(set(sizes))},
            "annotations": folder.num_annotations,
            "preset": PRESET, "train_min_sizes": list(config.train_min_sizes),
            "image_max_size": config.image_max_size, "batch_padding": config.batch_padding,
            "global_batch": GLOBAL_BATCH,
            "warmup_batches": 1, "timed_batches": settings["batches"],
            "target_ratio": KEPT_JPEG_TARGET_RATIO,
            **threads.tensorflow_threads()},
    }
