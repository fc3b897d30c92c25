"""Reading image files as uint8 RGB, the right way up.

`read_image(path)` returns uint8 [H, W, 3] RGB for whatever users' datasets contain: JPEG, PNG,
BMP (and anything else OpenCV decodes), grayscale, RGBA (alpha dropped), palette PNGs and
16-bit PNGs (scaled to 8 bits, never clipped).

EXIF orientation. Phones store pixels as the sensor read them and record in the EXIF
"Orientation" tag (0x0112, values 1..8) how to turn them for display. Annotation tools (CVAT,
labelme, Roboflow, browsers) show and annotate the turned image, so the pixels must be turned
the same way before they meet the annotations. OpenCV's `imread(IMREAD_COLOR)` applies the tag
but `IMREAD_UNCHANGED` (needed to keep 16 bits) does not, and neither says which orientation it
found, which the COCO reader needs to recognize JSON files that give the un-turned size. So the
decoder here always ignores the tag (`IMREAD_IGNORE_ORIENTATION`), reads it itself from JPEG
APP1, PNG eXIf or TIFF headers, and applies it with exact NumPy flips and rotations.

Truncated files. A JPEG cut short (an interrupted download or copy) decodes under OpenCV 4.x
into a partly grey image with only a warning on stderr. Such files are rejected here: a complete
JPEG has an end-of-image marker (FF D9) after its first scan, and a complete PNG an IEND chunk.

Every failure raises `ImageReadError` (a ValueError) whose message starts with the path.
"""

from __future__ import annotations

import os
import struct
from typing import Optional, Tuple, Union

import cv2
import numpy as np

from mrcnn_tf.data.validation import to_rgb

PathLike = Union[str, "os.PathLike[str]"]

_JPEG_SOI = b"\xff\xd8"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_HEADERS = (b"II*\x00", b"MM\x00*")
_EXIF_ORIENTATION_TAG = 0x0112
# Orientations 5..8 turn the image by 90 degrees, so the stored height and width are swapped.
SWAPPING_ORIENTATIONS = frozenset((5, 6, 7, 8))


class ImageReadError(ValueError):
    """An image file is missing, unreadable, truncated or not a supported image."""


def _is_remote(path: str) -> bool:
    # "gs://bucket/...", "s3://...": read through tf.io.gfile (TPU training reads from GCS).
    return "://" in path


def read_image_bytes(path: PathLike) -> bytes:
    """The raw bytes of an image file (local path, or a URL-like path such as gs://).

    Raises:
      ImageReadError: the file does not exist, is a folder, cannot be read, or is empty.
    """
    path = os.fspath(path)
    try:
        if _is_remote(path):
            import tensorflow as tf  # only for remote file systems; keeps this module light

            with tf.io.gfile.GFile(path, "rb") as f:
                data = f.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: cannot read image: no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: cannot read image: it is a folder, expected a file"
                             ) from None
    except Exception as e:  # permissions, I/O errors, tf.errors.* for remote paths
        raise ImageReadError(f"{path}: cannot read image: {e}") from None
    if not data:
        raise ImageReadError(f"{path}: cannot read image: the file is empty (0 bytes)")
    return data


# -- EXIF orientation --------------------------------------------------------------------------

def _tiff_orientation(tiff: bytes) -> int:
    """Orientation tag (1..8) in the first IFD of a TIFF structure (the body of EXIF data).

    Returns 1 (as stored) when the tag is absent, malformed or out of range: a broken EXIF block
    must not make a readable image unreadable.
    """
    if len(tiff) < 8 or tiff[:4] not in _TIFF_HEADERS:
        return 1
    endian = "<" if tiff[:2] == b"II" else ">"
    try:
        (ifd_offset,) = struct.unpack_from(endian + "I", tiff, 4)
        (num_entries,) = struct.unpack_from(endian + "H", tiff, ifd_offset)
        for k in range(num_entries):
            entry = ifd_offset + 2 + 12 * k
            tag, field_type, count = struct.unpack_from(endian + "HHI", tiff, entry)
            if tag != _EXIF_ORIENTATION_TAG:
                continue
            if field_type == 3 and count >= 1:  # SHORT: the value sits in the entry itself
                (value,) = struct.unpack_from(endian + "H", tiff, entry + 8)
            elif field_type == 4 and count >= 1:  # LONG, written by a few tools
                (value,) = struct.unpack_from(endian + "I", tiff, entry + 8)
            else:
                return 1
            return int(value) if 1 <= value <= 8 else 1
    except struct.error:
        pass
    return 1


def _jpeg_scan(data: bytes) -> Tuple[int, bool]:
    """Walks a JPEG's marker segments.

    Returns:
      (orientation 1..8 from the first Exif APP1 segment, complete) where complete means an
      end-of-image marker follows the first start-of-scan. Entropy-coded scan data cannot
      contain FF D9 (an FF data byte is written FF 00), so a missing FF D9 after the scan
      means the file was cut; bytes after FF D9 (camera trailers) are fine. The EXIF
      thumbnail's own FF D9 lies inside APP1, before the scan, and is skipped with it.
    """
    orientation = 1
    i = 2
    n = len(data)
    while i < n:
        if data[i] != 0xFF:
            # Not at a marker: the header is damaged. Let the decoder judge the rest.
            return orientation, True
        while i < n and data[i] == 0xFF:  # markers may be preceded by FF fill bytes
            i += 1
        if i >= n:
            break
        marker = data[i]
        i += 1
        if marker == 0xD9:  # EOI before any scan (an abbreviated tables-only stream)
            return orientation, True
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # standalone markers carry no length
            continue
        if i + 2 > n:
            break
        (length,) = struct.unpack_from(">H", data, i)
        if marker == 0xDA:  # start of scan: the image data runs from here to FF D9
            return orientation, data.find(b"\xff\xd9", i + length) >= 0
        if marker == 0xE1 and orientation == 1 and data[i + 2:i + 8] == b"Exif\x00\x00":
            orientation = _tiff_orientation(data[i + 8:i + length])
        i += length
    return orientation, False  # ran out of bytes before the image data ended


def _png_scan(data: bytes) -> Tuple[int, bool]:
    """Walks a PNG's chunks: (orientation from an eXIf chunk or 1, complete = IEND reached)."""
    orientation = 1
    i = len(_PNG_SIGNATURE)
    n = len(data)
    while i + 8 <= n:
        length, kind = struct.unpack_from(">I4s", data, i)
        body = data[i + 8:i + 8 + length]
        if kind == b"IEND":
            return orientation, True
        if kind == b"eXIf":
            # The chunk holds a TIFF structure; some writers keep JPEG's "Exif\0\0" prefix.
            if body.startswith(b"Exif\x00\x00"):
                body = body[6:]
            orientation = _tiff_orientation(body)
        i += 12 + length  # length, type, data, CRC
    return orientation, False


def exif_orientation(data: bytes) -> int:
    """EXIF orientation (1..8) of an encoded JPEG, PNG or TIFF image; 1 when it has none."""
    if data.startswith(_JPEG_SOI):
        return _jpeg_scan(data)[0]
    if data.startswith(_PNG_SIGNATURE):
        return _png_scan(data)[0]
    if data[:4] in _TIFF_HEADERS:
        return _tiff_orientation(data)
    return 1


def apply_exif_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turns stored pixels so that they display the right way up.

    EXIF orientation values name where the stored first row and column belong:
      1 as stored, 2 mirror left-right, 3 rotate 180, 4 mirror top-bottom,
      5 transpose (mirror about the main diagonal), 6 rotate 90 clockwise,
      7 transverse (mirror about the anti-diagonal), 8 rotate 90 counter-clockwise.

    Args:
      image: [H, W] or [H, W, C] array as stored in the file.
      orientation: EXIF value 1..8 (anything else is treated as 1).

    Returns:
      A C-contiguous array, [W, H, ...] for orientations 5..8, else [H, W, ...].
    """
    if orientation == 2:
        image = image[:, ::-1]
    elif orientation == 3:
        image = image[::-1, ::-1]
    elif orientation == 4:
        image = image[::-1]
    elif orientation == 5:
        image = np.swapaxes(image, 0, 1)
    elif orientation == 6:
        image = np.rot90(image, k=-1)  # rot90 turns counter-clockwise for positive k
    elif orientation == 7:
        image = np.swapaxes(image, 0, 1)[::-1, ::-1]
    elif orientation == 8:
        image = np.rot90(image, k=1)
    return np.ascontiguousarray(image)


# -- decoding ----------------------------------------------------------------------------------

def _to_uint8(image: np.ndarray, source: str) -> np.ndarray:
    """8-bit pixels from 8- or 16-bit ones.

    16-bit values map to 8 bits by round(v / 257), the inverse of the usual 8->16 bit widening
    v * 257, so 65535 -> 255 and 257 * k -> k. Clipping to 255 would saturate almost every pixel.
    """
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    raise ImageReadError(f"{source}: unsupported pixel type {image.dtype}; expected 8- or 16-bit "
                         "integer images (JPEG, PNG, BMP, ...)")


def decode_image(data: bytes, source: str = "<bytes>",
                 apply_orientation: bool = True) -> Tuple[np.ndarray, int]:
    """Decodes an encoded image to uint8 RGB, turned upright by its EXIF orientation.

    Args:
      data: the file's bytes.
      source: named at the start of error messages (usually the path).
      apply_orientation: turn the pixels by the EXIF orientation (what annotation tools show).

    Returns:
      (image uint8 [H, W, 3] RGB, orientation 1..8 found in the file). With orientation 5..8
      (and apply_orientation) H and W are the stored width and height.

    Raises:
      ImageReadError: truncated, undecodable or of an unsupported pixel type.
    """
    orientation, complete = 1, True
    if data.startswith(_JPEG_SOI):
        orientation, complete = _jpeg_scan(data)
        what = "JPEG has no end-of-image marker (FF D9) after its image data"
    elif data.startswith(_PNG_SIGNATURE):
        orientation, complete = _png_scan(data)
        what = "PNG has no IEND chunk"
    elif data[:4] in _TIFF_HEADERS:
        orientation = _tiff_orientation(data)
    if not complete:
        raise ImageReadError(f"{source}: truncated image file ({what}); re-copy or re-export it")

    # ANYDEPTH keeps 16 bits; ANYCOLOR keeps grey as one channel and gives palette images as
    # colour; the tag is applied below, where we know which one it was.
    flags = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        image: Optional[np.ndarray] = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as e:
        raise ImageReadError(f"{source}: cannot decode image: {e}") from None
    if image is None or image.size == 0:
        raise ImageReadError(f"{source}: cannot decode image: not a supported image or damaged "
                             "(expected JPEG, PNG, BMP, TIFF, WebP, ...)")
    image = _to_uint8(image, source)
    # OpenCV's BGR(A) -> RGB, alpha (if any) dropped. In place for BGR: a reversed view made
    # contiguous would hold a second copy of a large photo (300 MB at 10000 x 10000).
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    try:
        image = to_rgb(image, source)
    except ValueError as e:
        raise ImageReadError(str(e)) from None
    if apply_orientation and orientation != 1:
        image = apply_exif_orientation(image, orientation)
    return np.ascontiguousarray(image), orientation


def read_image_and_orientation(path: PathLike) -> Tuple[np.ndarray, int]:
    """Like `read_image`, also returning the EXIF orientation (1..8) that was applied."""
    path = os.fspath(path)
    return decode_image(read_image_bytes(path), source=path)


def read_image(path: PathLike) -> np.ndarray:
    """Reads an image file as uint8 [H, W, 3] RGB, the right way up (see module doc).

    Grayscale is repeated to 3 channels, alpha is dropped, palette images are expanded and
    16-bit images are scaled to 8 bits.

    Raises:
      ImageReadError: (a ValueError) naming the path, for a missing, unreadable, truncated or
        undecodable file.
    """
    return read_image_and_orientation(path)[0]
