"""Exporting trained models: SavedModel for TensorFlow Serving, TFLite with builtin ops only."""

from mrcnn_tf.export.saved_model import export_saved_model
from mrcnn_tf.export.tflite import export_tflite

__all__ = ["export_saved_model", "export_tflite"]
