"""One example <-> one TFRecord: image and mask encoding, serializing and parsing.

The record layout (feature names, what each holds) is `mrcnn_tf.data.schema`'s; this module
chooses the encodings:

  * The image is stored as the original JPEG/PNG file bytes when they decode to exactly the
    example's pixels (no re-encode: a COCO JPEG stays its own size, where a PNG of it is about
    8 times larger; see `decodes_to`), otherwise as a lossless PNG. A phone photo's EXIF
    orientation travels as image/orientation and is applied in the graph after decoding
    (`mrcnn_tf.ops.exif.apply_orientation`), so the parsed image is upright, as the COCO
    reader gives it. Decoding sniffs the format, so image/format is informational.
  * Masks are stored as COCO compressed RLE, never dense: a dense COCO example with 20
    instances at 640x480 is 6 MB of mask bytes, its RLE a few kB.
  * Keypoints are optional features: `parse_example(record)` gives no keypoints field;
    `parse_example(record, num_keypoints=K)` gives keypoints float32 [N, K, 3], all zero
    (v = 0, not labelled) for a record written without keypoints.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import cv2
import numpy as np
import tensorflow as tf
from pycocotools import mask as mask_util

from mrcnn_tf.data import schema
from mrcnn_tf.data.validation import validate_example
from mrcnn_tf.ops import exif

# Class ids are stored as int64 but used as int32; anything larger is a bug upstream.
MAX_CLASS_ID = np.iinfo(np.int32).max

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


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


def decode_image_bytes(image_bytes: bytes, orientation: int = 1) -> np.ndarray:
    """Decodes JPEG/PNG/BMP/GIF bytes to uint8 [H, W, 3] RGB, turned by the EXIF
    `orientation` (1..8), exactly as `parse_example` does.

    `write_tfrecords` keeps an original image file only when this gives exactly the example's
    pixels. OpenCV's `imdecode` of a JPEG agrees with it; 16-bit or CMYK images, colour
    conversions or other decoders may not, and then the writer stores a (larger) PNG.
    """
    return exif.apply_orientation(_decode_image(tf.constant(image_bytes)),
                                  tf.constant(orientation, tf.int32)).numpy()


def _image_format(image_bytes: bytes) -> Optional[bytes]:
    """b"png" / b"jpeg" from the magic number, None for anything else."""
    if image_bytes.startswith(_PNG_MAGIC):
        return b"png"
    if image_bytes.startswith(_JPEG_MAGIC):
        return b"jpeg"
    return None


def decodes_to(image_bytes: bytes, image: np.ndarray, orientation: int = 1) -> bool:
    """True when `image_bytes` is a JPEG/PNG that decodes, turned by `orientation`, to exactly
    `image` (uint8 [H, W, 3])."""
    if _image_format(image_bytes) is None:
        return False
    try:
        decoded = decode_image_bytes(image_bytes, orientation)
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


def serialize_example(example: Mapping[str, Any], image_bytes: Optional[bytes] = None,
                      orientation: int = 1) -> bytes:
    """Serializes one example as a `tf.train.Example` (layout in `mrcnn_tf.data.schema`).

    Args:
      example: image uint8 [H, W, 3] RGB, boxes float32 [N, 4] (y1, x1, y2, x2) pixels,
        class_ids int [N] in 1..num_classes, masks [N, H, W] 0/1, is_crowd bool [N]
        (optional), image_id int, keypoints float32 [N, K, 3] (y, x, v) (optional).
        Validated (and normalized) with `mrcnn_tf.data.validation.validate_example`.
      image_bytes: the image's original JPEG or PNG file, stored instead of a PNG re-encode.
        The caller guarantees it decodes to exactly `example["image"]` (see `decodes_to`;
        `write_tfrecords` checks it); only its size and format are checked here.
      orientation: the EXIF orientation (1..8) that turns the decoded `image_bytes` into
        `example["image"]`; stored as image/orientation. Ignored without image_bytes (a PNG
        re-encode is stored upright).

    Returns:
      The serialized record.

    Raises:
      ValueError: an invalid example (naming its image_id) or image_bytes that are not a JPEG
        or PNG.
    """
    source = f"example with image_id {example.get(schema.IMAGE_ID, '?')}"
    ex = validate_example(example, num_classes=MAX_CLASS_ID, source=source)
    image = ex[schema.IMAGE]
    height, width = image.shape[:2]
    if image_bytes is None:
        encoded, fmt, orientation = encode_png(image), b"png", 1
    else:
        if isinstance(orientation, bool) or int(orientation) not in range(1, 9):
            raise ValueError(f"{source}: orientation={orientation!r}: expected an EXIF "
                             "orientation 1..8")
        image_bytes = bytes(image_bytes)
        fmt = _image_format(image_bytes)
        if fmt is None:
            raise ValueError(f"{source}: image_bytes: expected a JPEG or PNG file, got bytes "
                             f"starting {image_bytes[:8]!r}")
        encoded = image_bytes
    features = {
        schema.FEATURE_IMAGE_ENCODED: _bytes_feature([encoded]),
        schema.FEATURE_IMAGE_FORMAT: _bytes_feature([fmt]),
        schema.FEATURE_IMAGE_ORIENTATION: _int64_feature([int(orientation)]),
        schema.FEATURE_IMAGE_HEIGHT: _int64_feature([height]),
        schema.FEATURE_IMAGE_WIDTH: _int64_feature([width]),
        schema.FEATURE_IMAGE_ID: _int64_feature([ex[schema.IMAGE_ID]]),
        schema.FEATURE_BOXES: _float_feature(ex[schema.BOXES].reshape(-1)),
        schema.FEATURE_CLASS_IDS: _int64_feature(ex[schema.CLASS_IDS]),
        schema.FEATURE_IS_CROWD: _int64_feature(ex[schema.IS_CROWD].astype(np.int64)),
        schema.FEATURE_MASKS_RLE: _bytes_feature(encode_masks_rle(ex[schema.MASKS])),
        schema.FEATURE_FORMAT_VERSION: _int64_feature([schema.FORMAT_VERSION]),
    }
    if schema.KEYPOINTS in ex:
        features[schema.FEATURE_KEYPOINTS] = _float_feature(ex[schema.KEYPOINTS].reshape(-1))
        features[schema.FEATURE_NUM_KEYPOINTS] = _int64_feature(
            [ex[schema.KEYPOINTS].shape[1]])
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
    features = (dict(schema.RECORD_FEATURES, **schema.RECORD_KEYPOINT_FEATURES)
                if num_keypoints else schema.RECORD_FEATURES)
    parsed = tf.io.parse_single_example(serialized, features)
    version_ok = tf.debugging.assert_equal(
        parsed[schema.FEATURE_FORMAT_VERSION], tf.constant(schema.FORMAT_VERSION, tf.int64),
        message="TFRecord format version mismatch: this reader reads version "
                f"{schema.FORMAT_VERSION}; rewrite the shards with this version of mrcnn_tf")
    height = tf.cast(parsed[schema.FEATURE_IMAGE_HEIGHT], tf.int32)
    width = tf.cast(parsed[schema.FEATURE_IMAGE_WIDTH], tf.int32)

    with tf.control_dependencies([version_ok]):
        image = exif.apply_orientation(_decode_image(parsed[schema.FEATURE_IMAGE_ENCODED]),
                                       parsed[schema.FEATURE_IMAGE_ORIENTATION])
    image_ok = tf.debugging.assert_equal(
        tf.shape(image)[:2], tf.stack([height, width]),
        message="TFRecord: decoded image size differs from image/height, image/width")

    boxes = tf.reshape(tf.sparse.to_dense(parsed[schema.FEATURE_BOXES]), [-1, 4])
    class_ids = tf.cast(tf.sparse.to_dense(parsed[schema.FEATURE_CLASS_IDS]), tf.int32)
    is_crowd = tf.sparse.to_dense(parsed[schema.FEATURE_IS_CROWD]) > 0
    rles = tf.sparse.to_dense(parsed[schema.FEATURE_MASKS_RLE])
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
        schema.IMAGE: tf.ensure_shape(image, [None, None, 3]),
        schema.BOXES: boxes,
        schema.CLASS_IDS: class_ids,
        schema.MASKS: masks,
        schema.IS_CROWD: is_crowd,
        schema.IMAGE_ID: parsed[schema.FEATURE_IMAGE_ID],
    }
    if num_keypoints:
        example[schema.KEYPOINTS] = _parse_keypoints(parsed, num, int(num_keypoints))
    return example


def _parse_keypoints(parsed: Mapping[str, tf.Tensor], num: tf.Tensor,
                     num_keypoints: int) -> tf.Tensor:
    """float32 [N, K, 3] from the parsed keypoint features (zeros when the record has none)."""
    values = tf.sparse.to_dense(parsed[schema.FEATURE_KEYPOINTS])
    stored_k = parsed[schema.FEATURE_NUM_KEYPOINTS]
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
