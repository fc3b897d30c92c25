"""The files of a TFRecord dataset at a prefix, shared by the writer and the reader.

`PREFIX-00000-of-00004.tfrecord` ... are the shards, `PREFIX-label_map.json` the `LabelMap`
(so the class ids in the records can be mapped back to dataset category ids). When the shards
have keypoints, the label map file also holds "keypoint_names" and "keypoint_skeleton" (flat
0-based pairs); `LabelMap.from_dict` ignores them, and files without them read as having no
keypoints.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np


def shard_path(out_prefix: str, index: int, num_shards: int) -> str:
    """Final name of shard `index` (0-based) of `num_shards`."""
    return f"{out_prefix}-{index:05d}-of-{num_shards:05d}.tfrecord"


def label_map_path(out_prefix: str) -> str:
    """Where `write_tfrecords` puts the label map of the shards at `out_prefix`."""
    return f"{out_prefix}-label_map.json"


def check_keypoint_spec(names: Sequence[str], skeleton: Sequence[int],
                        source: str) -> Tuple[Tuple[str, ...], Tuple[int, ...]]:
    """(names, skeleton) as tuples, checked: distinct str names, flat 0-based index pairs.

    Raises:
      ValueError: naming `source`, for anything else.
    """
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
