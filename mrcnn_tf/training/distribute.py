"""tf.distribute strategies by name, and which worker writes the run folder.

- "default": one device (the first GPU if any, else the CPU).
- "mirrored": every local GPU (synchronous data parallelism, NCCL all-reduce); on a machine
  without GPUs, every logical CPU device (how the tests split a batch over 2 CPU replicas).
- "multi_worker": `MultiWorkerMirroredStrategy` over the machines listed in the TF_CONFIG
  environment variable (each runs the same command with its own task index).
- "tpu": `TPUStrategy` on the TPU named by `tpu` (or found by the cluster resolver).

Losses and batch norm statistics are reduced over the global batch (see modeling/losses.py
and modeling/norm.py) and the input is split by element (training/input.py), so any of these
trains the same model as one replica on the same global batch.
"""

from __future__ import annotations

import json
import os
from typing import Optional

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def make_strategy(name: str, tpu: Optional[str] = None) -> tf.distribute.Strategy:
    """The strategy called `name` (see the module docstring); ValueError names the flag."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=cpus)
    if name == "multi_worker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as error:
            raise ValueError(f"--strategy=tpu: no TPU found ({error}); expected --tpu=NAME or "
                             "a TPU VM") from None
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"--strategy={name!r}: expected one of {STRATEGIES}")


def _check_tf_config() -> None:
    """Rejects a missing or malformed TF_CONFIG before TensorFlow waits for workers."""
    raw = os.environ.get("TF_CONFIG")
    expected = ('expected JSON such as {"cluster": {"worker": ["host1:port", "host2:port"]}, '
                '"task": {"type": "worker", "index": 0}}')
    if not raw:
        raise ValueError(f"--strategy=multi_worker: TF_CONFIG is not set; {expected}")
    try:
        spec = json.loads(raw)
        workers = spec["cluster"]["worker"]
        task = spec["task"]
        index = int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"--strategy=multi_worker: TF_CONFIG={raw!r} is malformed "
                         f"({error}); {expected}") from None
    if not 0 <= index < len(workers) + len(spec["cluster"].get("chief", [])):
        raise ValueError(f"--strategy=multi_worker: TF_CONFIG task index {index} is outside "
                         f"the cluster's {len(workers)} workers")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run folder (checkpoints, TensorBoard, evaluation).

    One process except under multi-worker training, where it is the chief task or, with no
    chief task, worker 0.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(strategy.extended, "_in_multi_worker_mode",
                                       lambda: False)():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and
                                    "chief" not in resolver.cluster_spec().as_dict())


def worker_name(strategy: tf.distribute.Strategy) -> str:
    """"chief" for the chief, else e.g. "worker-1" (names a worker's private backup folder)."""
    if is_chief(strategy):
        return "chief"
    resolver = strategy.cluster_resolver
    return f"{resolver.task_type}-{resolver.task_id}"
