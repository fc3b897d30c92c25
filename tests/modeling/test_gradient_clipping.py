"""Gradient clipping by the global batch's norm (modeling/optimizer.py), not each replica's.

Keras' `global_clipnorm` clips every replica's own part of the gradient before the parts are
summed; these tests pin down the replacement the model's train step uses. The end-to-end
check, two replicas training to the weights of one with clipping active, is
tests/training/test_resume_and_distribute.py."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.config import get_config
from mrcnn_tf.modeling.optimizer import clip_by_global_norm_across_replicas, make_optimizer

GRADIENTS = [tf.constant([3.0, 0.0]), None, tf.constant([[4.0]])]  # global norm 5


@pytest.mark.parametrize("clip_norm", [1.0, 2.5, 5.0, 50.0])
def test_one_replica_clips_like_clip_by_global_norm(clip_norm):
    got = clip_by_global_norm_across_replicas(GRADIENTS, clip_norm)
    want, _ = tf.clip_by_global_norm([g for g in GRADIENTS if g is not None], clip_norm)
    assert got[1] is None
    for a, b in zip([got[0], got[2]], want):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)


def test_a_loss_scale_is_taken_out_of_the_norm():
    scaled = [None if g is None else g * 1024.0 for g in GRADIENTS]
    got = clip_by_global_norm_across_replicas(scaled, 2.5, loss_scale=tf.constant(1024.0))
    # The true norm is 5: halved, and still carrying the loss scale for the optimizer.
    np.testing.assert_allclose(got[0].numpy(), [1.5 * 1024.0, 0.0], rtol=1e-6)


def test_a_non_finite_norm_makes_every_gradient_nan():
    got = clip_by_global_norm_across_replicas([tf.constant([np.inf, 1.0]),
                                               tf.constant([2.0])], 5.0)
    assert all(np.isnan(g.numpy()).all() for g in got)


# Run in a process of its own: two logical CPUs must be configured before TensorFlow starts.
TWO_REPLICAS = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from mrcnn_tf.modeling.optimizer import clip_by_global_norm_across_replicas
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
parts = tf.constant([[3.0, 0.0], [3.0, 8.0]])  # replica r holds parts[r]; sum (6, 8): norm 10
indices = strategy.experimental_distribute_values_from_function(
    lambda context: tf.constant(context.replica_id_in_sync_group))
clipped = strategy.run(
    lambda i: clip_by_global_norm_across_replicas([tf.gather(parts, i)], 5.0)[0],
    args=(indices,))
print(strategy.reduce(tf.distribute.ReduceOp.SUM, clipped, axis=None).numpy().tolist())
"""


def test_two_replicas_clip_the_sum_of_their_gradients():
    """Each replica scales its own part by the factor of the summed gradient's norm, so the
    parts sum to the clipped global gradient (Keras' global_clipnorm would clip each part to
    the norm instead: (3, 0) kept and (3, 8) scaled to norm 5, summing to (4.76, 4.68))."""
    result = subprocess.run([sys.executable, "-c", TWO_REPLICAS], capture_output=True,
                            text=True, timeout=120,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-2000:]
    summed = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(summed, [3.0, 4.0], rtol=1e-6)


def test_the_config_optimizer_leaves_clipping_to_the_model():
    optimizer = make_optimizer(get_config("shapes_tiny", gradient_clip_norm=10.0))
    assert not optimizer.global_clipnorm and not optimizer.clipnorm
