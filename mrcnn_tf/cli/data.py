"""`mrcnn-tf make-tfrecords`: stream a COCO-format dataset into sharded TFRecords."""

from absl import flags

from mrcnn_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_integer("shards", 8, "make-tfrecords: number of shards.")

SUMMARY = "stream a COCO-format dataset into sharded TFRecords (masks as RLE)"
USAGE = "--annotations FILE --images DIR --out PREFIX [--shards N] [--strict]"
FLAG_NAMES = common.COCO_DATA_FLAGS + ("out", "shards")


def main():
    from mrcnn_tf.data import tfrecord_writer  # noqa: PLC0415
    common.require("annotations", "images", "out")
    if FLAGS.shards < 1:
        raise common.UsageError(f"--shards={FLAGS.shards}: expected an integer >= 1")
    dataset = common.coco_dataset()
    tfrecord_writer.make_tfrecords(dataset, FLAGS.out, FLAGS.shards)
    print(dataset.report())
