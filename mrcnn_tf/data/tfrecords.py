"""TFRecord shards of examples: write once, read fast from local disk or gs://.

Reading COCO JSON and decoding image files in Python is too slow (and too GIL-bound) to feed
accelerators; converting a dataset once to TFRecord shards lets `tf.data` read, decode and
preprocess in parallel C++ threads, and lets `tf.distribute` split the *files* between workers.

One record (`tf.train.Example`) per example of the common structure (see
`mrcnn_tf.data.shapes`):

    image/encoded         bytes       PNG of the RGB image, or the original JPEG/PNG file
                                      bytes when they decode to exactly the same pixels
                                      (smaller, no re-encode)
    image/format          bytes       b"png" or b"jpeg" (informational; decoding sniffs)
    image/height          int64       H
    image/width           int64       W
    image/id              int64       image_id
    object/bbox           float [4N]  (y1, x1, y2, x2) pixels, flattened
    object/class_id       int64 [N]   1..num_classes
    object/is_crowd       int64 [N]   0/1
    object/mask_rle       bytes [N]   COCO compressed RLE "counts" of each [H, W] mask
    object/keypoints      float [3NK] (y, x, v) of each instance's K keypoints, flattened;
                                      only in records of examples with keypoints
    object/num_keypoints  int64       K, keypoint types per instance; present exactly when
                                      the record has keypoints (also with N = 0)
    format/version        int64       FORMAT_VERSION

Keypoints are optional features, so the format version is unchanged: records without them
parse exactly as before. `parse_example(record)` gives no keypoints field;
`parse_example(record, num_keypoints=K)` gives keypoints float32 [N, K, 3], all zero
(v = 0, not labelled) for a record written without keypoints.

Masks are stored as compressed RLE, never dense: a dense COCO example with 20 instances at
640x480 is 6 MB of mask bytes, its RLE a few kB.

Files: `PREFIX-00000-of-00004.tfrecord` ... plus `PREFIX-label_map.json` (the `LabelMap`, so
the class ids in the records can be mapped back to dataset category ids). Read them back with
`tfrecord_dataset("PREFIX-*-of-*.tfrecord")` and `read_label_map("PREFIX")`. When the shards
have keypoints, the label map file also holds "keypoint_names" and "keypoint_skeleton" (flat
0-based pairs), read back with `read_keypoint_spec("PREFIX")`; `LabelMap.from_dict` ignores
them, and files without them read as having no keypoints.

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

import cv2
import numpy as np
import tensorflow as tf
from absl import logging
from pycocotools import mask as mask_util

from mrcnn_tf.data.validation import validate_example
from mrcnn_tf.labels import LabelMap
from mrcnn_tf.io_utils import write_json_atomic

# Bumped whenever the record layout changes incompatibly; readers refuse other versions
# instead of silently misreading fields.
FORMAT_VERSION = 1

# Examples between two progress lines when `progress=True`.
DEFAULT_PROGRESS_EVERY = 1000

# Class ids are stored as int64 but used as int32; anything larger is a bug upstream.
_MAX_CLASS_ID = np.iinfo(np.int32).max

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"

_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "image/id": tf.io.FixedLenFeature([], tf.int64),
    "object/bbox": tf.io.VarLenFeature(tf.float32),
    "object/class_id": tf.io.VarLenFeature(tf.int64),
    "object/is_crowd": tf.io.VarLenFeature(tf.int64),
    "object/mask_rle": tf.io.VarLenFeature(tf.string),
    "format/version": tf.io.FixedLenFeature([], tf.int64),
}
# Parsed only when the reader wants keypoints; absent in records without them (K = 0).
_KEYPOINT_FEATURES = {
    "object/keypoints": tf.io.VarLenFeature(tf.float32),
    "object/num_keypoints": tf.io.FixedLenFeature([], tf.int64, default_value=0),
}


# -- paths -----------------------------------------------------------------------------------

def shard_path(out_prefix: str, index: int, num_shards: int) -> str:
    """Final name of shard `index` (0-based) of `num_shards`."""
    return f"{out_prefix}-{index:05d}-of-{num_shards:05d}.tfrecord"


def label_map_path(out_prefix: str) -> str:
    """Where `write_tfrecords` puts the label map of the shards at `out_prefix`."""
    return f"{out_prefix}-label_map.json"


def _split_prefix(out_prefix: str) -> Tuple[str, str]:
    """(folder, base name) of a prefix; the folder of a bare name is the current one."""
    folder, base = os.path.split(out_prefix)
    if not base:
        raise ValueError(f"output prefix {out_prefix!r}: expected a file name prefix such as "
                         "'data/train', not a folder")
    return folder or ".", base


def _is_local(path: str) -> bool:
    return "://" not in path


# -- encoding --------------------------------------------------------------------------------

def _bytes_feature(values: Sequence[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _int64_feature(values: Sequence[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _float_feature(values: np.ndarray) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def encode_png(image: np.ndarray) -> bytes:
    """Lossless PNG bytes of a uint8 [H, W, 3] RGB image."""
    # OpenCV encodes BGR; it is ~2x faster than an eager tf.io.encode_png call per image.
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"OpenCV could not PNG-encode an image of shape {image.shape}")
    return encoded.tobytes()


def _decode_image(encoded: tf.Tensor) -> tf.Tensor:
    """string [] JPEG/PNG/BMP/GIF -> uint8 [H, W, 3] RGB (graph and eager alike)."""
    return tf.cond(
        tf.io.is_jpeg(encoded),
        # TF's default JPEG IDCT is INTEGER_FAST, which differs from libjpeg's default
        # (ISLOW, what OpenCV and PIL use) on most pixels by up to ~4 levels; the accurate one
        # matches them, so originals decoded by OpenCV can be stored as they are.
        lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(encoded, channels=3, dtype=tf.uint8,
                                   expand_animations=False))


def decode_image_bytes(image_bytes: bytes) -> np.ndarray:
    """Decodes JPEG/PNG/BMP/GIF bytes to uint8 [H, W, 3] RGB exactly as `parse_example` does.

    `write_tfrecords` keeps an original image file only when this gives exactly the example's
    pixels. OpenCV's `imdecode` of a baseline JPEG agrees with it; EXIF rotation, colour
    conversions or other decoders may not, and then the writer stores a (larger) PNG.
    """
    return _decode_image(tf.constant(image_bytes)).numpy()


def _image_format(image_bytes: bytes) -> Optional[bytes]:
    """b"png" / b"jpeg" from the magic number, None for anything else."""
    if image_bytes.startswith(_PNG_MAGIC):
        return b"png"
    if image_bytes.startswith(_JPEG_MAGIC):
        return b"jpeg"
    return None


def decodes_to(image_bytes: bytes, image: np.ndarray) -> bool:
    """True when `image_bytes` is a JPEG/PNG that decodes to exactly `image` (uint8 [H, W, 3])."""
    if _image_format(image_bytes) is None:
        return False
    try:
        decoded = decode_image_bytes(image_bytes)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
        return False  # corrupt or truncated file: the re-encoded pixels are what we trust
    return decoded.shape == image.shape and np.array_equal(decoded, image)


def encode_masks_rle(masks: np.ndarray) -> List[bytes]:
    """COCO compressed RLE "counts" of each mask.

    Args:
      masks: [N, H, W] 0/1 (any integer or bool dtype).

    Returns:
      N bytes strings; `{"size": [H, W], "counts": s}` is the pycocotools RLE of mask i.
    """
    if masks.shape[0] == 0:
        return []
    # pycocotools reads column-major [H, W, N] uint8.
    stacked = np.asfortranarray(np.transpose(masks != 0, (1, 2, 0)).astype(np.uint8))
    return [rle["counts"] for rle in mask_util.encode(stacked)]


def decode_masks_rle(counts: np.ndarray, height, width) -> np.ndarray:
    """Inverse of `encode_masks_rle`.

    Args:
      counts: [N] bytes (an object array, as `tf.numpy_function` passes a string tensor).
      height, width: H, W (scalars).

    Returns:
      uint8 [N, H, W] 0/1, C-contiguous.
    """
    h, w = int(height), int(width)
    if len(counts) == 0:
        return np.zeros((0, h, w), np.uint8)
    decoded = mask_util.decode([{"size": [h, w], "counts": c} for c in counts])  # [H, W, N]
    return np.ascontiguousarray(np.transpose(decoded, (2, 0, 1)))


def serialize_example(example: Mapping[str, Any], image_bytes: Optional[bytes] = None) -> bytes:
    """Serializes one example as a `tf.train.Example` (layout in the module doc).

    Args:
      example: image uint8 [H, W, 3] RGB, boxes float32 [N, 4] (y1, x1, y2, x2) pixels,
        class_ids int [N] in 1..num_classes, masks [N, H, W] 0/1, is_crowd bool [N]
        (optional), image_id int, keypoints float32 [N, K, 3] (y, x, v) (optional).
        Validated (and normalized) with `mrcnn_tf.data.validation.validate_example`.
      image_bytes: the image's original JPEG or PNG file, stored instead of a PNG re-encode.
        The caller guarantees it decodes to exactly `example["image"]` (see `decodes_to`;
        `write_tfrecords` checks it); only its size and format are checked here.

    Returns:
      The serialized record.

    Raises:
      ValueError: an invalid example (naming its image_id) or image_bytes that are not a JPEG
        or PNG.
    """
    source = f"example with image_id {example.get('image_id', '?')}"
    ex = validate_example(example, num_classes=_MAX_CLASS_ID, source=source)
    image = ex["image"]
    height, width = image.shape[:2]
    if image_bytes is None:
        encoded, fmt = encode_png(image), b"png"
    else:
        image_bytes = bytes(image_bytes)
        fmt = _image_format(image_bytes)
        if fmt is None:
            raise ValueError(f"{source}: image_bytes: expected a JPEG or PNG file, got bytes "
                             f"starting {image_bytes[:8]!r}")
        encoded = image_bytes
    features = {
        "image/encoded": _bytes_feature([encoded]),
        "image/format": _bytes_feature([fmt]),
        "image/height": _int64_feature([height]),
        "image/width": _int64_feature([width]),
        "image/id": _int64_feature([ex["image_id"]]),
        "object/bbox": _float_feature(ex["boxes"].reshape(-1)),
        "object/class_id": _int64_feature(ex["class_ids"]),
        "object/is_crowd": _int64_feature(ex["is_crowd"].astype(np.int64)),
        "object/mask_rle": _bytes_feature(encode_masks_rle(ex["masks"])),
        "format/version": _int64_feature([FORMAT_VERSION]),
    }
    if "keypoints" in ex:
        features["object/keypoints"] = _float_feature(ex["keypoints"].reshape(-1))
        features["object/num_keypoints"] = _int64_feature([ex["keypoints"].shape[1]])
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


# -- decoding --------------------------------------------------------------------------------

def parse_example(serialized: tf.Tensor,
                  num_keypoints: Optional[int] = None) -> Dict[str, tf.Tensor]:
    """Parses one record written by `serialize_example`.

    Pure TF except the RLE mask decoding (pycocotools in a `tf.numpy_function`), so it runs in
    parallel in `Dataset.map`. Fails with a clear message on a record of another format version
    or with inconsistent field lengths.

    Args:
      serialized: string [] tensor, one record.
      num_keypoints: K > 0 to read keypoints (a graph needs a fixed set of fields, so the
        caller says whether it wants them, not each record); None or 0 ignores them.

    Returns:
      dict: image uint8 [H, W, 3], boxes float32 [N, 4], class_ids int32 [N],
      masks uint8 [N, H, W], is_crowd bool [N], image_id int64 []; H, W, N dynamic (ranks
      static). With num_keypoints K also keypoints float32 [N, K, 3] (y, x, v), all zero for a
      record without keypoints; a record with another K fails.
    """
    features = dict(_FEATURES, **_KEYPOINT_FEATURES) if num_keypoints else _FEATURES
    parsed = tf.io.parse_single_example(serialized, features)
    version_ok = tf.debugging.assert_equal(
        parsed["format/version"], tf.constant(FORMAT_VERSION, tf.int64),
        message=f"TFRecord format version mismatch: this reader reads version {FORMAT_VERSION}; "
                "rewrite the shards with this version of mrcnn_tf")
    height = tf.cast(parsed["image/height"], tf.int32)
    width = tf.cast(parsed["image/width"], tf.int32)

    with tf.control_dependencies([version_ok]):
        image = _decode_image(parsed["image/encoded"])
    image_ok = tf.debugging.assert_equal(
        tf.shape(image)[:2], tf.stack([height, width]),
        message="TFRecord: decoded image size differs from image/height, image/width")

    boxes = tf.reshape(tf.sparse.to_dense(parsed["object/bbox"]), [-1, 4])
    class_ids = tf.cast(tf.sparse.to_dense(parsed["object/class_id"]), tf.int32)
    is_crowd = tf.sparse.to_dense(parsed["object/is_crowd"]) > 0
    rles = tf.sparse.to_dense(parsed["object/mask_rle"])
    num = tf.shape(boxes)[0]
    counts_ok = tf.debugging.assert_equal(
        tf.stack([tf.size(class_ids), tf.size(is_crowd), tf.size(rles)]), tf.fill([3], num),
        message="TFRecord: object/bbox, class_id, is_crowd and mask_rle lengths differ")

    with tf.control_dependencies([counts_ok, image_ok]):
        masks = tf.numpy_function(decode_masks_rle, [rles, height, width], tf.uint8,
                                  stateful=False)
    # numpy_function returns an unknown shape; the reshape gives a static rank 3 (and checks
    # the decoded size) so later ops see [N, H, W].
    masks = tf.reshape(masks, tf.stack([num, height, width]))
    example = {
        "image": tf.ensure_shape(image, [None, None, 3]),
        "boxes": boxes,
        "class_ids": class_ids,
        "masks": masks,
        "is_crowd": is_crowd,
        "image_id": parsed["image/id"],
    }
    if num_keypoints:
        example["keypoints"] = _parse_keypoints(parsed, num, int(num_keypoints))
    return example


def _parse_keypoints(parsed: Mapping[str, tf.Tensor], num: tf.Tensor,
                     num_keypoints: int) -> tf.Tensor:
    """float32 [N, K, 3] from the parsed keypoint features (zeros when the record has none)."""
    values = tf.sparse.to_dense(parsed["object/keypoints"])
    stored_k = parsed["object/num_keypoints"]
    size = tf.size(values, out_type=tf.int64)
    want = tf.cast(num, tf.int64) * 3 * num_keypoints
    absent = tf.logical_and(tf.equal(stored_k, 0), tf.equal(size, 0))
    present = tf.logical_and(tf.equal(stored_k, num_keypoints), tf.equal(size, want))
    ok = tf.debugging.Assert(
        tf.logical_or(absent, present),
        [f"TFRecord: expected object/keypoints of {num_keypoints} keypoints (3 * N * "
         f"{num_keypoints} values) or none; got object/num_keypoints, values, N =",
         stored_k, size, num])
    with tf.control_dependencies([ok]):
        # A record without keypoints has no labelled keypoint: padding with zeros (v = 0)
        # says exactly that, and keeps one code path for both kinds of record.
        values = tf.pad(values, [[0, want - size]])
    return tf.reshape(values, tf.stack([num, num_keypoints, 3]))


# -- writing ---------------------------------------------------------------------------------

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


def _check_keypoint_spec(names: Sequence[str], skeleton: Sequence[int],
                         source: str) -> Tuple[Tuple[str, ...], Tuple[int, ...]]:
    """(names, skeleton) as tuples, checked: distinct str names, flat 0-based index pairs."""
    names, skeleton = tuple(names), tuple(skeleton)
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise ValueError(f"{source}: keypoint_names {list(names)[:20]}: expected distinct "
                         "strings")
    if len(skeleton) % 2 or not all(
            isinstance(i, (int, np.integer)) and not isinstance(i, bool)
            and 0 <= i < len(names) for i in skeleton):
        raise ValueError(f"{source}: keypoint_skeleton {list(skeleton)[:40]}: expected flat "
                         f"0-based index pairs (a0, b0, a1, b1, ...) in 0..{len(names) - 1}")
    return names, tuple(int(i) for i in skeleton)


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
    num_classes = label_map.num_classes if label_map is not None else _MAX_CLASS_ID
    keypoint_names, keypoint_skeleton = _check_keypoint_spec(
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
    stats = {"examples": 0, "original_images": 0, "reencoded_images": 0}
    seen_ids = set()  # ints only: bounded by the number of images, not their size
    writers = _open_writers(folder, tmp_paths)
    try:
        for index, example in enumerate(examples):
            where = f"example #{index} (image_id {example.get('image_id', '?')})"
            ex = validate_example(example, num_classes=num_classes, source=where,
                                  num_keypoints=len(keypoint_names) or None)
            image_id = int(ex["image_id"])
            if image_id in seen_ids:
                raise ValueError(f"{where}: image_id is used by an earlier example; ids must "
                                 "be unique (evaluation and per-image lookups rely on it)")
            seen_ids.add(image_id)
            original = image_bytes_fn(example) if image_bytes_fn is not None else None
            if original is not None:
                if decodes_to(bytes(original), ex["image"]):
                    stats["original_images"] += 1
                else:
                    original = None  # lossy or differently-decoded: keep exact pixels as PNG
                    stats["reencoded_images"] += 1
            # Round-robin: shards differ in size by at most one example.
            writers[index % num_shards].write(serialize_example(ex, original))
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
                        "mrcnn_tf.data.tfrecords.decode_image_bytes to keep the originals)",
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
      examples: iterable of example dicts (structure in the module doc), any length.
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
                   = None, progress: Union[bool, int] = True) -> List[str]:
    """Converts a whole dataset (e.g. `CocoDataset`) to shards plus its label map.

    Args:
      dataset: an object with `__iter__` yielding examples, `__len__` and a `label_map`
        (`LabelMap`) attribute; its `keypoint_names` and `keypoint_skeleton` (as
        `CocoDataset` has them), if any, go into the label map file.
      out_prefix, num_shards, image_bytes_fn, progress: as in `write_tfrecords`.

    Returns:
      The shard paths. A summary (examples, shards, bytes, seconds) is logged.
    """
    label_map = getattr(dataset, "label_map", None)
    if not isinstance(label_map, LabelMap):
        raise ValueError(f"make_tfrecords: the dataset ({type(dataset).__name__}) needs a "
                         f"`label_map` attribute of type LabelMap, got {type(label_map).__name__}")
    total = len(dataset)
    paths, stats = _write_tfrecords(
        iter(dataset), out_prefix, num_shards, label_map=label_map, progress=progress,
        image_bytes_fn=image_bytes_fn, total=total,
        keypoint_names=getattr(dataset, "keypoint_names", ()),
        keypoint_skeleton=getattr(dataset, "keypoint_skeleton", ()))
    num_bytes = sum(tf.io.gfile.stat(p).length for p in paths)
    seconds = stats["seconds"]
    logging.info(
        "make_tfrecords: %d examples (%d classes) -> %d shards %s, %.1f MB, %.1f s "
        "(%.1f examples/s); original image files kept for %d, PNG for the rest; label map %s",
        stats["examples"], label_map.num_classes, len(paths),
        f"{out_prefix}-*-of-{num_shards:05d}.tfrecord", num_bytes / 1e6, seconds,
        stats["examples"] / max(seconds, 1e-9), stats["original_images"],
        label_map_path(out_prefix))
    if stats["examples"] != total:
        logging.warning("make_tfrecords: the dataset's len() is %d but it yielded %d examples",
                        total, stats["examples"])
    return paths


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
    return _check_keypoint_spec(names, skeleton, f"label map {path!r}")


# -- reading ---------------------------------------------------------------------------------

def _match_files(file_pattern: Union[str, Sequence[str]]) -> List[str]:
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
    files = _match_files(file_pattern)
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
