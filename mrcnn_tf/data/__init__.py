"""mrcnn_tf.data."""
