"""Experiment: Keypoint R-CNN (`shapes_keypoints_tiny`) on synthetic houses, from scratch.

    mrcnn-tf train --config experiments/shapes_keypoints_tiny.py
    python experiments/shapes_keypoints_tiny.py

Houses (a body and a roof, rotated up to 25 degrees, partly occluded by each other and by
unlabelled clutter) with six named keypoints: roof, left/right eave, left/right base, centre
(mrcnn_tf.data.keypoint_shapes). 2,000 steps of 8 images at 128x128, flips swapping left and
right keypoints, COCO box and keypoint (OKS) AP on 200 held-out images after each epoch; the
run folder keeps best.keras by keypoint AP. Flags on the command line win over DATA and TRAIN.
"""

from mrcnn_tf.config import get_config

CONFIG = get_config("shapes_keypoints_tiny")
DATA = {"synthetic_train_images": 2000, "synthetic_val_images": 200}
TRAIN = {"steps_per_epoch": 200}

if __name__ == "__main__":
    from mrcnn_tf.cli.main import run_experiment
    run_experiment(__file__)
