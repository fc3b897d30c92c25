"""`CocoDataset`'s examples as a `tf.data.Dataset`: loaded in Python, in parallel, in order.

Images are read and masks decoded by a Python loader (`tf.numpy_function`) inside a parallel,
order-preserving map; an image the loader skips (it gives None) is filtered out, so the
dataset holds the good examples of the ids in their order.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from mrcnn_tf.data import schema


def examples_dataset(image_ids: Sequence[int],
                     load_or_none: Callable[[int], Optional[Dict[str, np.ndarray]]],
                     num_keypoints: int, shuffle: bool = False,
                     seed: Optional[int] = None) -> tf.data.Dataset:
    """A finite dataset of the examples of `image_ids` (see `schema.example_signature`).

    Args:
      image_ids: the ids to load, in order.
      load_or_none: image id -> example dict of numpy arrays, or None for an image to skip.
      num_keypoints: K; examples carry keypoints float32 [N, K, 3] when K > 0.
      shuffle: shuffle the image order, anew each epoch, before loading (cheap: only ids
        are shuffled, never decoded images).
      seed: shuffle seed.
    """
    signature = schema.example_signature(num_keypoints)
    keys = list(signature)
    # Returned for a skipped image, then filtered out: empty arrays of the signature's dtypes.
    placeholder = {key: np.zeros([0 if d is None else d for d in spec.shape.as_list()],
                                 spec.dtype.as_numpy_dtype) for key, spec in signature.items()}
    placeholder[schema.IMAGE_ID] = np.int64(-1)

    def load(image_id):
        example = load_or_none(int(image_id))
        values = placeholder if example is None else example
        return [values[k] for k in keys] + [np.bool_(example is not None)]

    def load_tensors(image_id):
        values = tf.numpy_function(load, [image_id],
                                   [signature[k].dtype for k in keys] + [tf.bool],
                                   stateful=False)
        # numpy_function forgets shapes; restore (and check) them from the signature.
        example = {k: tf.ensure_shape(v, signature[k].shape) for k, v in zip(keys, values)}
        return example, tf.ensure_shape(values[-1], [])

    ds = tf.data.Dataset.from_tensor_slices(np.asarray(image_ids, np.int64))
    if shuffle and len(image_ids) > 1:
        ds = ds.shuffle(len(image_ids), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(load_tensors, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    # Named functions, not two lambdas on one line: autograph reads a function's source
    # and cannot tell two same-signature lambdas on one line apart (it warns on each run).
    return ds.filter(_loaded_ok).map(_drop_ok_flag)


def _loaded_ok(example, ok):
    """Filter predicate for `examples_dataset`: the image loaded without error."""
    del example
    return ok


def _drop_ok_flag(example, ok):
    del ok
    return example
