"""Input pipeline throughput against the training step it feeds.

Writes a COCO-format copy of the synthetic shapes at a COCO-like size (PNG + RLE JSON), then
measures images/s of (a) CocoDataset -> make_training_dataset and (b) TFRecords ->
make_training_dataset with the given preset, and (unless --no-step) the time of one training
step of that preset's model on the same batches.

  python benchmarks/input_pipeline.py --preset coco_r50_fpn --image_size 640 --batch_size 2

`benchmarks/run.py` (the `input_pipeline` benchmark) imports `write_sources`,
`training_datasets` and `throughput` from here.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Run as a script, this folder is on sys.path but the repository root (for `benchmarks.*`
# and an uninstalled `mrcnn_tf`) may not be.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from mrcnn_tf.config import get_config  # noqa: E402
from mrcnn_tf.data import pipeline, tfrecords  # noqa: E402
from mrcnn_tf.data.coco import CocoDataset  # noqa: E402
from mrcnn_tf.data.shapes import write_shapes_coco  # noqa: E402
from mrcnn_tf.modeling.mask_rcnn import MaskRCNN  # noqa: E402

SOURCES = ("json", "tfrecord")


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
    tfrecords.make_tfrecords(coco, prefix, num_shards, progress=False)
    return coco, prefix + "-*-of-*.tfrecord"


def training_datasets(coco, pattern, config, batch_size, threads=None):
    """The training pipelines over both sources: {"json": ..., "tfrecord": ...}, each yielding
    the batches of `make_training_dataset` (images [B, P, P, 3], gt_* [B, M, ...]).

    threads: cap tf.data's private thread pool (None: TF's default, one per core).
    """
    datasets = {
        "json": pipeline.make_training_dataset(coco.as_tf_dataset(), config, batch_size),
        "tfrecord": pipeline.make_training_dataset(tfrecords.tfrecord_dataset(pattern), config,
                                                   batch_size),
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


def train_step_seconds(config, batch, steps):
    """Mean seconds of a compiled SGD training step of a random-init model on `batch`."""
    keras.utils.set_random_seed(0)
    model = MaskRCNN(config)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    step = tf.function(model.train_step)
    step(batch)  # trace and first run
    start = time.perf_counter()
    for _ in range(steps):
        step(batch)
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="coco_r50_fpn")
    parser.add_argument("--image_size", type=int, default=640)
    parser.add_argument("--num_images", type=int, default=48)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--no-step", dest="step", action="store_false")
    parser.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = parser.parse_args()

    config = get_config(args.preset, num_classes=3, backbone_weights=None)
    with tempfile.TemporaryDirectory() as root:
        coco, pattern = write_sources(root, args.image_size, args.num_images)
        datasets = training_datasets(coco, pattern, config, args.batch_size)
        rates = throughput(datasets, args.batch_size, args.batches)
        numbers = {
            "preset": args.preset, "image_size": args.image_size,
            "batch_size": args.batch_size, "canvas": config.max_padded_size,
            "json_images_per_s": round(statistics.median(rates["json"]), 1),
            "tfrecord_images_per_s": round(statistics.median(rates["tfrecord"]), 1),
        }
        if args.step:
            seconds = train_step_seconds(config, next(iter(datasets["tfrecord"])), args.steps)
            numbers["train_step_s"] = round(seconds, 2)
            numbers["train_images_per_s"] = round(args.batch_size / seconds, 2)
    print(json.dumps(numbers, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(numbers, f, indent=2)


if __name__ == "__main__":
    main()
