"""Training runs: run folders, checkpoints, input streams, tf.distribute, mixed precision."""
