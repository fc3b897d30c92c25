"""Writing examples to TFRecord shards, crash-safely, plus the label map file next to them.

`write_tfrecords(examples, "PREFIX", num_shards)` streams examples round-robin into
`PREFIX-00000-of-00004.tfrecord` ..., one record per example as `tfrecord_codec` serializes
it, and writes the label map file `PREFIX-label_map.json` next to them (file names:
`tfrecord_files`); `make_tfrecords(dataset, ...)` converts a whole dataset such as
`CocoDataset`. Read them back with `tfrecord_reader`.

Crash safety: shards are written under temporary names (`.BASENAME.<token>.shardNNNNN.tmp`,
hidden, without "-of-" and without the ".tfrecord" suffix, so no glob for shards matches
them) and renamed to their final names only after every shard is complete. An exception
(Ctrl-C included) deletes the temporary files; a hard kill (SIGKILL, pre-emption) can leave
them behind, harmless and safe to delete, and never leaves a file named like a shard.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf
from absl import logging

from mrcnn_tf.data import schema
from mrcnn_tf.data.images import exif_orientation, read_image_bytes
from mrcnn_tf.data.tfrecord_codec import MAX_CLASS_ID, decodes_to, serialize_example
from mrcnn_tf.data.tfrecord_files import check_keypoint_spec, label_map_path, shard_path
from mrcnn_tf.data.validation import validate_example
from mrcnn_tf.io_utils import write_json_atomic
from mrcnn_tf.labels import LabelMap

# Examples between two progress lines when `progress=True`.
DEFAULT_PROGRESS_EVERY = 1000


def _split_prefix(out_prefix: str) -> Tuple[str, str]:
    """(folder, base name) of a prefix; the folder of a bare name is the current one."""
    folder, base = os.path.split(out_prefix)
    if not base:
        raise ValueError(f"output prefix {out_prefix!r}: expected a file name prefix such as "
                         "'data/train', not a folder")
    return folder or ".", base


def _is_local(path: str) -> bool:
    return "://" not in path


def _progress_every(progress: Union[bool, int]) -> int:
    """Examples between progress lines (0: silent)."""
    if isinstance(progress, bool):
        return DEFAULT_PROGRESS_EVERY if progress else 0
    if progress < 0:
        raise ValueError(f"progress={progress}: expected a bool or a count >= 0")
    return int(progress)


def _log_progress(count: int, total: Optional[int], start: float, final: bool) -> None:
    elapsed = max(time.monotonic() - start, 1e-9)
    rate = count / elapsed
    done = f"{count}/{total} ({100.0 * count / total:.1f}%)" if total else f"{count}"
    eta = ""
    if total and not final and rate > 0:
        eta = f", ~{(total - count) / rate:.0f} s left"
    logging.info("write_tfrecords: %s examples %s in %.1f s, %.1f examples/s%s",
                 "wrote" if final else "written", done, elapsed, rate, eta)


def _write_json(path: str, obj: Any) -> None:
    """Atomic JSON write for local paths (fsync + os.replace) and gfile paths (tmp + rename)."""
    if _is_local(path):
        write_json_atomic(path, obj, indent=2)
        return
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(json.dumps(obj, indent=2))
    tf.io.gfile.rename(tmp, path, overwrite=True)


def _open_writers(folder: str, paths: List[str]) -> List[tf.io.TFRecordWriter]:
    """Creates `folder` and opens one writer per temporary path, or raises a clear ValueError."""
    writers: List[tf.io.TFRecordWriter] = []
    try:
        tf.io.gfile.makedirs(folder)
        for path in paths:
            writers.append(tf.io.TFRecordWriter(path))
    except (tf.errors.OpError, OSError) as e:
        for writer in writers:
            writer.close()
        _remove_quietly(paths)
        message = getattr(e, "message", None) or str(e)
        raise ValueError(f"cannot write TFRecords in folder {folder!r}: {message}") from None
    return writers


def _remove_quietly(paths: Iterable[str]) -> None:
    for path in paths:
        try:
            tf.io.gfile.remove(path)
        except tf.errors.NotFoundError:
            pass
        except tf.errors.OpError as e:  # cleanup must not hide the error that caused it
            logging.warning("could not remove temporary file %s: %s", path, e)


def _stale_shards(out_prefix: str, keep: Sequence[str]) -> List[str]:
    """Shards of an earlier run at the same prefix with a different shard count."""
    pattern = re.compile(re.escape(out_prefix) + r"-\d{5}-of-\d{5}\.tfrecord")
    keep = set(keep)
    return sorted(p for p in tf.io.gfile.glob(f"{out_prefix}-*-of-*.tfrecord")
                  if pattern.fullmatch(p) and p not in keep)


def _write_tfrecords(examples: Iterable[Mapping[str, Any]], out_prefix: str, num_shards: int,
                     label_map: Optional[LabelMap] = None, progress: Union[bool, int] = True,
                     image_bytes_fn: Optional[Callable[[Mapping[str, Any]], Optional[bytes]]]
                     = None, total: Optional[int] = None, keypoint_names: Sequence[str] = (),
                     keypoint_skeleton: Sequence[int] = ()
                     ) -> Tuple[List[str], Dict[str, Any]]:
    """`write_tfrecords`, also returning statistics (examples, originals kept, seconds)."""
    if isinstance(num_shards, bool) or not isinstance(num_shards, (int, np.integer)) \
            or num_shards < 1:
        raise ValueError(f"num_shards={num_shards!r}: expected an integer >= 1")
    num_shards = int(num_shards)
    out_prefix = os.fspath(out_prefix)
    folder, base = _split_prefix(out_prefix)
    every = _progress_every(progress)
    num_classes = label_map.num_classes if label_map is not None else MAX_CLASS_ID
    keypoint_names, keypoint_skeleton = check_keypoint_spec(
        keypoint_names, keypoint_skeleton, "write_tfrecords")
    if keypoint_names and label_map is None:
        raise ValueError("write_tfrecords: keypoint_names are stored in the label map file; "
                         "expected a label_map with them")
    label_map_json = label_map.to_dict() if label_map is not None else None
    if keypoint_names:
        label_map_json.update(keypoint_names=list(keypoint_names),
                              keypoint_skeleton=list(keypoint_skeleton))

    final_paths = [shard_path(out_prefix, i, num_shards) for i in range(num_shards)]
    # Hidden, and neither "-of-" nor ".tfrecord" in the name: no shard glob can pick a partial
    # file up. The random token keeps two concurrent writers to one prefix apart.
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp_paths = [os.path.join(folder, f".{base}.{token}.shard{i:05d}.tmp")
                 for i in range(num_shards)]

    start = time.monotonic()
    # source_bytes: the original files offered (the shards' size is read from the files).
    stats = {"examples": 0, "original_images": 0, "reencoded_images": 0, "source_bytes": 0}
    seen_ids = set()  # ints only: bounded by the number of images, not their size
    writers = _open_writers(folder, tmp_paths)
    try:
        for index, example in enumerate(examples):
            where = f"example #{index} (image_id {example.get(schema.IMAGE_ID, '?')})"
            ex = validate_example(example, num_classes=num_classes, source=where,
                                  num_keypoints=len(keypoint_names) or None)
            image_id = int(ex[schema.IMAGE_ID])
            if image_id in seen_ids:
                raise ValueError(f"{where}: image_id is used by an earlier example; ids must "
                                 "be unique (evaluation and per-image lookups rely on it)")
            seen_ids.add(image_id)
            original = image_bytes_fn(example) if image_bytes_fn is not None else None
            orientation = 1
            if original is not None:
                original = bytes(original)
                stats["source_bytes"] += len(original)
                orientation = exif_orientation(original)
                if decodes_to(original, ex[schema.IMAGE], orientation):
                    stats["original_images"] += 1
                else:
                    original = None  # lossy or differently-decoded: keep exact pixels as PNG
                    stats["reencoded_images"] += 1
            # Round-robin: shards differ in size by at most one example.
            writers[index % num_shards].write(serialize_example(ex, original, orientation))
            stats["examples"] = index + 1
            if every and (index + 1) % every == 0:
                _log_progress(index + 1, total, start, final=False)
        for writer in writers:
            writer.close()  # flushes; for gs:// this is where the upload completes
        if label_map_json is not None:
            # Before the renames: every complete set of shards has its label map next to it.
            _write_json(label_map_path(out_prefix), label_map_json)
    except BaseException:
        # BaseException: Ctrl-C must not leave temporary files either.
        for writer in writers:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - already failing; the original error matters
                pass
        _remove_quietly(tmp_paths)
        raise

    for tmp, final in zip(tmp_paths, final_paths):
        tf.io.gfile.rename(tmp, final, overwrite=True)
    # Shards of an earlier run at this prefix with another count would match the same
    # `PREFIX-*-of-*.tfrecord` glob and silently mix two datasets in training: remove them.
    for stale in _stale_shards(out_prefix, final_paths):
        logging.warning("write_tfrecords: removing %s, a shard of an earlier run with a "
                        "different shard count", stale)
        tf.io.gfile.remove(stale)

    stats["seconds"] = time.monotonic() - start
    if every:
        _log_progress(stats["examples"], total, start, final=True)
    if stats["examples"] < num_shards:
        logging.warning("write_tfrecords: %d examples in %d shards: some shards are empty",
                        stats["examples"], num_shards)
    if stats["reencoded_images"]:
        logging.warning("write_tfrecords: %d original image files did not decode to the "
                        "example's pixels and were stored as PNG instead (decode images with "
                        "mrcnn_tf.data.tfrecord_codec.decode_image_bytes to keep the originals)",
                        stats["reencoded_images"])
    return final_paths, stats


def write_tfrecords(examples: Iterable[Mapping[str, Any]], out_prefix: str, num_shards: int,
                    label_map: Optional[LabelMap] = None, progress: Union[bool, int] = True,
                    image_bytes_fn: Optional[Callable[[Mapping[str, Any]], Optional[bytes]]]
                    = None, total: Optional[int] = None, keypoint_names: Sequence[str] = (),
                    keypoint_skeleton: Sequence[int] = ()) -> List[str]:
    """Streams examples into `num_shards` TFRecord files.

    Memory stays bounded: each example is validated, serialized and written before the next is
    drawn from `examples`. Examples go round-robin to the shards, so shard sizes differ by at
    most one example. See the module doc for the file names and why a killed run never leaves
    a file that looks like a finished shard. Shards of an earlier run at the same prefix with a
    different shard count are removed after success (they would match the same glob).

    Args:
      examples: iterable of example dicts (structure in `mrcnn_tf.data.schema`), any length.
      out_prefix: local path or gfile URL (gs://...) prefix, e.g. "data/coco/train". Its folder
        is created if missing.
      num_shards: number of files (>= 1). Use at least as many as the largest number of
        input workers that will read them, and files of roughly 100-200 MB.
      label_map: written atomically to `PREFIX-label_map.json`; class ids are then checked to
        lie in 1..label_map.num_classes.
      progress: True logs (absl) every 1000 examples and a final count and rate, an int sets
        the interval, False/0 is silent.
      image_bytes_fn: optional `example -> bytes | None` giving the original JPEG/PNG file;
        it is stored instead of a PNG re-encode when it decodes (with `decode_image_bytes`) to
        exactly the example's image, and ignored otherwise.
      total: number of examples, if known, for percentages and time left in progress lines.
      keypoint_names: the K keypoint names of the examples' keypoints [N, K, 3]; written to
        the label map file (so label_map is then required), and every example with keypoints
        must have K of them. Empty: keypoints of any K are written without names.
      keypoint_skeleton: flat 0-based limb pairs, written next to the names.

    Returns:
      The shard paths, in shard order.

    Raises:
      ValueError: num_shards < 1, an unwritable or uncreatable folder (named), an invalid
        example (naming its index and image_id), a repeated image_id, or malformed keypoint
        names or skeleton. No shard is created then, and temporary files are removed.
    """
    paths, _ = _write_tfrecords(examples, out_prefix, num_shards, label_map, progress,
                                image_bytes_fn, total, keypoint_names, keypoint_skeleton)
    return paths


def make_tfrecords(dataset: Any, out_prefix: str, num_shards: int,
                   image_bytes_fn: Optional[Callable[[Mapping[str, Any]], Optional[bytes]]]
                   = None, progress: Union[bool, int] = True,
                   keep_originals: bool = True) -> List[str]:
    """Converts a whole dataset (e.g. `CocoDataset`) to shards plus its label map.

    Args:
      dataset: an object with `__iter__` yielding examples, `__len__` and a `label_map`
        (`LabelMap`) attribute; its `keypoint_names` and `keypoint_skeleton` (as
        `CocoDataset` has them), if any, go into the label map file.
      out_prefix, num_shards, image_bytes_fn, progress: as in `write_tfrecords`.
      keep_originals: without an image_bytes_fn, offer each example's own image file (the
        dataset's `image_path(image_id)`, as `CocoDataset` has it) to be stored as it is,
        EXIF orientation included, when it decodes to the example's pixels; False stores
        PNG re-encodes.

    Returns:
      The shard paths. A summary (examples, shards, bytes per image against the source
      files, seconds) is logged.
    """
    label_map = getattr(dataset, "label_map", None)
    if not isinstance(label_map, LabelMap):
        raise ValueError(f"make_tfrecords: the dataset ({type(dataset).__name__}) needs a "
                         f"`label_map` attribute of type LabelMap, got {type(label_map).__name__}")
    total = len(dataset)
    if image_bytes_fn is None and keep_originals and hasattr(dataset, "image_path"):
        image_bytes_fn = lambda example: read_image_bytes(  # noqa: E731
            dataset.image_path(int(example[schema.IMAGE_ID])))
    paths, stats = _write_tfrecords(
        iter(dataset), out_prefix, num_shards, label_map=label_map, progress=progress,
        image_bytes_fn=image_bytes_fn, total=total,
        keypoint_names=getattr(dataset, "keypoint_names", ()),
        keypoint_skeleton=getattr(dataset, "keypoint_skeleton", ()))
    num_bytes = sum(tf.io.gfile.stat(p).length for p in paths)
    seconds = stats["seconds"]
    logging.info(
        "make_tfrecords: %d examples (%d classes) -> %d shards %s, %.1f MB, %.1f s "
        "(%.1f examples/s); original image files kept for %d, PNG for the rest%s; label map %s",
        stats["examples"], label_map.num_classes, len(paths),
        f"{out_prefix}-*-of-{num_shards:05d}.tfrecord", num_bytes / 1e6, seconds,
        stats["examples"] / max(seconds, 1e-9), stats["original_images"],
        source_comparison(stats, num_bytes), label_map_path(out_prefix))
    if stats["examples"] != total:
        logging.warning("make_tfrecords: the dataset's len() is %d but it yielded %d examples",
                        total, stats["examples"])
    return paths


def source_comparison(stats: Mapping[str, int], shard_bytes: int) -> str:
    """", 1.02x the 3 source image files (45.1 kB a record against 44.2 kB a file)" from the
    writer's statistics and the shards' total size; "" when no source file was offered."""
    if not stats.get("source_bytes") or not stats.get("examples"):
        return ""
    per_record = shard_bytes / stats["examples"]
    offered = stats["original_images"] + stats["reencoded_images"]
    per_file = stats["source_bytes"] / max(offered, 1)
    return (f", {shard_bytes / stats['source_bytes']:.2f}x the {offered} source "
            f"image files ({per_record / 1e3:.1f} kB a record against {per_file / 1e3:.1f} kB "
            "a file)")
