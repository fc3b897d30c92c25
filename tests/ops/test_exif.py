"""ops/exif: the EXIF orientation read from bytes and applied inside the graph agrees with the
NumPy reader that predict and the datasets use (data/images.py)."""

import pathlib
import sys

import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "data"))
from coco_fixtures import (encode, exif_tiff, jpeg_with_exif, pattern_image,  # noqa: E402
                           png_bytes)

from mrcnn_tf.data.images import decode_image  # noqa: E402
from mrcnn_tf.ops import exif  # noqa: E402


@tf.function
def decode_upright(data):
    """What serve_encoded does with one image's bytes."""
    image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
    orientation = exif.exif_orientation(data)
    return exif.apply_orientation(image, orientation), orientation


def turned(stored, orientation):
    """What each EXIF value means, spelled out with NumPy (as tests/data/test_images.py)."""
    return {1: stored, 2: stored[:, ::-1], 3: stored[::-1, ::-1], 4: stored[::-1],
            5: stored.transpose(1, 0, 2), 6: np.rot90(stored, -1),
            7: np.rot90(stored, -1)[::-1], 8: np.rot90(stored, 1)}[orientation]


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("big_endian", [False, True])
def test_jpeg_orientation_matches_the_numpy_reader(orientation, big_endian):
    plain = encode(pattern_image(24, 36), ".jpg")
    tagged = jpeg_with_exif(plain, orientation, big_endian)
    assert decode_image(tagged)[1] == orientation  # the NumPy reader finds the same tag
    image, read = decode_upright(tf.constant(tagged))
    assert int(read) == orientation
    # TensorFlow's and OpenCV's JPEG decoders differ by a few levels: compare the turn of
    # TensorFlow's own decoding of the stored pixels.
    stored = tf.io.decode_image(plain, channels=3).numpy()
    np.testing.assert_array_equal(image.numpy(), turned(stored, orientation))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_png_exif_chunk_is_applied(orientation):
    data = png_bytes(pattern_image(20, 30), 2, exif=exif_tiff(orientation))
    expected, found = decode_image(data)
    assert found == orientation
    image, read = decode_upright(tf.constant(data))
    assert int(read) == orientation
    np.testing.assert_array_equal(image.numpy(), expected)


def test_no_or_broken_exif_leaves_the_image_as_stored():
    stored = pattern_image(16, 20)
    jpeg = encode(stored, ".jpg")
    broken = jpeg_with_exif(jpeg, 6).replace(b"II*\x00\x08\x00\x00\x00",
                                             b"II*\x00\xff\xff\x00\x00", 1)
    out_of_range = jpeg_with_exif(jpeg, 9)
    for data in (jpeg, broken, out_of_range, encode(stored, ".png")):
        image, read = decode_upright(tf.constant(data))
        assert int(read) == 1
        assert image.shape[:2] == stored.shape[:2]
    np.testing.assert_array_equal(decode_upright(tf.constant(broken))[0].numpy(),
                                  tf.io.decode_image(jpeg, channels=3).numpy())
    for junk in (b"", b"\xff\xd8", b"Exif\x00\x00II*\x00", b"random bytes" * 10):
        assert int(exif.exif_orientation(tf.constant(junk))) == 1
