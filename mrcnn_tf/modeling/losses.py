"""The five Mask R-CNN losses, each normalized as in Detectron2.

All take padded, batched tensors plus masks saying which entries count, and return float32
scalars (0, not NaN, when nothing counts, so images without objects train fine).

Under tf.distribute each replica sees part of the global batch. Losses averaged over a count
that varies per image (sampled RoIs, positive masks) divide by the count summed over all
replicas, times the replica count, so that the replicas' losses divided by the replica count
(MaskRCNN.train_step) sum to exactly the single-replica loss of the whole global batch.
"""

import tensorflow as tf

from mrcnn_tf.ops.replicas import global_mean


def smooth_l1(diff, beta):
    """Elementwise smooth L1 (Huber with slope 1); beta = 0 is plain L1."""
    diff = tf.abs(diff)
    if beta <= 0:
        return diff
    return tf.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)


def rpn_class_loss(objectness, labels, batch_size_per_image):
    """Binary cross-entropy on sampled anchors.

    Args:
      objectness: [B, A] logits; labels: [B, A] int32 (1 pos, 0 neg, -1 not sampled).
      batch_size_per_image: anchors sampled per image (the normalizer, as Detectron2).
    """
    sampled = tf.cast(labels >= 0, tf.float32)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.cast(labels == 1, tf.float32), logits=tf.cast(objectness, tf.float32))
    batch = tf.cast(tf.shape(labels)[0], tf.float32)
    return tf.reduce_sum(ce * sampled) / (batch * batch_size_per_image)


def rpn_box_loss(deltas, box_targets, labels, batch_size_per_image, beta=0.0):
    """Smooth L1 on positive anchors' deltas, normalized by the sampled anchor count.

    Args: deltas, box_targets [B, A, 4]; labels [B, A].
    """
    positive = tf.cast(labels == 1, tf.float32)[..., None]
    loss = smooth_l1(tf.cast(deltas, tf.float32) - box_targets, beta) * positive
    batch = tf.cast(tf.shape(labels)[0], tf.float32)
    return tf.reduce_sum(loss) / (batch * batch_size_per_image)


def class_loss(class_logits, class_targets, valid):
    """Softmax cross-entropy over K + 1 classes, averaged over the sampled RoIs.

    Args: class_logits [B, S, K + 1]; class_targets [B, S] int32; valid [B, S] bool.
    """
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=class_targets, logits=tf.cast(class_logits, tf.float32))
    valid = tf.cast(valid, tf.float32)
    return global_mean(tf.reduce_sum(ce * valid), tf.reduce_sum(valid))


def box_loss(box_deltas, box_targets, class_targets, is_positive, valid, beta=0.0):
    """Smooth L1 on the ground-truth class's deltas of positive RoIs, divided by the number of
    sampled RoIs (Detectron2's normalization, so fewer positives weigh less).

    Args: box_deltas [B, S, (K + 1) * 4]; box_targets [B, S, 4]; class_targets [B, S];
      is_positive, valid [B, S] bool.
    """
    shape = tf.shape(box_deltas)
    deltas = tf.reshape(tf.cast(box_deltas, tf.float32), tf.stack([shape[0], shape[1], -1, 4]))
    deltas = tf.gather(deltas, class_targets, axis=2, batch_dims=2)  # [B, S, 4]
    loss = tf.reduce_sum(smooth_l1(deltas - box_targets, beta), axis=-1)
    loss = loss * tf.cast(is_positive, tf.float32)
    return global_mean(tf.reduce_sum(loss), tf.reduce_sum(tf.cast(valid, tf.float32)))


def class_channel(values, class_ids):
    """Each RoI's own class channel.

    Args: values [B, P, m, m, C]; class_ids [B, P] int32 in 0..C-1.
    Returns: [B, P, m, m].
    """
    values = tf.transpose(values, [0, 1, 4, 2, 3])  # [B, P, C, m, m]
    return tf.gather(values, class_ids, axis=2, batch_dims=2)


def _mean_over_mask_pixels(ce, mask_valid):
    """ce [B, P, m, m] summed over the pixels of valid RoIs / their pixel count."""
    weight = tf.cast(mask_valid, tf.float32)[:, :, None, None]
    pixels = tf.reduce_sum(weight) * tf.cast(tf.shape(ce)[2] * tf.shape(ce)[3], tf.float32)
    return global_mean(tf.reduce_sum(ce * weight), pixels)


def mask_loss(mask_logits, mask_targets, mask_classes, mask_valid):
    """Per-pixel binary cross-entropy on the ground-truth class's mask only (masks of other
    classes get no gradient: the paper's decoupling of masks and classes), averaged over the
    pixels of positive RoIs.

    Args: mask_logits [B, P, m, m, C] (C = K + 1, or 1 for class-agnostic masks, whose
      mask_classes are then 0); mask_targets [B, P, m, m] in [0, 1]; mask_classes [B, P];
      mask_valid [B, P] bool.
    """
    logits = class_channel(tf.cast(mask_logits, tf.float32), mask_classes)  # [B, P, m, m]
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=mask_targets, logits=logits)
    return _mean_over_mask_pixels(ce, mask_valid)


def mask_loss_softmax(mask_logits, mask_targets, mask_classes, mask_valid):
    """The paper's "softmax" ablation (Table 2b): a per-pixel softmax over the K + 1 channels
    (channel 0 is background) with a multinomial cross-entropy, the usual FCN segmentation
    loss: a pixel of the mask is labelled with the RoI's class, every other pixel with
    background, so all classes' masks compete. A soft target t (a mask resampled into the RoI)
    weighs the two labels: -(t log p_class + (1 - t) log p_background). Averaged over the
    pixels of positive RoIs, as `mask_loss`.

    Args: as `mask_loss`, with C = K + 1 >= 3 (the config refuses fewer).
    """
    log_probs = tf.nn.log_softmax(tf.cast(mask_logits, tf.float32), axis=-1)
    ce = -(mask_targets * class_channel(log_probs, mask_classes)
           + (1.0 - mask_targets) * log_probs[..., 0])
    return _mean_over_mask_pixels(ce, mask_valid)


def mask_probabilities_sigmoid(mask_logits, class_ids):
    """[B, N, m, m, C] logits -> [B, N, m, m] sigmoid probabilities of each RoI's class."""
    return tf.sigmoid(class_channel(tf.cast(mask_logits, tf.float32), class_ids))


def mask_probabilities_softmax(mask_logits, class_ids):
    """[B, N, m, m, C] logits -> [B, N, m, m] the probability that a pixel is the RoI's class
    rather than background, p_class / (p_class + p_background) = sigmoid(l_class - l_0).

    Thresholding it at 0.5 keeps a pixel where its class beats background, as an FCN
    segmentation labels a pixel by its most likely channel. The full softmax probability of
    the class would also pay for the other classes' share: it starts at 1 / (K + 1) and, after
    a short schedule, stays under 0.5 everywhere (measured: no mask above the threshold after
    800 steps on the small shapes), though the ranking of class against background is
    learnt.
    """
    logits = tf.cast(mask_logits, tf.float32)
    return tf.sigmoid(class_channel(logits, class_ids) - logits[..., 0])


# Config.mask_loss -> (loss, probabilities at inference).
MASK_LOSSES = {
    "sigmoid": (mask_loss, mask_probabilities_sigmoid),
    "softmax": (mask_loss_softmax, mask_probabilities_softmax),
}
