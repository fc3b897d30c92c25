"""Input pipeline throughput against the training step it feeds.

    python -m benchmarks input_vs_step --preset coco_r50_fpn --image_size 640 --batch_size 2

Writes a COCO-format copy of the synthetic shapes at a COCO-like size (PNG + RLE JSON), then
measures images/s of (a) CocoDataset -> make_training_dataset and (b) TFRecords ->
make_training_dataset with the given preset (benchmarks/input_pipeline.py, as the suite's
input_pipeline benchmark), and (unless --no-step) the time of one training step of that
preset's model on the same batches. Prints the numbers as JSON.
"""

import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.input_pipeline import throughput, training_datasets, write_sources  # noqa: E402
from mrcnn_tf.config import get_config  # noqa: E402
from mrcnn_tf.modeling.mask_rcnn import MaskRCNN  # noqa: E402


def add_arguments(parser):
    parser.add_argument("--preset", default="coco_r50_fpn")
    parser.add_argument("--image_size", type=int, default=640)
    parser.add_argument("--num_images", type=int, default=48)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--no-step", dest="step", action="store_false")
    parser.add_argument("--out", default=None, help="write the numbers as JSON here")


def main(args):
    """Measures, prints the numbers as JSON and writes them to --out; exit status 0."""
    numbers = run(args)
    print(json.dumps(numbers, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(numbers, f, indent=2)
    return 0


def run(args):
    """{preset, image_size, batch_size, canvas, json_images_per_s, tfrecord_images_per_s and,
    with the step, train_step_s and train_images_per_s}."""
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
    return numbers


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
