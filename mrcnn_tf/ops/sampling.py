"""Random balanced sampling of positives and negatives with static shapes.

Used for RPN anchors (256 per image, half positive) and RoIs (512 per image, 25% positive).
Instead of shuffling variable-length index lists, each candidate gets a uniform random key and
`top_k` picks the k largest keys among the eligible ones, which is uniform sampling without
replacement in a fixed-size output.
"""

import tensorflow as tf


def _top_k_eligible(eligible, keys, k):
    """Indices of up to k eligible entries with the largest keys.

    Args:
      eligible: [B, N] bool; keys: [B, N] float in [0, 1).
      k: python int.
    Returns:
      indices [B, k'] int32 and ok [B, k'] bool (index refers to an eligible entry), where
      k' = min(k, N); eligible picks come first.
    """
    k = tf.minimum(k, tf.shape(keys)[1])
    values, indices = tf.math.top_k(tf.where(eligible, keys, -1.0), k=k, sorted=True)
    return indices, values >= 0.0


def per_image_uniform(seeds, num, salt):
    """Uniform [0, 1) keys drawn from each image's own stateless seed.

    The keys of an image depend only on its seed and `salt`, not on which other images share
    its batch or replica: a batch split across replicas samples exactly what a single replica
    samples for the whole batch, and a resumed run samples what the unbroken run did.

    Args:
      seeds: [B, 2] integer stateless seeds, one per image.
      num: N, keys per image (int or scalar tensor).
      salt: python int telling apart the draws made from the same seed (RPN, RoIs, ...).
    Returns:
      [B, N] float32.
    """
    def draw(seed):
        seed = tf.random.experimental.stateless_fold_in(seed, salt)
        return tf.random.stateless_uniform(tf.reshape(num, [1]), seed=seed)

    seeds = tf.cast(seeds, tf.int64)
    return tf.map_fn(draw, seeds, fn_output_signature=tf.TensorSpec([None], tf.float32))


def sample_balanced(positive, negative, num_samples, positive_fraction, seed=None,
                    seeds=None, salt=0):
    """Samples up to `num_samples` entries per image, at most a fraction of them positive.

    If there are too few positives, negatives fill the rest; if too few of both, the output
    is padded with invalid slots.

    Args:
      positive: [B, N] bool, eligible positives; negative: [B, N] bool, eligible negatives
        (disjoint from positives).
      num_samples: python int S; positive_fraction: float in (0, 1].
      seed: optional op seed for reproducible (stateful) sampling.
      seeds: optional [B, 2] per-image stateless seeds; when given, `seed` is unused and each
        image's sample depends only on its own seed and `salt` (see `per_image_uniform`).
    Returns:
      indices [B, S] int32 into N: sampled positives first, then negatives, then padding;
      is_positive [B, S] bool; valid [B, S] bool.
      The positives all sit in the first `max_positives(num_samples, positive_fraction)` slots.
    """
    max_pos = max_positives(num_samples, positive_fraction)
    if seeds is None:
        keys = tf.random.uniform(tf.shape(positive), seed=seed)
    else:
        keys = per_image_uniform(seeds, tf.shape(positive)[1], salt)
        keys.set_shape(positive.shape)
    pos_idx, pos_ok = _top_k_eligible(positive, keys, max_pos)
    num_pos = tf.reduce_sum(tf.cast(pos_ok, tf.int32), axis=1, keepdims=True)  # [B, 1]
    neg_idx, neg_ok = _top_k_eligible(negative, keys, num_samples)
    neg_rank = tf.range(tf.shape(neg_idx)[1])[None, :]
    neg_ok = neg_ok & (neg_rank < num_samples - num_pos)

    # Compact: valid positives, valid negatives, then padding, via a stable sort on a key
    # that keeps the candidates' order within each group.
    indices = tf.concat([pos_idx, neg_idx], axis=1)
    ok = tf.concat([pos_ok, neg_ok], axis=1)
    is_pos = tf.concat([pos_ok, tf.zeros_like(neg_ok)], axis=1)
    order = tf.argsort(tf.cast(tf.logical_not(ok), tf.int32), axis=1, stable=True)
    order = order[:, :num_samples]
    indices = tf.gather(indices, order, batch_dims=1)
    valid = tf.gather(ok, order, batch_dims=1)
    is_pos = tf.gather(is_pos, order, batch_dims=1)
    # Fewer than num_samples candidates in total: pad up to the static count.
    pad = num_samples - tf.shape(indices)[1]
    indices = tf.pad(indices, [[0, 0], [0, pad]])
    valid = tf.pad(valid, [[0, 0], [0, pad]])
    is_pos = tf.pad(is_pos, [[0, 0], [0, pad]])
    indices = tf.where(valid, indices, 0)
    static_b = positive.shape[0]
    for t in (indices, valid, is_pos):
        t.set_shape([static_b, num_samples])
    return indices, is_pos, valid


def max_positives(num_samples, positive_fraction):
    """The number of slots that can hold positives: int(S * fraction) (Detectron2's rule),
    but at least 1 so the mask branch always has a slot."""
    return max(1, int(num_samples * positive_fraction))


def indices_to_mask(indices, selected, size):
    """Scatters selected indices into a boolean mask.

    Args:
      indices: [B, K] int32 into [0, size); selected: [B, K] bool; size: N (int or scalar).
    Returns:
      [B, N] bool, True where an index was selected.
    """
    b = tf.shape(indices)[0]
    k = tf.shape(indices)[1]
    batch = tf.tile(tf.range(b)[:, None], [1, k])
    scatter_idx = tf.stack([batch, indices], axis=-1)
    counts = tf.scatter_nd(scatter_idx, tf.cast(selected, tf.int32), tf.stack([b, size]))
    return counts > 0
