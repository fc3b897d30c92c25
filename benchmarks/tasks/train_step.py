"""Benchmark `train_step`: one SGD training step (batch and instances per image from
spec["train"]) at each size and Keras dtype policy of spec["precisions"]."""

import functools

from benchmarks.configs import model_config
from benchmarks.models import per_policy, policies, precision_labels
from benchmarks.timed_rows import train_rows


def run(spec):
    """{"rows": one per (size, policy), "optimizer": what steps}."""
    rows = []
    for size in spec["sizes"]:
        for policy_rows in per_policy(model_config(spec, size), policies(spec, "train_step"),
                                      functools.partial(_train_step_rows, spec=spec,
                                                        size=size)):
            rows += policy_rows
    return {"rows": rows, "optimizer": "mrcnn_tf.modeling.optimizer.make_optimizer (SGD, "
                                       "momentum, weight decay)"}


def _train_step_rows(policy, model, spec, size):
    """The rows of one precision at one size."""
    train = spec["train"]
    return train_rows(policy, model, spec, size, train["batch"], [train["instances"]],
                      precision_labels(policy))
