"""Experiment: `shapes_tiny` on the synthetic shapes set, the demo's model.

Run it with `python experiments/shapes_tiny.py [--out runs/shapes_tiny] [--steps N]`; it trains
from scratch on a CPU, evaluates with pycocotools on held-out images, draws overlays and saves
the model. `CONFIG` is the experiment's configuration, for reading or overriding.
"""

import argparse

from mrcnn_tf import demo
from mrcnn_tf.config import get_config

CONFIG = get_config("shapes_tiny")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/shapes_tiny")
    parser.add_argument("--steps", type=int, default=CONFIG.total_steps)
    parser.add_argument("--train_images", type=int, default=2000)
    parser.add_argument("--eval_images", type=int, default=200)
    args = parser.parse_args()
    demo.run(args.out, steps=args.steps, train_images=args.train_images,
             eval_images=args.eval_images, config=CONFIG)


if __name__ == "__main__":
    main()
