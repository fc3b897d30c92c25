"""Training input streams that start at any step and split across replicas exactly.

Element i of a run's stream (i = 0, 1, 2, ... over the whole run, all epochs) is a function
of (seed, i) alone: which example it is, its flip and scale jitter, and the per-image seed the
model samples its RPN anchors and RoIs from (`sample_seed`). Global step s holds elements
s*G .. s*G + G - 1 (G the global batch). Hence:

- a run resumed at step s builds its stream from element s*G and continues exactly where the
  killed run stopped, without replaying the skipped elements' image decoding;
- N replicas (one machine or several) together see in each step the same G elements a single
  replica sees, each processed identically, so their summed gradients equal the
  single-replica gradient up to float summation order.

Sources:
- `IndexedSource` (in-memory examples, a `CocoDataset`): element i is example
  `index_shuffle(i mod n)` of pass `i // n`, a fresh stateless permutation per pass.
- `TFRecordSource`: no random access, so each pass shuffles the file order and windows of
  records (stateless keys), and a resumed run skips serialized records (cheap: nothing is
  decoded).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from mrcnn_tf.config import Config
from mrcnn_tf.data import pipeline
from mrcnn_tf.data.schema import example_signature

# An effectively endless stream (tf.data.Dataset.range needs a bound).
_ENDLESS = 2 ** 62


class IndexedSource:
    """A dataset whose examples are loaded by position 0..n-1.

    Args:
      num_examples: n >= 1.
      load: callable(position) -> example dict of NumPy arrays (see
        `mrcnn_tf.data.schema.example_signature`); runs in a `tf.numpy_function`.
      name: for messages.
      num_keypoints: K > 0 when the examples carry keypoints [N, K, 3].
    """

    def __init__(self, num_examples: int, load: Callable[[int], Dict[str, np.ndarray]],
                 name: str, num_keypoints: int = 0):
        if num_examples < 1:
            raise ValueError(f"{name}: no training examples")
        self.num_examples = int(num_examples)
        self.load = load
        self.name = name
        self.num_keypoints = int(num_keypoints)

    @classmethod
    def from_examples(cls, examples: Sequence[Dict[str, np.ndarray]], name="examples"):
        """In-memory examples (e.g. `shapes.make_shapes_arrays`), all with or all without
        keypoints."""
        examples = list(examples)
        num_keypoints = examples[0]["keypoints"].shape[1] if (
            examples and "keypoints" in examples[0]) else 0
        return cls(len(examples), lambda j: examples[j], name, num_keypoints)

    @classmethod
    def from_coco(cls, dataset):
        """A `CocoDataset`. A bad image is replaced by the next good one of the same pass (the
        dataset warns and counts it), so the stream keeps its length and stays aligned."""
        image_ids = list(dataset.image_ids)
        if not image_ids:
            raise ValueError(f"{dataset._name}: no images to train on")

        def load(position):
            for offset in range(len(image_ids)):
                example = dataset._example_or_none(image_ids[(position + offset) % len(image_ids)])
                if example is not None:
                    return example
            raise ValueError(f"{dataset._name}: every image failed to load; "
                             f"see the warnings above ({dataset.report()})")

        return cls(len(image_ids), load, dataset._name, dataset.num_keypoints)

    def elements(self, seed: int, first: int, stride: int) -> tf.data.Dataset:
        """(i, example) for i = first, first + stride, ... (see the module docstring)."""
        n = self.num_examples
        signature = example_signature(self.num_keypoints)
        keys = list(signature)
        base = tf.constant(seed, tf.int64)

        def position(i):
            permutation_seed = tf.stack([base, i // n])
            return tf.random.experimental.index_shuffle(i % n, permutation_seed, n - 1)

        def load_arrays(j):
            example = self.load(int(j))
            return [np.asarray(example[k], signature[k].dtype.as_numpy_dtype) for k in keys]

        def load_tensors(i):
            values = tf.numpy_function(load_arrays, [position(i)],
                                       [signature[k].dtype for k in keys], stateful=False)
            return i, {k: tf.ensure_shape(v, signature[k].shape) for k, v in zip(keys, values)}

        indices = tf.data.Dataset.range(first, _ENDLESS, stride)
        return indices.map(load_tensors, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


class TFRecordSource:
    """TFRecord shards written by `mrcnn_tf.data.tfrecord_writer` (records stay serialized until
    this replica's elements are picked, so skipping and sharding cost no decoding).

    Args:
      files: the shard paths (see `tfrecord_reader.match_files`); shuffle_buffer: records shuffled
        together (a window of the interleaved files) within a pass.
      num_keypoints: K > 0 parses keypoints [N, K, 3] too (records without them give
        unlabelled keypoints).
    """

    def __init__(self, files: List[str], shuffle_buffer: int = 1024, name="tfrecords",
                 num_keypoints: int = 0):
        if not files:
            raise ValueError(f"{name}: no TFRecord files")
        self.files = sorted(files)
        self.shuffle_buffer = int(shuffle_buffer)
        self.name = name
        self.num_keypoints = int(num_keypoints)

    def elements(self, seed: int, first: int, stride: int) -> tf.data.Dataset:
        from mrcnn_tf.data.tfrecord_codec import parse_example  # noqa: PLC0415
        files = tf.constant(self.files)
        base = tf.constant(seed, tf.int64)
        cycle = min(len(self.files), 16)
        buffer = self.shuffle_buffer

        def one_pass(p):
            pass_seed = tf.stack([base, p])
            order = tf.random.experimental.stateless_shuffle(files, pass_seed)
            # Sequential interleave: deterministic, and reading bytes is not the bottleneck.
            records = tf.data.Dataset.from_tensor_slices(order).interleave(
                tf.data.TFRecordDataset, cycle_length=cycle, block_length=1)

            # Shuffle windows of `buffer` records with stateless keys of (seed, pass, window):
            # tf.data's shuffle cannot take a per-pass seed tensor once a global seed is set.
            def shuffle_window(w, window):
                window_seed = tf.stack([base, p * 1_000_003 + w])
                keys = tf.random.stateless_uniform(tf.shape(window), seed=window_seed)
                return tf.gather(window, tf.argsort(keys))

            return records.batch(buffer).enumerate().map(shuffle_window).unbatch()

        stream = tf.data.Dataset.range(_ENDLESS).flat_map(one_pass).enumerate().skip(first)
        if stride > 1:
            stream = stream.shard(stride, 0)
        return stream.map(lambda i, record: (i, parse_example(record, self.num_keypoints)),
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def training_stream(source, config: Config, global_batch: int, seed: int, start_step: int = 0,
                    input_context: Optional[tf.distribute.InputContext] = None,
                    augment: bool = True) -> tf.data.Dataset:
    """This input pipeline's batches, from global step `start_step` on.

    Args:
      source: an `IndexedSource` or `TFRecordSource`.
      config: the model config (preprocessing sizes).
      global_batch: G, images per step over all replicas.
      seed: the run's seed.
      start_step: the first global step (a resumed run's completed steps).
      input_context: from `strategy.distribute_datasets_from_function`; None for one replica.
      augment: flips and scale jitter.
    Returns:
      endless dataset of per-replica batches (dicts of `pipeline.preprocess_for_training`,
      sample_seed included), batch size G / replicas.
    """
    pipelines, pipeline_id, replicas = 1, 0, 1
    if input_context is not None:
        pipelines = input_context.num_input_pipelines
        pipeline_id = input_context.input_pipeline_id
        replicas = input_context.num_replicas_in_sync
    if global_batch % replicas:
        raise ValueError(f"--batch_size={global_batch}: expected a multiple of the "
                         f"{replicas} replicas, so every replica gets the same number of images")
    first = start_step * global_batch + pipeline_id
    elements = source.elements(seed, first, pipelines)
    base = tf.constant(seed, tf.int64)

    def preprocess(i, example):
        return pipeline.preprocess_for_training(example, config, augment,
                                                seed=tf.stack([base, i]))

    batches = elements.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    batches = batches.batch(global_batch // replicas, drop_remainder=True)
    options = tf.data.Options()
    # The stream is already split by element; tf.distribute must not shard it again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return batches.with_options(options).prefetch(tf.data.AUTOTUNE)


def describe(source: Any) -> str:
    """One line for the log: what the stream reads."""
    if isinstance(source, IndexedSource):
        return f"{source.name}: {source.num_examples} examples, a new permutation each pass"
    return f"{source.name}: {len(source.files)} TFRecord files"


def log_stream(source: Any, global_batch: int, start_step: int) -> None:
    logging.info("training input %s; global batch %d, starting at step %d",
                 describe(source), global_batch, start_step)
