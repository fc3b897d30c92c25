"""Reading TFRecord shards: examples decoded in parallel, and the label map next to them.

Reading COCO JSON and decoding image files in Python is too slow (and too GIL-bound) to feed
accelerators; a dataset converted once to TFRecord shards (`tfrecord_writer`) lets `tf.data`
read, decode and preprocess in parallel C++ threads, from local disk or gs://, and lets
`tf.distribute` split the *files* between workers. Read the shards back with
`tfrecord_dataset("PREFIX-*-of-*.tfrecord")`, their label map with `read_label_map("PREFIX")`
and, when they have keypoints, the keypoint names and skeleton with
`read_keypoint_spec("PREFIX")` (file names in `tfrecord_files`).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import tensorflow as tf

from mrcnn_tf.data.tfrecord_codec import parse_example
from mrcnn_tf.data.tfrecord_files import check_keypoint_spec, label_map_path
from mrcnn_tf.labels import LabelMap


# -- the label map file ----------------------------------------------------------------------

def _read_label_map_json(out_prefix: str) -> Tuple[str, Dict[str, Any]]:
    """(path, parsed JSON) of the label map file next to the shards at `out_prefix`."""
    path = label_map_path(os.fspath(out_prefix))
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"label map {path!r} not found (written by write_tfrecords / "
                                "make_tfrecords when a label map is given)")
    with tf.io.gfile.GFile(path, "r") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"label map {path!r} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"label map {path!r}: expected a JSON object, got a "
                         f"{type(data).__name__}")
    return path, data


def read_label_map(out_prefix: str) -> LabelMap:
    """The `LabelMap` written next to the shards at `out_prefix` by `write_tfrecords`."""
    _, data = _read_label_map_json(out_prefix)
    return LabelMap.from_dict(data)


def read_keypoint_spec(out_prefix: str) -> Tuple[Tuple[str, ...], Tuple[int, ...]]:
    """(keypoint_names, keypoint_skeleton) of the shards at `out_prefix`.

    Returns:
      The K names and the flat 0-based skeleton written by `write_tfrecords`, or two empty
      tuples for shards without keypoints (label map files of earlier versions included).

    Raises:
      FileNotFoundError: no label map file; ValueError: malformed keypoint entries (naming
        the file).
    """
    path, data = _read_label_map_json(out_prefix)
    names, skeleton = data.get("keypoint_names", []), data.get("keypoint_skeleton", [])
    if not (isinstance(names, list) and isinstance(skeleton, list)):
        raise ValueError(f"label map {path!r}: keypoint_names and keypoint_skeleton must be "
                         "lists")
    return check_keypoint_spec(names, skeleton, f"label map {path!r}")


# -- the shards ------------------------------------------------------------------------------

def match_files(file_pattern: Union[str, Sequence[str]]) -> List[str]:
    """The sorted, de-duplicated files matching one glob pattern or several; ValueError naming
    a pattern that matches nothing."""
    patterns = [file_pattern] if isinstance(file_pattern, (str, os.PathLike)) else file_pattern
    files: List[str] = []
    for pattern in patterns:
        matched = tf.io.gfile.glob(os.fspath(pattern))
        if not matched:
            raise ValueError(f"no TFRecord files match {os.fspath(pattern)!r}")
        files.extend(matched)
    # Sorted, so every worker sees the same list before taking its share.
    return sorted(set(files))


def tfrecord_dataset(file_pattern: Union[str, Sequence[str]], shuffle_files: bool = True,
                     cycle_length: Optional[int] = None, seed: Optional[int] = None,
                     input_context: Optional[tf.distribute.InputContext] = None,
                     num_keypoints: Optional[int] = None) -> tf.data.Dataset:
    """Examples from TFRecord shards, decoded in parallel.

    Args:
      file_pattern: glob (tf.io.gfile syntax, local or gs://), e.g.
        "data/train-*-of-*.tfrecord", or a list of globs.
      shuffle_files: shuffle the file order (every epoch); records inside a file keep their
        order, so also shuffle examples downstream (`make_training_dataset` does).
      cycle_length: files read concurrently; default min(number of files, 16).
      seed: makes the file order and the interleaving deterministic (the output order is then
        reproducible); without it the interleave may return whichever file is ready first.
      input_context: `tf.distribute.InputContext` (from `distribute_datasets_from_function`):
        this pipeline reads only files `input_pipeline_id::num_input_pipelines` of the sorted
        list, so workers read disjoint files and together read every file once.
      num_keypoints: K to also read keypoints [N, K, 3] (e.g.
        `len(read_keypoint_spec(prefix)[0])`); None ignores them (see `parse_example`).

    Returns:
      Dataset of dicts: image uint8 [H, W, 3], boxes float32 [N, 4], class_ids int32 [N],
      masks uint8 [N, H, W], is_crowd bool [N], image_id int64 [] and, with num_keypoints,
      keypoints float32 [N, K, 3] (see `parse_example`), ready for
      `mrcnn_tf.data.pipeline.make_training_dataset`.

    Raises:
      ValueError: a pattern matches no file (naming it), or there are fewer files than input
        pipelines.
    """
    files = match_files(file_pattern)
    if input_context is not None and input_context.num_input_pipelines > 1:
        n, k = input_context.num_input_pipelines, input_context.input_pipeline_id
        if len(files) < n:
            raise ValueError(
                f"{file_pattern!r} matches {len(files)} files but there are {n} input "
                f"pipelines (workers): each needs at least one file; write at least {n} shards")
        # Strided, so each worker gets files spread over the whole (round-robin written) set.
        files = files[k::n]
    if cycle_length is None:
        cycle_length = min(len(files), 16)
    deterministic = seed is not None or not shuffle_files

    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_files and len(files) > 1:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(
        # 8 MB read buffer: large sequential reads, which matter on network file systems.
        lambda path: tf.data.TFRecordDataset(path, buffer_size=8 << 20),
        cycle_length=cycle_length, block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic)

    def parse(serialized):
        return parse_example(serialized, num_keypoints=num_keypoints)

    return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
