"""Reductions across tf.distribute replicas that the losses share.

Under tf.distribute each replica sees part of the global batch. A loss averaged over a count
that varies per image (sampled RoIs, positive masks, labelled keypoints) divides by the count
summed over all replicas, times the replica count, so that the replicas' losses divided by the
replica count (MaskRCNN.train_step) sum to exactly the single-replica loss of the global batch.
"""

import tensorflow as tf


def global_mean(total, count):
    """total / count over the global batch, as seen from one replica.

    Args: total, count: float32 scalars of this replica.
    Returns: total * R / (count summed over the R replicas), 0 when the global count is 0.
    """
    context = tf.distribute.get_replica_context()
    replicas = 1 if context is None else context.num_replicas_in_sync
    if replicas > 1:
        count = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(count))
        total = total * float(replicas)
    return tf.math.divide_no_nan(total, count)
