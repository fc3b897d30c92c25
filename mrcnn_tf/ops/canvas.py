"""Where training images go: batches of one aspect-ratio group, padded to a canvas that fits
them.

Padding every image to one square canvas (`Config.max_padded_size`, 1344 x 1344 for the COCO
presets) costs a typical COCO photo (640 x 480, resized to 800 x 1066) more than twice the
backbone and FPN work it needs. Two things fix it, as Detectron2's aspect-ratio grouping does:

1. *Grouping* (`grouped_order`): each pass (or shuffle window) of the training stream is
   reordered so that global batches hold images of one aspect-ratio group (`aspect_groups`:
   Detectron2 groups by orientation only; finer bins keep a 4:3 photo from being padded to a
   3:2 one's width).
2. *Canvas planning* (`plan_canvas`): a batch is padded to the canvas
   `Config.batch_padding` names:

   | batch_padding | canvas of a batch | shapes the step sees |
   |---|---|---|
   | "batch" | its largest image, each side rounded up to `size_divisibility` | any |
   | "buckets" | the smallest of `padding_buckets(config)` that holds its largest image | 3 |
   | "square" | `max_padded_size` square (every batch alike) | 1 |

   Under XLA a new shape is a new compilation, so the device plan picks "buckets" there: with
   a shorter side at most S and a longer side at most L after resizing, every landscape image
   fits (S, L), every portrait one (L, S), and a mixed batch (L, L): at most three
   compilations.

The canvas of a batch is planned from the images' sizes *before* they are decoded (the COCO
JSON, the TFRecord's height/width), so each input pipeline of a multi-worker run pads its share
of a global batch to the same canvas as a single pipeline would, and an element's pixels stay a
function of (seed, element index) alone.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import tensorflow as tf

BATCH_PADDINGS = ("batch", "buckets", "square")


def round_up(value, multiple: int):
    """`value` (int tensor or int) rounded up to a multiple of `multiple`."""
    return (value + multiple - 1) // multiple * multiple


def longest_min_size(config) -> int:
    """The largest shorter side training can resize to: image_min_size or the largest
    train_min_sizes value (scale jitter)."""
    return max((config.image_min_size,) + tuple(config.train_min_sizes))


def padding_buckets(config) -> Tuple[Tuple[int, int], ...]:
    """The "buckets" canvases (height, width), smallest area first: landscape (S, L), portrait
    (L, S) and the square (L, L) every image fits, with S = `longest_min_size` and L =
    image_max_size, each rounded up to size_divisibility (duplicates removed when S = L)."""
    d = config.size_divisibility
    short = round_up(min(longest_min_size(config), config.image_max_size), d)
    long = round_up(config.image_max_size, d)
    buckets = []
    for bucket in ((short, long), (long, short), (long, long)):
        if bucket not in buckets:
            buckets.append(bucket)
    return tuple(buckets)


def plan_canvas(sizes: tf.Tensor, config, mode: str) -> tf.Tensor:
    """The canvas one batch is padded to.

    Args:
      sizes: int32 [G, 2] resized (height, width) of the batch's images; a row with a negative
        value is an image of unknown size, for which the batch falls back to the square.
      config: image_max_size, size_divisibility (and the sizes `padding_buckets` reads).
      mode: one of BATCH_PADDINGS (module docstring).
    Returns:
      int32 [2] (height, width), each a multiple of size_divisibility.
    """
    if mode not in BATCH_PADDINGS:
        raise ValueError(f"batch_padding={mode!r}: expected one of {BATCH_PADDINGS}")
    square = round_up(config.image_max_size, config.size_divisibility)
    square_canvas = tf.constant([square, square], tf.int32)
    if mode == "square":
        return square_canvas
    sizes = tf.cast(sizes, tf.int32)
    largest = tf.reduce_max(sizes, axis=0)
    known = tf.reduce_all(sizes > 0)
    if mode == "batch":
        canvas = tf.minimum(round_up(largest, config.size_divisibility), square)
    else:
        buckets = tf.constant(padding_buckets(config), tf.int32)  # [U, 2], smallest first
        fits = tf.reduce_all(buckets >= largest[None], axis=1)
        # The first bucket that fits; the last (the square) always does.
        canvas = buckets[tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)]
    return tf.where(known, canvas, square_canvas)


# Aspect-ratio (width / height) edges of the groups `aspect_groups` puts images in: tall
# strips, 2:3, 3:4, square, 4:3, 3:2 to 16:9, panoramas. Orientation alone (Detectron2's two
# groups) batches a 4:3 photo with a 3:2 one or a strip and pads both to the wider.
ASPECT_EDGES = (0.55, 0.7, 0.87, 1.15, 1.42, 1.8)


def aspect_groups(heights, widths) -> np.ndarray:
    """int32 [n] group of each (height, width): its bin of width / height among
    ASPECT_EDGES (0 tallest .. len(ASPECT_EDGES) widest); -1 where the size is unknown (<= 0),
    which then forms a group of its own."""
    heights = np.asarray(heights, np.float64)
    widths = np.asarray(widths, np.float64)
    known = (heights > 0) & (widths > 0)
    ratio = np.where(known, widths / np.where(known, heights, 1.0), 1.0)
    return np.where(known, np.searchsorted(ASPECT_EDGES, ratio), -1).astype(np.int32)


def grouped_order(keys: np.ndarray, groups: np.ndarray, group_size: int, offset: int,
                  batch_keys: np.ndarray) -> np.ndarray:
    """A random order of n items in which runs of `group_size` consecutive items share a group
    (an aspect-ratio bin), aligned with the stream's global batches.

    The items are the n elements of one pass (or shuffle window) that starts at stream element
    `offset`; global batch b holds stream elements b*G .. b*G + G - 1 (G = group_size). So the
    first `head = (-offset) mod G` items close the batch the previous pass began; then come
    whole batches of one group in random order; the items left over of each group (fewer than
    G per group), in group order so that neighbours have similar shapes, fill the head and the
    tail. Only the batches holding leftovers mix groups: at most one per group present.

    Args:
      keys: float [n] random keys (the order within a group).
      groups: int [n], each item's group (`aspect_groups`).
      group_size: the global batch size G >= 1.
      offset: the stream index of the first item.
      batch_keys: float [n] random keys (the order of the whole batches; the first n // G
        used).
    Returns:
      int32 [n], a permutation of 0..n-1.
    """
    n = len(keys)
    groups = np.asarray(groups)
    head = min((-int(offset)) % group_size, n)
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    members = [m[np.argsort(keys[m], kind="stable")] for m in members]
    whole = [len(m) // group_size for m in members]
    leftover = sum(len(m) - w * group_size for m, w in zip(members, whole))
    if leftover < head:
        # Too few left over to close the previous batch: break a whole batch up for it.
        whole[int(np.argmax(whole))] -= 1
    batches = [m[:w * group_size].reshape(w, group_size) for m, w in zip(members, whole)]
    rest = np.concatenate([m[w * group_size:] for m, w in zip(members, whole)])
    batches = (np.concatenate(batches) if sum(whole)
               else np.zeros((0, group_size), np.int64))
    batches = batches[np.argsort(batch_keys[:len(batches)], kind="stable")]
    order = np.concatenate([rest[:head], batches.reshape(-1), rest[head:]])
    return order.astype(np.int32)


def grouped_order_tf(keys: tf.Tensor, sizes: tf.Tensor, group_size: int, offset: tf.Tensor,
                     batch_keys: tf.Tensor) -> tf.Tensor:
    """`grouped_order` on tensors (for tf.data), the groups from `sizes` int32 [n, 2]
    (height, width) by `aspect_groups`: int32 [n]."""
    def order(k, o, c, hw):
        return grouped_order(k, aspect_groups(hw[:, 0], hw[:, 1]), group_size, int(o), c)

    result = tf.numpy_function(order, [keys, tf.cast(offset, tf.int64), batch_keys, sizes],
                               tf.int32, stateful=False)
    return tf.ensure_shape(result, keys.shape)
