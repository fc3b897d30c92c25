"""Helpers that write test images and COCO files into a test's tmp_path.

Everything is built from first principles so the tests do not depend on what OpenCV can write:
PNG files of any colour type are assembled chunk by chunk (zlib + CRC32), and EXIF orientation
is added to a JPEG by splicing a minimal APP1 segment in after its start-of-image marker.
"""

from __future__ import annotations

import json
import pathlib
import struct
import zlib
from typing import Any, Optional, Sequence

import cv2
import numpy as np


def pattern_image(height: int = 40, width: int = 60, seed: int = 0) -> np.ndarray:
    """uint8 [H, W, 3] RGB: smooth gradients (JPEG-friendly) plus a pure red top-left block.

    The red block makes "which way up" and "RGB vs BGR" visible in one look: it must end up at
    the top-left, and red.
    """
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([ys * (200.0 / height), xs * (200.0 / width),
                      np.full_like(ys, float(rng.integers(40, 200)))], axis=-1)
    image[: height // 4, : width // 4] = (255, 0, 0)
    return image.astype(np.uint8)


def encode(rgb: np.ndarray, ext: str, params: Sequence[int] = ()) -> bytes:
    """RGB (or grey) uint8/uint16 array -> encoded bytes via OpenCV (which wants BGR)."""
    array = rgb[:, :, ::-1] if rgb.ndim == 3 and rgb.shape[2] == 3 else rgb
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(array), list(params))
    assert ok, ext
    return buf.tobytes()


def write_bytes(path: pathlib.Path, data: bytes) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_image(path: pathlib.Path, rgb: np.ndarray) -> pathlib.Path:
    """Writes RGB pixels in the format of the path's extension."""
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix.lower() in (".jpg", ".jpeg") else []
    return write_bytes(path, encode(rgb, path.suffix, params))


# -- PNG, by hand --------------------------------------------------------------------------------

def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bytes(samples: np.ndarray, color_type: int, bit_depth: int = 8,
              palette: Optional[np.ndarray] = None, exif: Optional[bytes] = None) -> bytes:
    """A PNG file of any colour type.

    Args:
      samples: [H, W] or [H, W, C] uint8 (bit_depth 8) or uint16 (bit_depth 16) sample values,
        C matching the colour type (0 grey, 2 RGB, 3 palette index, 4 grey+alpha, 6 RGBA).
      palette: [P, 3] uint8 RGB entries, for colour type 3.
      exif: TIFF-structured EXIF data for an eXIf chunk.
    """
    samples = samples if samples.ndim == 3 else samples[:, :, None]
    height, width = samples.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"  # PNG stores 16-bit samples big-endian
    rows = samples.astype(dtype).reshape(height, -1).view(np.uint8).reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 on every row
    out = b"\x89PNG\r\n\x1a\n"
    out += _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type,
                                           0, 0, 0))
    if palette is not None:
        out += _png_chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes())
    if exif is not None:
        out += _png_chunk(b"eXIf", exif)
    out += _png_chunk(b"IDAT", zlib.compress(raw))
    return out + _png_chunk(b"IEND", b"")


# -- EXIF ----------------------------------------------------------------------------------------

def exif_tiff(orientation: int, big_endian: bool = False) -> bytes:
    """A TIFF structure with one IFD holding only the Orientation tag (0x0112, SHORT)."""
    e = ">" if big_endian else "<"
    header = (b"MM\x00*" if big_endian else b"II*\x00") + struct.pack(e + "I", 8)
    # One entry: tag, type 3 (SHORT), count 1, value left-justified in the 4-byte field.
    entry = struct.pack(e + "HHI", 0x0112, 3, 1) + struct.pack(e + "HH", orientation, 0)
    return header + struct.pack(e + "H", 1) + entry + struct.pack(e + "I", 0)


def jpeg_with_exif(jpeg: bytes, orientation: int, big_endian: bool = False) -> bytes:
    """The JPEG with an APP1 Exif segment (orientation only) right after its SOI marker."""
    assert jpeg[:2] == b"\xff\xd8"
    payload = b"Exif\x00\x00" + exif_tiff(orientation, big_endian)
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + app1 + jpeg[2:]


# -- COCO files ----------------------------------------------------------------------------------

def write_json(path: pathlib.Path, data: Any) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def box_mask(y1: int, x1: int, y2: int, x2: int, height: int = 40, width: int = 60
             ) -> np.ndarray:
    """uint8 [height, width] mask of rows y1..y2-1 and columns x1..x2-1 (the default size is
    `pattern_image`'s)."""
    mask = np.zeros((height, width), np.uint8)
    mask[y1:y2, x1:x2] = 1
    return mask


def rect_polygon(x1: float, y1: float, x2: float, y2: float) -> list:
    """Polygon [x, y, ...] of a rectangle; pycocotools fills columns x1..x2-1, rows y1..y2-1."""
    return [x1, y1, x2, y1, x2, y2, x1, y2]


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE {"size": [H, W], "counts": [...]}, written independently of
    pycocotools: run lengths of the column-major (Fortran order) pixels, starting with a run
    of zeros (possibly empty)."""
    flat = np.asarray(mask, np.uint8).flatten(order="F")
    changes = np.nonzero(np.diff(flat))[0] + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"size": list(mask.shape), "counts": counts}


def compressed_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE with str counts, as JSON files hold it."""
    from pycocotools import mask as mask_util

    rle = mask_util.encode(np.asfortranarray(np.asarray(mask, np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


# -- COCO person keypoints ---------------------------------------------------------------------

# COCO's own 1-based limb list, as person_keypoints_*.json files hold it.
COCO_PERSON_SKELETON_1BASED = [
    [16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8],
    [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7],
]


def coco_keypoints(points: dict, num_keypoints: int = 17) -> list:
    """A COCO "keypoints" list [x1, y1, v1, ...] of `num_keypoints` entries: keypoint k is
    points[k] = (x, y, v) (integer pixel indices), every other one (0, 0, 0)."""
    flat = [0] * (3 * num_keypoints)
    for k, (x, y, v) in points.items():
        flat[3 * k: 3 * k + 3] = [x, y, v]
    return flat


def person_category(cat_id: int = 1, name: str = "person",
                    keypoint_names: Optional[Sequence[str]] = None) -> dict:
    """A person_keypoints category with COCO's 17 names and 1-based skeleton by default."""
    from mrcnn_tf.keypoint_spec import COCO_PERSON_KEYPOINT_NAMES

    names = COCO_PERSON_KEYPOINT_NAMES if keypoint_names is None else keypoint_names
    return {"id": cat_id, "name": name, "supercategory": "person", "keypoints": list(names),
            "skeleton": [list(pair) for pair in COCO_PERSON_SKELETON_1BASED]}
