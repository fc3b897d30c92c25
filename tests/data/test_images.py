"""Tests for mrcnn_tf.data.images: formats, colour types, bit depths, EXIF, bad files."""

import pathlib
import sys

import cv2
import numpy as np
import pytest

# The fixture helpers sit next to this file; tests/ has no package for tests/data.
sys.path.insert(0, str(pathlib.Path(__file__).parent))
from coco_fixtures import (encode, exif_tiff, jpeg_with_exif, pattern_image, png_bytes,
                           write_bytes, write_image)
from mrcnn_tf.data import images
from mrcnn_tf.data.images import ImageReadError, decode_image, read_image


def _mean_abs_diff(a, b):
    return float(np.mean(np.abs(a.astype(np.int32) - b.astype(np.int32))))


@pytest.mark.parametrize("ext", [".png", ".bmp"])
def test_lossless_formats_round_trip_exactly_in_rgb_order(tmp_path, ext):
    rgb = pattern_image()
    out = read_image(write_image(tmp_path / f"a{ext}", rgb))
    assert out.dtype == np.uint8 and out.shape == (40, 60, 3)
    np.testing.assert_array_equal(out, rgb)
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])  # red stays red: RGB, not BGR


def test_jpeg_reads_close_to_source_in_rgb_order(tmp_path):
    rgb = pattern_image()
    out = read_image(write_image(tmp_path / "a.jpg", rgb))
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    assert _mean_abs_diff(out, rgb) < 4.0
    assert out[2, 2, 0] > 200 and out[2, 2, 1] < 60 and out[2, 2, 2] < 60


def test_grayscale_png_and_jpeg_become_three_equal_channels(tmp_path):
    gray = pattern_image()[:, :, 1]
    out = read_image(write_bytes(tmp_path / "g.png", png_bytes(gray, color_type=0)))
    assert out.shape == (40, 60, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)
    out = read_image(write_image(tmp_path / "g.jpg", gray))
    assert out.shape == (40, 60, 3)
    np.testing.assert_array_equal(out[:, :, 0], out[:, :, 2])


def test_rgba_and_gray_alpha_drop_alpha_without_compositing(tmp_path):
    rgb = pattern_image()
    alpha = np.zeros((40, 60), np.uint8)  # fully transparent: compositing would blank it
    out = read_image(write_bytes(tmp_path / "rgba.png",
                                 png_bytes(np.dstack([rgb, alpha]), color_type=6)))
    np.testing.assert_array_equal(out, rgb)
    gray = rgb[:, :, 1]
    out = read_image(write_bytes(tmp_path / "la.png",
                                 png_bytes(np.dstack([gray, alpha]), color_type=4)))
    np.testing.assert_array_equal(out, np.repeat(gray[:, :, None], 3, axis=2))


def test_palette_png_is_expanded_to_its_colours(tmp_path):
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]], np.uint8)
    index = (np.arange(40 * 60).reshape(40, 60) % 4).astype(np.uint8)
    out = read_image(write_bytes(tmp_path / "p.png",
                                 png_bytes(index, color_type=3, palette=palette)))
    np.testing.assert_array_equal(out, palette[index])


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    # 257 * k is the 16-bit form of 8-bit k; 255 and 128 are small 16-bit values that
    # clipping would turn into 255 and 128 instead of ~1 and ~0.
    values = np.array([0, 255, 128, 257 * 7, 257 * 200 + 100, 32768, 65535], np.uint16)
    expected = np.array([0, 1, 0, 7, 200, 128, 255], np.uint8)
    gray = np.tile(values, (4, 1))
    out = read_image(write_bytes(tmp_path / "g16.png", png_bytes(gray, 0, bit_depth=16)))
    np.testing.assert_array_equal(out[:, :, 0], np.tile(expected, (4, 1)))
    # Colour 16-bit, channel order kept.
    rgb16 = np.stack([gray, np.full_like(gray, 65535), np.zeros_like(gray)], axis=-1)
    out = read_image(write_bytes(tmp_path / "c16.png", png_bytes(rgb16, 2, bit_depth=16)))
    np.testing.assert_array_equal(out[:, :, 0], np.tile(expected, (4, 1)))
    assert (out[:, :, 1] == 255).all() and (out[:, :, 2] == 0).all()


def test_exif_orientation_6_jpeg_comes_out_upright(tmp_path):
    upright = pattern_image(40, 60)
    # The camera stored the pixels turned 90 degrees counter-clockwise; orientation 6 tells the
    # viewer to turn them 90 degrees clockwise to display them upright.
    stored = np.ascontiguousarray(np.rot90(upright, k=1))
    assert stored.shape == (60, 40, 3)
    data = jpeg_with_exif(encode(stored, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95]), 6)
    image, orientation = images.read_image_and_orientation(write_bytes(tmp_path / "r.jpg", data))
    assert orientation == 6
    assert image.shape == (40, 60, 3)
    assert _mean_abs_diff(image, upright) < 4.0
    assert image[2, 2, 0] > 200 and image[2, 2, 1] < 60  # the red block is top-left again


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("big_endian", [False, True])
def test_all_orientations_match_exact_numpy_turns_and_opencv(orientation, big_endian):
    stored = pattern_image(24, 36)
    plain = encode(stored, ".jpg")
    tagged = jpeg_with_exif(plain, orientation, big_endian)
    decoded_plain, found = decode_image(plain)
    assert found == 1
    image, found = decode_image(tagged)
    assert found == orientation
    # Independent expectations: what each EXIF value means, spelled out with NumPy.
    expected = {
        1: decoded_plain, 2: decoded_plain[:, ::-1], 3: decoded_plain[::-1, ::-1],
        4: decoded_plain[::-1], 5: decoded_plain.transpose(1, 0, 2),
        6: np.rot90(decoded_plain, -1), 7: np.rot90(decoded_plain, -1)[::-1],
        8: np.rot90(decoded_plain, 1),
    }[orientation]
    np.testing.assert_array_equal(image, expected)
    # And OpenCV's own EXIF handling (IMREAD_COLOR applies it) agrees.
    by_opencv = cv2.imdecode(np.frombuffer(tagged, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(image, by_opencv)


def test_png_exif_orientation_is_applied():
    stored = pattern_image(20, 30)
    image, orientation = decode_image(png_bytes(stored, 2, exif=exif_tiff(8)))
    assert orientation == 8
    np.testing.assert_array_equal(image, np.rot90(stored, 1))


def test_broken_exif_block_is_ignored_not_fatal():
    jpeg = encode(pattern_image(), ".jpg")
    tagged = jpeg_with_exif(jpeg, 6)
    # Point the IFD offset far past the end of the block.
    broken = tagged.replace(b"II*\x00\x08\x00\x00\x00", b"II*\x00\xff\xff\x00\x00", 1)
    assert broken != tagged
    image, orientation = decode_image(broken)
    assert orientation == 1 and image.shape == (40, 60, 3)


def test_truncated_jpeg_raises_naming_the_path(tmp_path):
    data = encode(pattern_image(), ".jpg")
    path = write_bytes(tmp_path / "cut.jpg", data[: len(data) * 2 // 3])
    with pytest.raises(ImageReadError, match="cut.jpg.*truncated"):
        read_image(path)


def test_jpeg_end_marker_check_itself():
    # OpenCV 5 refuses truncated JPEGs on its own while 4.x decodes them grey-filled with a
    # warning; test the marker walk directly so it is covered whatever OpenCV does.
    data = jpeg_with_exif(encode(pattern_image(), ".jpg"), 3)  # APP1 before the scan
    assert images._jpeg_scan(data) == (3, True)
    assert images._jpeg_scan(data + b"camera trailer \xff\x00")[1]
    assert not images._jpeg_scan(data[:-2])[1]
    assert not images._jpeg_scan(data[: len(data) // 2])[1]
    assert not images._jpeg_scan(data[:30])[1]  # cut inside the headers


def test_truncated_png_raises(tmp_path):
    data = encode(pattern_image(), ".png")
    assert images._png_scan(data) == (1, True)
    assert not images._png_scan(data[:-12])[1]  # IEND chunk cut off
    with pytest.raises(ImageReadError, match="cut.png"):
        read_image(write_bytes(tmp_path / "cut.png", data[: len(data) // 2]))


@pytest.mark.parametrize("make", ["missing", "empty", "text", "folder"])
def test_unreadable_files_raise_image_read_error_naming_the_path(tmp_path, make):
    path = tmp_path / f"bad_{make}.jpg"
    if make == "empty":
        path.write_bytes(b"")
    elif make == "text":
        path.write_text("this is not an image")
    elif make == "folder":
        path.mkdir()
    with pytest.raises(ImageReadError, match=f"bad_{make}.jpg") as info:
        read_image(path)
    assert isinstance(info.value, ValueError)
