"""`mrcnn-tf inspect`: what the model sees on one image, one PNG per stage.

Anchors per level, RPN proposals, the sampled training RoIs with their targets, the mask
targets (models with a mask head), the keypoint targets (Keypoint R-CNN models), the final
detections and the ground truth.
"""

from absl import flags

from mrcnn_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_integer("image_id", None, "inspect: the image of --annotations to inspect.")
flags.DEFINE_integer("synthetic_index", None, "inspect: inspect synthetic image N (ground "
                     "truth included) instead of a file: shapes, or keypoint houses for a "
                     "keypoint model.")
flags.DEFINE_integer("max_proposals", 50, "inspect: proposals drawn (the best-scored).")

SUMMARY = ("draw anchors, proposals, sampled RoIs and targets, mask / keypoint targets, "
           "detections")
USAGE = ("(--weights MODEL | --config PRESET) (--annotations F --images D --image_id N | "
         "--inputs IMAGE | --synthetic_index N) [--out inspect]")
FLAG_NAMES = common.MODEL_FLAGS + ("annotations", "images", "image_id", "inputs",
                                   "synthetic_index", "max_proposals", "out")
# Seed of the synthetic images --synthetic_index picks from (not the training sets' seeds).
SYNTHETIC_SEED = 1000


def _synthetic_class_names(config):
    """The class names of the synthetic set that fits `config`, when its class count matches
    (an untrained model of a synthetic preset then labels its classes), else None."""
    from mrcnn_tf.data.synthetic import synthetic_set_for  # noqa: PLC0415
    try:
        names = synthetic_set_for(config).class_names
    except ValueError:  # keypoints that no synthetic set has: nothing to borrow
        return None
    return list(names) if len(names) == config.num_classes else None


def _model():
    if FLAGS.weights:
        return common.load_model()
    if not FLAGS.config:
        raise common.UsageError("expected --weights (a trained model) or --config (an "
                                "untrained model: anchors and targets, random detections)")
    from mrcnn_tf.modeling.mask_rcnn import MaskRCNN  # noqa: PLC0415
    config = common.experiment().config
    model = MaskRCNN(config, class_names=_synthetic_class_names(config))
    model.build()
    return model


def _example(model):
    """The example dict to inspect, from whichever source the flags name."""
    import numpy as np  # noqa: PLC0415
    given = [n for n in ("image_id", "inputs", "synthetic_index") if getattr(FLAGS, n) is not None]
    if len(given) != 1:
        raise common.UsageError("expected exactly one of --image_id (with --annotations and "
                                "--images), --inputs (one image file) or --synthetic_index")
    if FLAGS.synthetic_index is not None:
        # The set the model's heads train on: shapes, or houses with keypoints, so that a
        # keypoint model shows keypoint ground truth and targets.
        from mrcnn_tf.data.synthetic import synthetic_set_for  # noqa: PLC0415
        try:
            synthetic = synthetic_set_for(model.config)
        except ValueError as error:
            raise common.UsageError(f"--synthetic_index: {error}") from None
        return synthetic.generate(FLAGS.synthetic_index, SYNTHETIC_SEED,
                                  model.config.image_max_size)
    if FLAGS.image_id is not None:
        dataset = common.coco_dataset()
        if FLAGS.image_id not in set(dataset.image_ids):
            raise common.UsageError(f"--image_id={FLAGS.image_id}: not an image of "
                                    f"{FLAGS.annotations}")
        return dataset.load_example(FLAGS.image_id)
    from mrcnn_tf.data.images import read_image  # noqa: PLC0415
    from mrcnn_tf.prediction import expand_inputs  # noqa: PLC0415
    paths = expand_inputs(FLAGS.inputs)
    if len(paths) != 1:
        raise common.UsageError(f"--inputs: expected one image, got {len(paths)}")
    image = read_image(paths[0])
    height, width = image.shape[:2]
    return {"image": image, "boxes": np.zeros([0, 4], np.float32),
            "class_ids": np.zeros([0], np.int32), "masks": np.zeros([0, height, width], np.uint8),
            "is_crowd": np.zeros([0], bool), "image_id": np.int64(0)}


def main():
    from mrcnn_tf.inspection import inspect_example  # noqa: PLC0415
    out = FLAGS.out or "inspect"
    common.check_writable(out, "--out")
    model = _model()
    views = inspect_example(model, _example(model), out, max_proposals=FLAGS.max_proposals)
    for name, path in views.items():
        print(f"{name}: {path}")
