"""Mask R-CNN for TensorFlow 2 and Keras 3.

    import mrcnn_tf

    model = mrcnn_tf.MaskRCNN.from_preset("shapes_tiny")     # or a preset directory
    model.compile()                                          # the config's SGD schedule
    model.fit(mrcnn_tf.make_training_dataset(mrcnn_tf.shapes_dataset(2000), model.config,
                                             batch_size=8), epochs=10, steps_per_epoch=200)
    model.save_to_preset("presets/shapes")
    detections = mrcnn_tf.load("presets/shapes").predict_images([image])

The names below are the package's public face; each is loaded on first use, so
`import mrcnn_tf` itself is instant and a submodule (`mrcnn_tf.ops.boxes`) imports only what
it needs. No module of the package imports these names from here.
"""

import importlib

__version__ = "0.1.0"

# name -> the module that defines it.
_EXPORTS = {
    "MaskRCNN": "mrcnn_tf.modeling.mask_rcnn",
    "load": "mrcnn_tf.modeling.loading",
    "Config": "mrcnn_tf.config",
    "get_config": "mrcnn_tf.config",
    "PRESETS": "mrcnn_tf.config",
    "LabelMap": "mrcnn_tf.labels",
    "CocoDataset": "mrcnn_tf.data.coco",
    "shapes_dataset": "mrcnn_tf.data.shapes",
    "make_shapes_arrays": "mrcnn_tf.data.shapes",
    "make_training_dataset": "mrcnn_tf.data.pipeline",
    "make_optimizer": "mrcnn_tf.modeling.optimizer",
    "IndexedSource": "mrcnn_tf.training.input",
    "TFRecordSource": "mrcnn_tf.training.input",
    "training_stream": "mrcnn_tf.training.input",
    "evaluate_model": "mrcnn_tf.evaluation.evaluator",
    "COCOEvalCallback": "mrcnn_tf.evaluation.evaluator",
    "predict_video": "mrcnn_tf.video",
    "export_saved_model": "mrcnn_tf.export.saved_model",
    "export_tflite": "mrcnn_tf.export.tflite",
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mrcnn_tf' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
