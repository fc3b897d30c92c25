"""mrcnn_tf.layers."""
