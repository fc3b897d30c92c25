"""`mrcnn-tf make-tfrecords`: stream a COCO-format dataset into sharded TFRecords."""

from absl import flags

from mrcnn_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_integer("shards", 8, "make-tfrecords: number of shards.")
flags.DEFINE_boolean("keep_originals", True, "make-tfrecords: store each image file as it is "
                     "(JPEG/PNG bytes and EXIF orientation) when it decodes to the reader's "
                     "pixels; --nokeep_originals stores PNG re-encodes.")

SUMMARY = "stream a COCO-format dataset into sharded TFRecords (masks as RLE)"
USAGE = ("--annotations FILE --images DIR --out PREFIX [--shards N] [--nokeep_originals] "
         "[--strict]")
FLAG_NAMES = common.COCO_DATA_FLAGS + ("out", "shards", "keep_originals")


def main():
    from mrcnn_tf.data import tfrecord_writer  # noqa: PLC0415
    common.require("annotations", "images", "out")
    if FLAGS.shards < 1:
        raise common.UsageError(f"--shards={FLAGS.shards}: expected an integer >= 1")
    dataset = common.coco_dataset()
    tfrecord_writer.make_tfrecords(dataset, FLAGS.out, FLAGS.shards,
                                   keep_originals=FLAGS.keep_originals)
    print(dataset.report())
