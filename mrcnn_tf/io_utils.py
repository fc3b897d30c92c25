"""Atomic file writes: a reader never sees a half-written file.

Evaluation results, label maps and debug images are written while long jobs run; a job killed
mid-write (pre-emption, OOM, Ctrl-C) must leave either the old file or the new one, never a
truncated one that a later step would parse as garbage. Every writer here writes to a temporary
file in the destination's folder and renames it over the destination with `os.replace`, which
is atomic on POSIX and Windows when both paths are on the same file system (hence the same
folder, not /tmp).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from typing import IO, Any, Iterator, Union

import numpy as np
from absl import logging

PathLike = Union[str, "os.PathLike[str]"]

# mkstemp creates files with mode 0600; the final file should get the permissions an ordinary
# open() would give it (0666 minus the umask). Reading the umask means setting it, which is not
# thread-safe, so it is read once at import time, before any worker threads exist.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Opens a temporary file next to `path`; on success renames it to `path`.

    Usage:
        with atomic_write("out/metrics.json", "w") as f:
            json.dump(metrics, f)

    Args:
        path: destination file. Its folder must exist.
        mode: "wb" (bytes) or "w"/"wt" (text, UTF-8). Append and exclusive modes are refused:
            a rename replaces the whole file, so neither could be honoured.

    Yields:
        The open temporary file object.

    On an exception inside the block the temporary file is deleted, the destination is left as it
    was, and the exception propagates.
    """
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_write mode must be 'w', 'wt' or 'wb', got {mode!r}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write {path!r}: folder {directory!r} does not exist")
    # A dot-prefixed name keeps globbing tools (e.g. "*.json") from picking up the partial file.
    fd, tmp_path = tempfile.mkstemp(
        prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory
    )
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            # Without fsync a power loss after the rename could leave an empty file under the
            # final name on some file systems (ext4 delayed allocation).
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    except BaseException:
        # BaseException, not Exception: KeyboardInterrupt must not leave temp files either.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_path)
        raise


def _json_default(obj: Any) -> Any:
    """Converts NumPy scalars and arrays, which `json` rejects, into plain Python values."""
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, bytes):
        return obj.decode("utf-8")
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


def write_json_atomic(path: PathLike, obj: Any, indent: int | None = None) -> None:
    """Writes `obj` as JSON to `path` atomically.

    NumPy scalars/arrays and bytes (e.g. RLE counts) are converted to JSON types.
    """
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=indent, default=_json_default)


def write_png_atomic(path: PathLike, rgb_image_uint8: np.ndarray) -> None:
    """Encodes an image as PNG and writes it to `path` atomically.

    Args:
        path: destination file, normally ending in ".png".
        rgb_image_uint8: uint8 [H, W, 3] in RGB order, or uint8 [H, W] grayscale.
    """
    import cv2  # noqa: PLC0415 (keeps `atomic_write` and the JSON helpers light to import)
    image = np.asarray(rgb_image_uint8)
    if image.dtype != np.uint8:
        raise ValueError(f"write_png_atomic({path!r}): expected a uint8 image, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 3:
        # OpenCV encodes in BGR order; the rest of the library works in RGB.
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim != 2:
        raise ValueError(
            f"write_png_atomic({path!r}): expected shape [H, W, 3] or [H, W], got {image.shape}"
        )
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"OpenCV could not encode a PNG for {path!r}")
    with atomic_write(path, "wb") as f:
        f.write(encoded.tobytes())


def check_writable_folder(path: PathLike, flag: str) -> str:
    """Creates folder `path` if needed and checks a file can be written in it.

    Raises:
      ValueError naming `flag` (e.g. "--run_dir") and the reason, in one line.
    """
    path = os.fspath(path)
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".write-test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as error:
        raise ValueError(f"{flag}={path}: not a writable folder ({error.strerror})") from None
    return path


# What a full disk (or a per-file size or quota limit) looks like: the errno of an OSError, or
# the strerror text TensorFlow's file system layer puts in its OpError messages.
_STORAGE_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_STORAGE_TEXTS = tuple(os.strerror(code) for code in _STORAGE_ERRNOS)


def storage_full_message(error: BaseException) -> str | None:
    """One line for an error that means the disk is full (no space left, file too large,
    quota exceeded), naming the file being written; None for any other error.

    Covers Python's OSError and TensorFlow's OpErrors (SavedModel variables, TFRecord shards),
    whose messages carry the same C library text after the path.
    """
    if isinstance(error, OSError) and error.errno in _STORAGE_ERRNOS:
        where = error.filename or "a file"
        detail = error.strerror
    else:
        text = getattr(error, "message", None) or str(error)
        line = next((l for l in text.splitlines() if any(t in l for t in _STORAGE_TEXTS)),
                    None)
        if line is None:
            return None
        if line.startswith("{{") and "}}" in line:  # TF's "{{function_node ...}} " prefix
            line = line.split("}}", 1)[1].strip()
        where, _, detail = line.rpartition(";")
        where = where.strip() or "a file"
        detail = detail.strip().split(" [Op:")[0]
    return (f"could not write {where}: {detail}; free some space (or raise the limit) and run "
            "the same command again: nothing half-written is left behind")


def read_json_or_warn(path: PathLike, parse, consequence: str):
    """parse(the JSON of `path`); None when there is no such file, or when it cannot be read
    or parsed (truncated, garbage, wrong fields), with a warning naming it and `consequence`
    (what happens instead)."""
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return parse(json.load(f))
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        logging.warning("%s is unreadable (%s: %s); %s", os.fspath(path), type(error).__name__,
                        str(error).splitlines()[0][:200] if str(error) else "", consequence)
        return None
