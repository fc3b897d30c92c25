"""Experiment: `shapes_tiny` on synthetic shapes, the demo's model, trained from scratch.

    mrcnn-tf train --config experiments/shapes_tiny.py     # or: python experiments/shapes_tiny.py

2,000 steps of 8 images at 128x128 (about 7 minutes on a 2-core CPU), COCO evaluation on 200
held-out images after each of the 10 epochs, run folder runs/shapes_tiny. Flags given on the
command line win over DATA and TRAIN (e.g. --synthetic_train_images 200 --epochs 2).
"""

from mrcnn_tf.config import get_config

CONFIG = get_config("shapes_tiny")
DATA = {"synthetic_train_images": 2000, "synthetic_val_images": 200}
TRAIN = {"steps_per_epoch": 200}

if __name__ == "__main__":
    from mrcnn_tf.cli.main import run_experiment
    run_experiment(__file__)
