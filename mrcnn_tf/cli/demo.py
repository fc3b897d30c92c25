"""`mrcnn-tf demo`: train shapes_tiny (or shapes_keypoints_tiny) on synthetic data, evaluate,
draw, save, export."""

from absl import flags

from mrcnn_tf.cli import common

FLAGS = flags.FLAGS
# The demo's defaults for the synthetic-run flags (common.py; `ablate` has its own).
TRAIN_IMAGES, EVAL_IMAGES = 2000, 200

SUMMARY = ("train shapes_tiny on synthetic shapes (or --config shapes_keypoints_tiny: keypoints "
           "on synthetic houses), COCO-evaluate, draw, save, export (runs/demo)")
USAGE = ("[--out runs/demo] [--config shapes_tiny|shapes_keypoints_tiny] [--steps N] "
         "[--batch_size N] [--train_images N] [--eval_images N]")
FLAG_NAMES = ("out", "config", "override", "steps", "batch_size", "train_images", "eval_images",
              "seed")


def main():
    from mrcnn_tf import demo  # noqa: PLC0415
    config = None
    if FLAGS.config or FLAGS.override:
        FLAGS.config = FLAGS.config or "shapes_tiny"
        config = common.experiment().config
    demo.run(FLAGS.out or "runs/demo", steps=FLAGS.steps,
             train_images=common.value_or(FLAGS.train_images, TRAIN_IMAGES),
             eval_images=common.value_or(FLAGS.eval_images, EVAL_IMAGES),
             batch_size=FLAGS.batch_size, seed=FLAGS.seed,
             config=config)
