"""Training input streams that start at any step and split across replicas exactly.

Element i of a run's stream (i = 0, 1, 2, ... over the whole run, all epochs) is a function
of (seed, i, G) alone (G the global batch): which example it is, its flip and scale jitter,
the canvas it is padded to, and the per-image seed the model samples its RPN anchors and RoIs
from (`sample_seed`). Global step s holds elements s*G .. s*G + G - 1. Hence:

- a run resumed at step s builds its stream from element s*G and continues exactly where the
  killed run stopped, without replaying the skipped elements' image decoding;
- N replicas (one machine or several) together see in each step the same G elements a single
  replica sees, each processed identically (same pixels, same canvas), so their summed
  gradients equal the single-replica gradient up to float summation order.

Batches hold images of one aspect-ratio group and are padded to a canvas that fits them
(`Config.batch_padding`, `mrcnn_tf.ops.canvas`): the stream orders each pass (or shuffle
window) so that global batches are of one group, and plans each global batch's canvas
from the sizes the dataset declares, before any image is decoded, so that every input
pipeline pads its share of a global batch alike.

Sources (`stream` gives (i, handle, declared (height, width)) from any element on, `load`
turns a handle into an example):
- `IndexedSource` (in-memory examples, a `CocoDataset`): element i is an example of pass
  `i // n` in that pass's grouped order (a fresh random order per pass, stateless keys).
- `TFRecordSource`: no random access, so each pass shuffles the file order and windows of
  records (stateless keys), and a resumed run skips serialized records (cheap: only the
  height and width of a record are parsed).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from mrcnn_tf.config import Config
from mrcnn_tf.data import pipeline, schema
from mrcnn_tf.data.coco_problems import ProblemLog
from mrcnn_tf.data.schema import example_signature
from mrcnn_tf.ops import canvas as canvas_ops

# An effectively endless stream (tf.data.Dataset.range needs a bound).
_ENDLESS = 2 ** 62
# Salt telling apart the key streams drawn from one (seed, pass or window) pair: the order
# within an aspect-ratio group and the order of the whole batches.
_BATCH_ORDER_SALT = 7_919


def _order_keys(base, key, count):
    """Two float32 [count] stateless key vectors for one pass or window: the items' order and
    the order of the whole batches."""
    keys = tf.random.stateless_uniform(count, seed=tf.stack([base, key]))
    batch_keys = tf.random.stateless_uniform(count, seed=tf.stack([base + _BATCH_ORDER_SALT,
                                                                   key]))
    return keys, batch_keys


class IndexedSource:
    """A dataset whose examples are loaded by position 0..n-1.

    Args:
      num_examples: n >= 1.
      load: callable(position) -> example dict of NumPy arrays (see
        `mrcnn_tf.data.schema.example_signature`); runs in a `tf.numpy_function`.
      name: for messages.
      num_keypoints: K > 0 when the examples carry keypoints [N, K, 3].
      sizes: int [n, 2] (height, width) each example declares, known before loading it;
        None: unknown (no aspect-ratio groups; batches padded to the square).
      problems: where images with more instances than max_instances are counted (a
        CocoDataset's own log, so its report tells them); None: a log of this source's.
    """

    def __init__(self, num_examples: int, load: Callable[[int], Dict[str, np.ndarray]],
                 name: str, num_keypoints: int = 0, sizes: Optional[np.ndarray] = None,
                 problems: Optional[ProblemLog] = None):
        if num_examples < 1:
            raise ValueError(f"{name}: no training examples")
        self.num_examples = int(num_examples)
        self.load_example = load
        self.name = name
        self.problems = problems or ProblemLog(name, strict=False)
        self.num_keypoints = int(num_keypoints)
        if sizes is None:
            sizes = np.full((self.num_examples, 2), -1, np.int32)
        sizes = np.asarray(sizes, np.int32)
        if sizes.shape != (self.num_examples, 2):
            raise ValueError(f"{name}: sizes of shape {sizes.shape}: expected "
                             f"({self.num_examples}, 2), one (height, width) per example")
        self.sizes = sizes

    @classmethod
    def from_examples(cls, examples: Sequence[Dict[str, np.ndarray]], name="examples"):
        """In-memory examples (e.g. `shapes.make_shapes_arrays`), all with or all without
        keypoints."""
        examples = list(examples)
        num_keypoints = examples[0]["keypoints"].shape[1] if (
            examples and "keypoints" in examples[0]) else 0
        sizes = [np.shape(e[schema.IMAGE])[:2] for e in examples]
        return cls(len(examples), lambda j: examples[j], name, num_keypoints,
                   sizes=np.reshape(np.asarray(sizes, np.int32), (-1, 2)))

    @classmethod
    def from_coco(cls, dataset):
        """A `CocoDataset`, grouped by the sizes its JSON declares. A bad image is replaced by
        the next good one of the same pass (the dataset warns and counts it), so the stream
        keeps its length and stays aligned."""
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

        sizes = np.asarray([dataset.declared_size(i) for i in image_ids], np.int32)
        return cls(len(image_ids), load, dataset._name, dataset.num_keypoints, sizes=sizes,
                   problems=dataset._problems)

    def report(self) -> str:
        """One line: the images cut to max_instances so far (or "nothing skipped")."""
        return f"{self.name}: {self.problems.summary()}"

    def stream(self, seed: int, start: int, group: int) -> tf.data.Dataset:
        """(i, position, declared size int32 [2]) for i = start, start + 1, ...: pass p is the
        n positions in `canvas_ops.grouped_order` with batches of `group`."""
        n = self.num_examples
        sizes = tf.constant(self.sizes)
        base = tf.constant(seed, tf.int64)
        first_pass = start // n

        def one_pass(p):
            keys, batch_keys = _order_keys(base, p, [n])
            order = canvas_ops.grouped_order_tf(keys, sizes, group, p * n, batch_keys)
            skip = tf.where(p == first_pass, tf.constant(start % n, tf.int64), 0)
            return tf.data.Dataset.from_tensor_slices(tf.cast(order[skip:], tf.int64))

        positions = tf.data.Dataset.range(first_pass, _ENDLESS).flat_map(one_pass)
        indices = tf.data.Dataset.range(start, _ENDLESS)
        return tf.data.Dataset.zip(indices, positions).map(
            lambda i, position: (i, position, tf.gather(sizes, position)))

    def load(self, position: tf.Tensor) -> Dict[str, tf.Tensor]:
        """The example at `position` (int64 []) as tensors of `example_signature`."""
        signature = example_signature(self.num_keypoints)
        keys = list(signature)

        def load_arrays(j):
            example = self.load_example(int(j))
            return [np.asarray(example[k], signature[k].dtype.as_numpy_dtype) for k in keys]

        values = tf.numpy_function(load_arrays, [position],
                                   [signature[k].dtype for k in keys], stateful=False)
        return {k: tf.ensure_shape(v, signature[k].shape) for k, v in zip(keys, values)}

    def elements(self, seed: int, first: int, stride: int, group: int = 1) -> tf.data.Dataset:
        return _elements(self, seed, first, stride, group)


class TFRecordSource:
    """TFRecord shards written by `mrcnn_tf.data.tfrecord_writer` (records stay serialized until
    this replica's elements are picked, so skipping and sharding cost no decoding).

    Args:
      files: the shard paths (see `tfrecord_reader.match_files`); shuffle_buffer: records shuffled
        together (a window of the interleaved files) within a pass, rounded up to a multiple
        of the global batch.
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
        self.problems = ProblemLog(name, strict=False)  # images cut to max_instances
        self.num_keypoints = int(num_keypoints)

    def report(self) -> str:
        """One line: the images cut to max_instances so far (or "nothing skipped")."""
        return f"{self.name}: {self.problems.summary()}"

    def stream(self, seed: int, start: int, group: int) -> tf.data.Dataset:
        """(i, serialized record, its image/height and image/width int32 [2]) for i = start,
        start + 1, ...: each window of records in `canvas_ops.grouped_order`."""
        files = tf.constant(self.files)
        base = tf.constant(seed, tf.int64)
        cycle = min(len(self.files), 16)
        buffer = canvas_ops.round_up(self.shuffle_buffer, group)
        size_features = {k: schema.RECORD_FEATURES[k] for k in (
            schema.FEATURE_IMAGE_HEIGHT, schema.FEATURE_IMAGE_WIDTH)}

        def one_pass(p):
            order = tf.random.experimental.stateless_shuffle(files, tf.stack([base, p]))
            # Sequential interleave: deterministic, and reading bytes is not the bottleneck.
            records = tf.data.Dataset.from_tensor_slices(order).interleave(
                tf.data.TFRecordDataset, cycle_length=cycle, block_length=1)
            return records.batch(buffer).enumerate().map(lambda w, window: (p, w, window))

        def count_offsets(count, window):
            return count + tf.size(window[2], tf.int64), (count,) + window

        # Stateless keys of (seed, pass, window): tf.data's shuffle cannot take a per-pass
        # seed tensor once a global seed is set. The scan gives each window its first
        # element's stream index, so its batches line up with the global batches.
        def arrange(offset, p, w, window):
            parsed = tf.io.parse_example(window, size_features)
            hw = tf.cast(tf.stack([parsed[schema.FEATURE_IMAGE_HEIGHT],
                                   parsed[schema.FEATURE_IMAGE_WIDTH]], axis=1), tf.int32)
            keys, batch_keys = _order_keys(base, p * 1_000_003 + w, tf.shape(window))
            order = canvas_ops.grouped_order_tf(keys, hw, group, offset, batch_keys)
            return tf.gather(window, order), tf.gather(hw, order)

        windows = tf.data.Dataset.range(_ENDLESS).flat_map(one_pass)
        records = windows.scan(tf.constant(0, tf.int64), count_offsets).map(arrange).unbatch()
        return records.enumerate().skip(start).map(lambda i, item: (i,) + item)

    def load(self, record: tf.Tensor) -> Dict[str, tf.Tensor]:
        from mrcnn_tf.data.tfrecord_codec import parse_example  # noqa: PLC0415
        return parse_example(record, self.num_keypoints)

    def elements(self, seed: int, first: int, stride: int, group: int = 1) -> tf.data.Dataset:
        return _elements(self, seed, first, stride, group)


def _elements(source, seed: int, first: int, stride: int, group: int) -> tf.data.Dataset:
    """(i, example) for i = first, first + stride, ... of `source`'s stream in batches of
    `group` (without preprocessing: to look at what a run reads)."""
    stream = source.stream(seed, first, group)
    if stride > 1:
        stream = stream.shard(stride, 0)
    return stream.map(lambda i, handle, _: (i, source.load(handle)),
                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def training_stream(source, config: Config, global_batch: int, seed: int, start_step: int = 0,
                    input_context: Optional[tf.distribute.InputContext] = None,
                    augment: bool = True) -> tf.data.Dataset:
    """This input pipeline's batches, from global step `start_step` on.

    Args:
      source: an `IndexedSource` or `TFRecordSource`.
      config: the model config (preprocessing sizes, `batch_padding`).
      global_batch: G, images per step over all replicas.
      seed: the run's seed.
      start_step: the first global step (a resumed run's completed steps).
      input_context: from `strategy.distribute_datasets_from_function`; None for one replica.
      augment: flips and scale jitter.
    Returns:
      endless dataset of per-replica batches (dicts of `pipeline.preprocess_for_training`,
      sample_seed included), batch size G / replicas; images [G / replicas, Hc, Wc, 3] with
      (Hc, Wc) the global batch's canvas (`ops.canvas.plan_canvas`).
    """
    pipelines, pipeline_id, replicas = 1, 0, 1
    if input_context is not None:
        pipelines = input_context.num_input_pipelines
        pipeline_id = input_context.input_pipeline_id
        replicas = input_context.num_replicas_in_sync
    if global_batch % replicas:
        raise ValueError(f"--batch_size={global_batch}: expected a multiple of the "
                         f"{replicas} replicas, so every replica gets the same number of images")
    mode = config.batch_padding
    base = tf.constant(seed, tf.int64)
    if mode == "square":
        stream = source.stream(seed, start_step * global_batch, global_batch)
    else:
        # Every element of a global batch gets the batch's canvas, planned from the declared
        # sizes before the stream is split between pipelines.
        stream = plan_batches(source, config, global_batch, seed, start_step, augment).map(
            lambda i, handle, sizes, canvas: (i, handle, tf.tile(canvas[None],
                                                                 [global_batch, 1]))
        ).unbatch()
    if pipelines > 1:
        stream = stream.shard(pipelines, pipeline_id)

    problems = getattr(source, "problems", None) or ProblemLog(
        getattr(source, "name", "training data"), strict=False)

    def load_and_preprocess(i, handle, *canvas):
        example = _count_instances_beyond_limit(source.load(handle), problems,
                                                config.max_instances)
        return pipeline.preprocess_for_training(
            example, config, augment, seed=tf.stack([base, i]),
            canvas=canvas[0] if canvas else None)

    if mode == "square":
        stream = stream.map(lambda i, handle, _: (i, handle))
    batches = stream.map(load_and_preprocess, num_parallel_calls=tf.data.AUTOTUNE,
                         deterministic=True)
    batches = batches.batch(global_batch // replicas, drop_remainder=True)
    options = tf.data.Options()
    # The stream is already split by element; tf.distribute must not shard it again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return batches.with_options(options).prefetch(tf.data.AUTOTUNE)


def _count_instances_beyond_limit(example, problems: ProblemLog, limit: int):
    """`example`, after telling `problems` when it has more than `limit` instances (the
    preprocessing keeps the first `limit`): one Python call per such image, none otherwise."""
    count = tf.shape(example[schema.BOXES])[0]

    def note(image_id, n):
        problems.too_many_instances(int(image_id), int(n), limit)
        return np.int32(0)

    noted = tf.cond(count > limit,
                    lambda: tf.numpy_function(note, [example[schema.IMAGE_ID], count],
                                              tf.int32, stateful=True),
                    lambda: tf.constant(0, tf.int32))
    with tf.control_dependencies([noted]):
        return {k: tf.identity(v) for k, v in example.items()}


def plan_batches(source, config: Config, global_batch: int, seed: int, start_step: int = 0,
                 augment: bool = True) -> tf.data.Dataset:
    """The run's global batches as planned before any image is read.

    Args: as `training_stream`'s.
    Returns:
      endless dataset of (indices int64 [G], handles [G], sizes int32 [G, 2], canvas int32
      [2]): the elements, the source's handles for them, the size each is resized to
      (-1 where the source does not know it) and the canvas of the batch
      (`ops.canvas.plan_canvas` by config.batch_padding).
    """
    base = tf.constant(seed, tf.int64)

    def resized(args):
        i, hw = args
        new_h, new_w, _ = pipeline.training_size(tf.maximum(hw[0], 1), tf.maximum(hw[1], 1),
                                                 config, augment, seed=tf.stack([base, i]))
        return tf.where(tf.reduce_all(hw > 0), tf.stack([new_h, new_w]), -1)

    def plan(indices, handles, declared):
        sizes = tf.map_fn(resized, (indices, declared),
                          fn_output_signature=tf.TensorSpec([2], tf.int32))
        return (indices, handles, sizes,
                canvas_ops.plan_canvas(sizes, config, config.batch_padding))

    stream = source.stream(seed, start_step * global_batch, global_batch)
    return stream.batch(global_batch, drop_remainder=True).map(plan)


def describe(source: Any) -> str:
    """One line for the log: what the stream reads."""
    if isinstance(source, IndexedSource):
        return (f"{source.name}: {source.num_examples} examples, a new order each pass, "
                "batches grouped by aspect ratio")
    return f"{source.name}: {len(source.files)} TFRecord files"


def log_stream(source: Any, global_batch: int, start_step: int) -> None:
    logging.info("training input %s; global batch %d, starting at step %d",
                 describe(source), global_batch, start_step)
