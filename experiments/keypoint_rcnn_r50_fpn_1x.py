"""Experiment: Keypoint R-CNN R50-FPN on COCO 2017 person keypoints, Detectron2's 1x schedule.

    mrcnn-tf train --config experiments/keypoint_rcnn_r50_fpn_1x.py --strategy mirrored  # 8 GPUs

The `keypoint_rcnn_r50_fpn` preset: one class (person), COCO's 17 keypoints, no mask head
(`--override mask_on=true` adds one, trained on the person masks of the same file); 1500
proposals per training image, box smooth-L1 beta 0.5; 90,000 iterations of 16 images, learning
rate 0.02 with warmup, divided by 10 at 60,000 and 80,000; shorter side drawn from 640..800 and
flips that swap left and right keypoints. Evaluated on val2017 every 10,000 iterations with
COCO's box and keypoint (OKS, COCO's sigmas) AP; best.keras follows keypoint AP.

COCO goes under datasets/coco/ (annotations/person_keypoints_{train,val}2017.json,
train2017/, val2017/), or pass --train_annotations/--train_image_dir/--val_annotations/
--val_image_dir. Images without a person are kept as negatives unless --drop_empty_images.
"""

from mrcnn_tf.config import get_config

CONFIG = get_config("keypoint_rcnn_r50_fpn").replace(name="keypoint_rcnn_r50_fpn_1x")
DATA = {
    "train_annotations": "datasets/coco/annotations/person_keypoints_train2017.json",
    "train_image_dir": "datasets/coco/train2017",
    "val_annotations": "datasets/coco/annotations/person_keypoints_val2017.json",
    "val_image_dir": "datasets/coco/val2017",
}
TRAIN = {"steps_per_epoch": 5000, "eval_every": 2}

if __name__ == "__main__":
    from mrcnn_tf.cli.main import run_experiment
    run_experiment(__file__)
