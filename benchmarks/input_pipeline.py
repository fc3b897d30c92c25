"""Input pipeline throughput against the training step it feeds.

Writes a COCO-format copy of the synthetic shapes at a COCO-like size (PNG + RLE JSON), then
measures images/s of (a) CocoDataset -> make_training_dataset and (b) TFRecords ->
make_training_dataset with the given preset, and (unless --no-step) the time of one training
step of that preset's model on the same batches.

  python benchmarks/input_pipeline.py --preset coco_r50_fpn --image_size 640 --batch_size 2
"""

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from mrcnn_tf.config import get_config  # noqa: E402
from mrcnn_tf.data import pipeline, tfrecords  # noqa: E402
from mrcnn_tf.data.coco import CocoDataset  # noqa: E402
from mrcnn_tf.data.shapes import write_shapes_coco  # noqa: E402
from mrcnn_tf.modeling.mask_rcnn import MaskRCNN  # noqa: E402


def images_per_second(dataset, batch_size, batches):
    iterator = iter(dataset)
    next(iterator)  # start-up and first batch are not throughput
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batch_size * batches / (time.perf_counter() - start)


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
        annotations, images = write_shapes_coco(root, args.num_images, seed=0,
                                                image_size=args.image_size, max_shapes=8)
        coco = CocoDataset(annotations, images)
        prefix = os.path.join(root, "records", "shapes")
        tfrecords.make_tfrecords(coco, prefix, 4, progress=False)
        from_json = pipeline.make_training_dataset(coco.as_tf_dataset(), config,
                                                   args.batch_size)
        from_records = pipeline.make_training_dataset(
            tfrecords.tfrecord_dataset(prefix + "-*-of-*.tfrecord"), config, args.batch_size)
        numbers = {
            "preset": args.preset, "image_size": args.image_size,
            "batch_size": args.batch_size, "canvas": config.max_padded_size,
            "json_images_per_s": round(images_per_second(from_json, args.batch_size,
                                                         args.batches), 1),
            "tfrecord_images_per_s": round(images_per_second(from_records, args.batch_size,
                                                             args.batches), 1),
        }
        if args.step:
            keras.utils.set_random_seed(0)
            model = MaskRCNN(config)
            model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
            batch = next(iter(from_records))
            step = tf.function(model.train_step)
            step(batch)  # trace and first run
            start = time.perf_counter()
            for _ in range(args.steps):
                step(batch)
            seconds = (time.perf_counter() - start) / args.steps
            numbers["train_step_s"] = round(seconds, 2)
            numbers["train_images_per_s"] = round(args.batch_size / seconds, 2)
    print(json.dumps(numbers, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(numbers, f, indent=2)


if __name__ == "__main__":
    main()
