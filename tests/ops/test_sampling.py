"""Tests for mrcnn_tf.ops.sampling: balanced, static-shaped sampling."""

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.ops import sampling


def _check_sample(positive, negative, indices, is_pos, valid, num_samples, fraction):
    max_pos = int(num_samples * fraction)
    assert indices.shape == is_pos.shape == valid.shape == (positive.shape[0], num_samples)
    for b in range(positive.shape[0]):
        npos = int(positive[b].sum())
        nneg = int(negative[b].sum())
        exp_pos = min(max_pos, npos)
        exp_neg = min(num_samples - exp_pos, nneg)
        assert int(is_pos[b].sum()) == exp_pos
        assert int((valid[b] & ~is_pos[b]).sum()) == exp_neg
        assert int(valid[b].sum()) == exp_pos + exp_neg
        # Layout: positives, then negatives, then padding.
        np.testing.assert_array_equal(is_pos[b], np.arange(num_samples) < exp_pos)
        np.testing.assert_array_equal(valid[b], np.arange(num_samples) < exp_pos + exp_neg)
        picked = indices[b][valid[b]]
        assert len(set(picked.tolist())) == len(picked)  # unique
        assert np.all(positive[b][indices[b][is_pos[b]]])
        assert np.all(negative[b][indices[b][valid[b] & ~is_pos[b]]])
        np.testing.assert_array_equal(indices[b][~valid[b]], 0)


@pytest.mark.parametrize("num_samples,fraction", [(32, 0.25), (16, 0.5), (10, 0.33)])
def test_sample_balanced_invariants(num_samples, fraction):
    rng = np.random.default_rng(0)
    n = 60
    # Rows: many positives, few positives, no positives, few of everything, nothing.
    labels = np.stack([
        rng.choice([-1, 0, 1], n, p=[0.2, 0.4, 0.4]),
        rng.choice([-1, 0, 1], n, p=[0.2, 0.75, 0.05]),
        rng.choice([-1, 0], n, p=[0.3, 0.7]),
        np.where(np.arange(n) < 3, 1, np.where(np.arange(n) < 7, 0, -1)),
        np.full(n, -1),
    ])
    positive, negative = labels == 1, labels == 0
    indices, is_pos, valid = sampling.sample_balanced(
        tf.constant(positive), tf.constant(negative), num_samples, fraction, seed=1)
    _check_sample(positive, negative, indices.numpy(), is_pos.numpy(), valid.numpy(),
                  num_samples, fraction)


def test_sample_balanced_fewer_candidates_than_samples_pads():
    positive = np.array([[True, False, False, True, False]])
    negative = np.array([[False, True, False, False, True]])
    indices, is_pos, valid = sampling.sample_balanced(
        tf.constant(positive), tf.constant(negative), 8, 0.5)
    assert indices.shape == (1, 8)
    np.testing.assert_array_equal(valid.numpy()[0], [1, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(is_pos.numpy()[0], [1, 1, 0, 0, 0, 0, 0, 0])
    assert sorted(indices.numpy()[0, :2].tolist()) == [0, 3]
    assert sorted(indices.numpy()[0, 2:4].tolist()) == [1, 4]


def test_sample_balanced_under_tf_function_has_static_shape():
    fn = tf.function(lambda p, n: sampling.sample_balanced(p, n, 8, 0.25))
    positive = tf.constant(np.arange(20)[None] % 3 == 0)
    negative = tf.logical_not(positive)
    indices, is_pos, valid = fn(positive, negative)
    _check_sample(positive.numpy(), negative.numpy(), indices.numpy(), is_pos.numpy(),
                  valid.numpy(), 8, 0.25)


def test_sample_balanced_is_uniform_over_eligible():
    # 256 identical rows sample independently; every eligible positive must come up, not
    # only the first ones, and roughly equally often.
    b, n = 256, 10
    positive = np.zeros((b, n), bool)
    positive[:, :8] = True
    negative = np.zeros((b, n), bool)
    negative[:, 8:] = True
    indices, is_pos, _ = sampling.sample_balanced(
        tf.constant(positive), tf.constant(negative), 4, 0.5, seed=3)
    picked = indices.numpy()[is_pos.numpy()]
    counts = np.bincount(picked, minlength=n)
    assert counts[8:].sum() == 0
    expected = b * 2 / 8  # 64 per positive
    assert np.all(np.abs(counts[:8] - expected) < 0.4 * expected), counts


def test_sample_balanced_seed_reproducible():
    rng = np.random.default_rng(5)
    positive = tf.constant(rng.random((2, 100)) < 0.3)
    negative = tf.logical_not(positive)

    def run(seed):
        tf.random.set_seed(123)
        return [t.numpy() for t in sampling.sample_balanced(positive, negative, 16, 0.25,
                                                            seed=seed)]

    first, second, other = run(7), run(7), run(8)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_per_image_seeds_independent_of_batch_layout():
    """Each image's sample depends only on its own seed: a batch sampled at once equals its
    halves sampled apart (what two replicas do), in any order; another salt differs."""
    rng = np.random.default_rng(6)
    positive = tf.constant(rng.random((4, 300)) < 0.2)
    negative = tf.logical_not(positive)
    seeds = tf.constant([[0, 10], [0, 11], [0, 12], [0, 13]], tf.int64)

    def run(pos, neg, s, salt=1):
        return [t.numpy() for t in sampling.sample_balanced(pos, neg, 32, 0.25, seeds=s,
                                                            salt=salt)]

    whole = run(positive, negative, seeds)
    tf.random.set_seed(99)  # stateful randomness must not matter
    halves = [run(positive[i:i + 2], negative[i:i + 2], seeds[i:i + 2]) for i in (2, 0)]
    for k in range(3):
        np.testing.assert_array_equal(whole[k], np.concatenate([halves[1][k], halves[0][k]]))
    assert len({tuple(row) for row in whole[0]}) == 4  # different seeds, different samples
    assert not np.array_equal(run(positive, negative, seeds, salt=2)[0], whole[0])
    # Still a valid balanced sample: 8 positives at most, all eligible.
    indices, is_pos, valid = whole
    assert np.all(is_pos.sum(1) <= 8)
    picked_pos = np.take_along_axis(positive.numpy(), indices, 1)
    assert np.all(picked_pos[is_pos]) and not np.any(picked_pos[valid & ~is_pos])


def test_max_positives():
    assert sampling.max_positives(512, 0.25) == 128
    assert sampling.max_positives(256, 0.5) == 128
    assert sampling.max_positives(64, 0.33) == 21


def test_indices_to_mask():
    indices = tf.constant([[3, 0, 0, 5], [1, 1, 2, 0]])
    selected = tf.constant([[True, True, False, True], [True, False, False, False]])
    mask = sampling.indices_to_mask(indices, selected, 6).numpy()
    np.testing.assert_array_equal(mask, [[1, 0, 0, 1, 0, 1], [0, 1, 0, 0, 0, 0]])
