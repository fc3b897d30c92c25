"""Experiment: Mask R-CNN R50-FPN on COCO 2017, the paper's / Detectron2's 1x schedule.

    mrcnn-tf train --config experiments/coco_r50_fpn_1x.py --strategy mirrored   # 8 GPUs

90,000 iterations of 16 images (2 per GPU on 8 GPUs), SGD with momentum 0.9, learning rate
0.02 after a linear warmup over the first 1,000 iterations, divided by 10 at 60,000 and 80,000;
weight decay 1e-4 (not on normalization parameters); shorter side drawn from 640..800, longer
at most 1333; ImageNet-initialized ResNet-50 with frozen batch norm and the stem and first stage
frozen. Evaluated on val2017 every 10,000 iterations; best.keras follows mask AP.

COCO goes under datasets/coco/ (annotations/instances_{train,val}2017.json, train2017/,
val2017/), or pass --train_annotations/--train_image_dir/--val_annotations/--val_image_dir.
For many machines, the same command on each with --strategy multi_worker and TF_CONFIG
(see the README).

One GPU (or a CPU): experiments/coco_r50_fpn_1x_single_device.py keeps the number of images
seen and rescales the schedule by the linear scaling rule.
"""

from mrcnn_tf.config import get_config

CONFIG = get_config("coco_r50_fpn").replace(name="coco_r50_fpn_1x")
DATA = {
    "train_annotations": "datasets/coco/annotations/instances_train2017.json",
    "train_image_dir": "datasets/coco/train2017",
    "val_annotations": "datasets/coco/annotations/instances_val2017.json",
    "val_image_dir": "datasets/coco/val2017",
}
TRAIN = {"steps_per_epoch": 5000, "eval_every": 2}

if __name__ == "__main__":
    from mrcnn_tf.cli.main import run_experiment
    run_experiment(__file__)
