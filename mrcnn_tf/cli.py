"""`mrcnn-tf` command line (absl). Subcommands: demo.

A user error (bad flag value, bad input) ends with one line on stderr and exit code 2.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "runs/demo", "demo: output folder (model, metrics, overlays).")
flags.DEFINE_integer("steps", None, "demo: training steps (default: the config's total_steps).")
flags.DEFINE_integer("train_images", 2000, "demo: distinct synthetic training images.")
flags.DEFINE_integer("eval_images", 200, "demo: held-out synthetic images for COCO evaluation.")
flags.DEFINE_integer("batch_size", None, "demo: images per step (default: the config's).")
flags.DEFINE_integer("seed", 0, "demo: random seed.")

USAGE = "usage: mrcnn-tf demo [--out DIR] [--steps N] ... (mrcnn-tf demo --helpfull for flags)"


def _demo():
    from mrcnn_tf import demo  # noqa: PLC0415  (TensorFlow loads only when needed)
    demo.run(FLAGS.out, steps=FLAGS.steps, train_images=FLAGS.train_images,
             eval_images=FLAGS.eval_images, batch_size=FLAGS.batch_size, seed=FLAGS.seed)


COMMANDS = {"demo": _demo}


def main(argv):
    if len(argv) != 2 or argv[1] not in COMMANDS:
        extra = f"unknown subcommand {argv[1]!r}; " if len(argv) > 1 else ""
        print(f"mrcnn-tf: {extra}expected one of {sorted(COMMANDS)}\n{USAGE}", file=sys.stderr)
        sys.exit(2)
    try:
        COMMANDS[argv[1]]()
    except (ValueError, OSError) as error:
        print(f"mrcnn-tf {argv[1]}: {error}", file=sys.stderr)
        sys.exit(2)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
