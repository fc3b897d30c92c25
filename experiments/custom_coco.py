"""Experiment template: Mask R-CNN R50-FPN on your own COCO-format dataset.

Copy this file, set the paths and NUM_CLASSES, then:

    mrcnn-tf train --config experiments/my_dataset.py

Annotations from COCO, CVAT, labelme (converted with labelme2coco) or Roboflow's "COCO"
export work as they are: polygons, RLE, crowd regions, any category ids. NUM_CLASSES is the
number of categories in the training JSON (a "_background_" category without annotations
does not count); if it is wrong, training stops at once and says the right number.

The schedule suits a dataset of a few hundred to a few thousand images on one GPU, starting
from an ImageNet-trained ResNet-50 (downloaded by Keras on first use): 4 images per step,
24,000 steps, learning rate 0.005 after 500 warmup steps, divided by 10 at 16,000 and 21,000.
Starting from COCO-trained Mask R-CNN weights instead: --init_weights PATH and about a
quarter of the steps. Large images of small objects: raise image_min_size / image_max_size.
"""

from mrcnn_tf.config import get_config

NUM_CLASSES = 3
DATASET = "datasets/my_dataset"

CONFIG = get_config(
    "coco_r50_fpn",
    name="custom_coco",
    num_classes=NUM_CLASSES,
    batch_size=4,
    learning_rate=0.005,
    warmup_steps=500,
    decay_steps=(16000, 21000),
    total_steps=24000,
)
DATA = {
    "train_annotations": f"{DATASET}/annotations/train.json",
    "train_image_dir": f"{DATASET}/train",
    "val_annotations": f"{DATASET}/annotations/val.json",
    "val_image_dir": f"{DATASET}/val",
}
TRAIN = {"steps_per_epoch": 1000}

if __name__ == "__main__":
    from mrcnn_tf.cli.main import run_experiment
    run_experiment(__file__)
