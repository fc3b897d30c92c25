"""Input pipeline throughput: synthetic shapes written as a COCO-format folder (PNG + RLE JSON)
and as TFRecords, the training pipelines over both, and their images/s.

Used by the `input_pipeline` benchmark of the suite and by the `input_vs_step` task.
"""

import os
import time

import tensorflow as tf

from mrcnn_tf.data import pipeline, tfrecord_reader, tfrecord_writer
from mrcnn_tf.data.coco import CocoDataset
from mrcnn_tf.data.shapes import write_shapes_coco


def images_per_second(dataset, batch_size, batches):
    """Images/s of `batches` batches of `dataset`, after the first (start-up) batch."""
    iterator = iter(dataset)
    next(iterator)  # start-up and first batch are not throughput
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batch_size * batches / (time.perf_counter() - start)


def write_sources(root, image_size, num_images, num_shards=4, max_shapes=8):
    """Writes `num_images` synthetic shapes as a COCO-format folder and as TFRecords.

    Returns: (CocoDataset over root/annotations.json + root/images, TFRecord glob pattern).
    """
    annotations, images = write_shapes_coco(root, num_images, seed=0, image_size=image_size,
                                            max_shapes=max_shapes)
    coco = CocoDataset(annotations, images)
    prefix = os.path.join(root, "records", "shapes")
    tfrecord_writer.make_tfrecords(coco, prefix, num_shards, progress=False)
    return coco, prefix + "-*-of-*.tfrecord"


def training_datasets(coco, pattern, config, batch_size, threads=None):
    """The training pipelines over both sources: {"json": ..., "tfrecord": ...}, each yielding
    the batches of `make_training_dataset` (images [B, P, P, 3], gt_* [B, M, ...]).

    threads: cap tf.data's private thread pool (None: TF's default, one per core).
    """
    datasets = {
        "json": pipeline.make_training_dataset(coco.as_tf_dataset(), config, batch_size),
        "tfrecord": pipeline.make_training_dataset(tfrecord_reader.tfrecord_dataset(pattern),
                                                   config, batch_size),
    }
    if threads:
        options = tf.data.Options()
        options.threading.private_threadpool_size = int(threads)
        datasets = {k: d.with_options(options) for k, d in datasets.items()}
    return datasets


def throughput(datasets, batch_size, batches, rounds=1):
    """images/s of each dataset, `rounds` times each (rounds interleaved across datasets so a
    load change on the machine hits all of them).

    Returns: {name: [images/s per round]}.
    """
    results = {name: [] for name in datasets}
    for _ in range(rounds):
        for name, dataset in datasets.items():
            results[name].append(images_per_second(dataset, batch_size, batches))
    return results
