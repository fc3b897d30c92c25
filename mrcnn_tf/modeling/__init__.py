"""mrcnn_tf.modeling."""
