"""EXIF orientation read from encoded image bytes and applied, inside the graph.

The project's policy, everywhere an image file or its bytes are decoded: apply the EXIF
Orientation tag (0x0112), so a phone photo is detected the right way up and boxes come back in
the upright image's pixels. `data/images.py` does it in NumPy for files (predict, datasets, the
serving client); this module does the same for the SavedModel's `serve_encoded` signature,
where `tf.io.decode_image` ignores the tag.

Where the tag is found: a JPEG's APP1 segment ("Exif\\0\\0" then a TIFF structure), or a PNG's
eXIf chunk (a TIFF structure). In the TIFF structure: a byte-order mark ("II" little-endian or
"MM" big-endian), the magic 42, the offset of the first IFD, then that IFD's entry count and
12-byte entries (tag, type, count, value). Orientation is a SHORT (type 3; a LONG, type 4, from a
few tools) whose value sits in the entry itself. Anything absent, truncated or out of range
gives 1 (as stored): a broken EXIF block never makes a readable image unreadable.

The meaning of each value (what turns the stored pixels upright):
  1 as stored, 2 mirror left-right, 3 rotate 180, 4 mirror top-bottom,
  5 transpose (mirror about the main diagonal), 6 rotate 90 clockwise,
  7 transverse (mirror about the anti-diagonal), 8 rotate 90 counter-clockwise.
"""

import tensorflow as tf

ORIENTATION_TAG = 0x0112
# IFD entries read: the orientation tag is among the first few in every camera's IFD0.
MAX_IFD_ENTRIES = 64


def _bytes(data, start, length):
    """int32 [length] of data[start:start + length] (`length` a Python int), zero-padded
    past the end."""
    raw = tf.io.decode_raw(tf.strings.substr(data, start, length), tf.uint8)
    padded = tf.pad(tf.cast(raw, tf.int32), [[0, length - tf.shape(raw)[0]]])
    padded.set_shape([length])  # length is a Python int: later slices have static sizes
    return padded


def _tiff_orientation(tiff):
    """Orientation 1..8 (int32 []) in the first IFD of the TIFF structure `tiff` (string [])."""
    header = _bytes(tiff, 0, 8)
    little = tf.reduce_all(tf.equal(header[:4], [0x49, 0x49, 0x2A, 0x00]))
    big = tf.reduce_all(tf.equal(header[:4], [0x4D, 0x4D, 0x00, 0x2A]))

    def unsigned(values):
        """Byte groups [..., n] -> integers in the file's byte order."""
        n = values.shape[-1]
        weights = tf.constant([256 ** i for i in range(n)], tf.int64)
        weights = tf.where(little, weights, tf.reverse(weights, [0]))
        return tf.reduce_sum(tf.cast(values, tf.int64) * weights, axis=-1)

    ifd_offset = unsigned(header[4:8])
    length = 2 + 12 * MAX_IFD_ENTRIES
    in_range = ifd_offset < tf.cast(tf.strings.length(tiff), tf.int64)
    ifd = _bytes(tiff, tf.cast(tf.where(in_range, ifd_offset, 0), tf.int32), length)
    count = tf.minimum(unsigned(ifd[:2]), MAX_IFD_ENTRIES)
    entries = tf.reshape(ifd[2:], [MAX_IFD_ENTRIES, 12])
    tags, types, counts = (unsigned(entries[:, :2]), unsigned(entries[:, 2:4]),
                           unsigned(entries[:, 4:8]))
    values = tf.where(types == 3, unsigned(entries[:, 8:10]), unsigned(entries[:, 8:12]))
    found = ((tags == ORIENTATION_TAG) & (tf.range(MAX_IFD_ENTRIES, dtype=tf.int64) < count))
    first = tf.argmax(tf.cast(found, tf.int32))
    value = values[first]
    readable = ((little | big) & in_range & tf.reduce_any(found)
                & ((types[first] == 3) | (types[first] == 4)) & (counts[first] >= 1)
                & (value >= 1) & (value <= 8))
    return tf.cast(tf.where(readable, value, 1), tf.int32)


def exif_orientation(encoded):
    """The EXIF orientation (int32 [], 1..8; 1 when there is none) of JPEG or PNG bytes.

    Args: encoded string []: an encoded image (other formats give 1).
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    magic = tf.strings.substr(encoded, 0, 4)
    is_jpeg = tf.equal(tf.strings.substr(magic, 0, 2), b"\xff\xd8")
    is_png = tf.equal(magic, b"\x89PNG")
    marker = tf.where(is_jpeg, b"Exif\x00\x00", b"eXIf")
    parts = tf.strings.split(encoded, sep=marker, maxsplit=1)  # [1] or [2]
    tiff = parts[-1]
    # The TIFF structure starts right after the marker; without one, split gives one part.
    has_block = (is_jpeg | is_png) & (tf.size(parts) == 2)
    return tf.where(has_block, _tiff_orientation(tf.where(has_block, tiff, b"")), 1)


def apply_orientation(image, orientation):
    """Turns a decoded image [H, W, C] upright by its EXIF `orientation` (int32 []): the
    stored image for 1, [W, H, C] for 5..8 (see the module docstring)."""
    transpose = lambda x: tf.transpose(x, [1, 0, 2])  # noqa: E731
    branches = [
        lambda: image,
        lambda: tf.reverse(image, [1]),
        lambda: tf.reverse(image, [0, 1]),
        lambda: tf.reverse(image, [0]),
        lambda: transpose(image),
        lambda: tf.reverse(transpose(image), [1]),  # rotate 90 clockwise
        lambda: tf.reverse(transpose(image), [0, 1]),
        lambda: tf.reverse(transpose(image), [0]),  # rotate 90 counter-clockwise
    ]
    index = tf.clip_by_value(tf.cast(orientation, tf.int32), 1, 8) - 1
    return tf.switch_case(index, branches)
