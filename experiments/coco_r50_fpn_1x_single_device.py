"""Experiment: the COCO R50-FPN 1x schedule scaled down to one GPU (or a CPU).

    mrcnn-tf train --config experiments/coco_r50_fpn_1x_single_device.py

The 1x schedule shows the model 90,000 x 16 = 1.44M images. With 2 images per step this file
keeps that total and follows the linear scaling rule (Goyal et al., 2017): learning rate
0.02 x 2/16 = 0.0025, 8x the iterations (720,000), the decays at 480,000 and 640,000, and the
warmup 8x longer (8,000 iterations), the usual way to run the 8-GPU recipe on one device.

Time: on a 2-core x86-64 laptop CPU one training step of 2 images at 1333 px took 26 s, so
the full schedule is not practical there: use a CPU to check the setup (e.g. --epochs 1
--steps_per_epoch 20) and fine-tune small datasets, not to train COCO.
"""

import os

from mrcnn_tf.training.experiment import load_experiment

# The 8-GPU experiment beside this file: same model and data, rescaled schedule.
_EIGHT_GPUS = load_experiment(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                           "coco_r50_fpn_1x.py"))
CONFIG = _EIGHT_GPUS.config.replace(
    name="coco_r50_fpn_1x_single_device",
    batch_size=2,
    learning_rate=0.0025,
    warmup_steps=8000,
    decay_steps=(480000, 640000),
    total_steps=720000,
)
DATA = {k: v for k, v in _EIGHT_GPUS.defaults.items() if k.startswith(("train_", "val_"))}
TRAIN = {"steps_per_epoch": 20000, "eval_every": 4}

if __name__ == "__main__":
    from mrcnn_tf.cli.main import run_experiment
    run_experiment(__file__)
