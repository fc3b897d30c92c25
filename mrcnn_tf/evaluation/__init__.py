"""mrcnn_tf.evaluation."""
