"""Exporting trained models: SavedModel for TensorFlow Serving."""

from mrcnn_tf.export.saved_model import export_saved_model

__all__ = ["export_saved_model"]
