"""tf.data input pipeline: resize, augment, pad, batch.

Training examples (the structure `mrcnn_tf.data.schema` describes, validated by
`mrcnn_tf.data.validation`) become tensors padded to a canvas: the P x P square, the same for
every batch (`make_training_dataset`), or a canvas planned for each batch (`canvas` of
`preprocess_for_training`; `mrcnn_tf.training.input` plans it by `Config.batch_padding`):

    images        float32 [P, P, 3]   0..255 RGB, resized image at the top-left, zeros elsewhere
    image_shape   int32   [2]         (height, width) of the resized image inside the canvas
    gt_boxes      float32 [M, 4]      (y1, x1, y2, x2) in resized-image pixels, zero padding rows
    gt_classes    int32   [M]         1..K, 0 for padding rows
    gt_masks      uint8   [M, P, P]   0/1 full-canvas masks, zero padding rows, or, when
                                      config.mini_mask_size = S > 0, [M, S, S] mini-masks,
                                      each resampled inside its own box
    gt_is_crowd   bool    [M]
    gt_keypoints  float32 [M, K, 3]   (y, x, v) in resized-image pixels, v 0 where unlabelled
                                      (only when config.num_keypoints = K > 0)
    image_id      int64   []
    scale         float32 [2]         (resized / original) along y and x
    original_shape int32  [2]         (height, width) before resizing

with P = `config.max_padded_size` (or the canvas's sides) and M = `config.max_instances`.
Images are *not* normalized here: the model does it, so that exported models take raw pixels.

Everything on the training and inference paths is TF ops (no numpy, no py_function), so it runs
in parallel in `Dataset.map` and inside exported graphs.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import tensorflow as tf

from mrcnn_tf.config import Config
from mrcnn_tf.data import schema
from mrcnn_tf.ops import masks as mask_ops
from mrcnn_tf.ops import resize as resize_ops


# -- resizing --------------------------------------------------------------------------------

def _resize_masks_nearest(masks: tf.Tensor, new_h, new_w) -> tf.Tensor:
    """Nearest-neighbour resize of instance masks.

    Output pixel i takes the input pixel that contains its centre: floor((i + 0.5) * h / new_h).
    Done with two gathers rather than `tf.image.resize`, which needs the N masks as channels
    and fails for N = 0, and would need two transposes of the largest tensor in the pipeline.

    Args:
      masks: uint8 [N, H, W] (N may be 0).
      new_h, new_w: int32 scalars.

    Returns:
      uint8 [N, new_h, new_w].
    """
    shape = tf.shape(masks)

    def source_index(in_size, out_size):
        ratio = tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)
        idx = tf.floor((tf.range(out_size, dtype=tf.float32) + 0.5) * ratio)
        return tf.minimum(tf.cast(idx, tf.int32), in_size - 1)

    masks = tf.gather(masks, source_index(shape[1], new_h), axis=1)
    return tf.gather(masks, source_index(shape[2], new_w), axis=2)


def _augment_draws(seed, image_id: tf.Tensor) -> tf.Tensor:
    """Two uniform [0, 1) numbers for one example's augmentation: the horizontal-flip coin
    and the scale-jitter choice.

    seed None: stateful and not reproducible. An int or int scalar tensor: stateless draws
    keyed by (seed, image_id), the same for an image in every epoch. An int [2] tensor: used
    as the stateless seed directly (`make_training_dataset` passes (seed, stream position)).
    """
    if seed is None:
        return tf.random.uniform([2])
    return tf.random.stateless_uniform([2], seed=_stateless_seed(seed, image_id))


def _stateless_seed(seed, image_id: tf.Tensor) -> tf.Tensor:
    """An int scalar seed keyed by image_id, or an int [2] seed as it is -> int64 [2]."""
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    if seed.shape.rank == 0:
        seed = tf.stack([seed, tf.cast(image_id, tf.int64)])
    return seed


# -- keypoints -------------------------------------------------------------------------------

def _example_keypoints(example: Mapping[str, Any], num, num_keypoints: int, max_instances: int
                       ) -> tf.Tensor:
    """The example's first `max_instances` keypoint rows, float32 [n, K, 3] (y, x, v); all
    unlabelled (zeros) when the example has none (a dataset mixing images with and without
    keypoint annotations)."""
    if example.get(schema.KEYPOINTS) is None:
        return tf.zeros(tf.stack([num, num_keypoints, 3]), tf.float32)
    keypoints = tf.reshape(tf.cast(example[schema.KEYPOINTS], tf.float32),
                           [-1, num_keypoints, 3])
    return keypoints[:max_instances]


def flip_keypoints(keypoints: tf.Tensor, width, permutation) -> tf.Tensor:
    """Mirrors keypoints in an image of width `width` and swaps left and right ones.

    x' = width - x in continuous pixels (pixel i's centre i + 0.5 goes to pixel
    width - 1 - i's centre), then keypoint k of the flipped set is keypoint permutation[k] of
    the original: the left eye of a mirrored person is where its right eye was.
    Unlabelled keypoints (v = 0) stay all zero.

    Args:
      keypoints: float32 [N, K, 3] (y, x, v).
      width: float scalar, the image width.
      permutation: K ints (`config.keypoint_flip_permutation`).
    Returns:
      float32 [N, K, 3].
    """
    y, x, v = tf.unstack(keypoints, 3, axis=-1)
    labelled = tf.cast(v > 0, tf.float32)
    mirrored = tf.stack([y, (width - x) * labelled, v], axis=-1)
    return tf.gather(mirrored, list(permutation), axis=1)


# -- training --------------------------------------------------------------------------------

def training_size(height, width, config: Config, augment: bool, seed=None, image_id=0):
    """The size an example of `height` x `width` is resized to for training, before it is
    decoded: the shorter side is image_min_size, or with `augment` and config.train_min_sizes
    the value drawn for this element (scale jitter).

    Args: height, width: int scalars; seed, image_id: as `preprocess_for_training`'s.
    Returns:
      (new_h int32 [], new_w int32 [], draws float32 [2] or None): draws are the element's
      flip coin and jitter choice (None without `augment`).
    """
    draws = _augment_draws(seed, tf.cast(image_id, tf.int64)) if augment else None
    min_size = None
    if augment and config.train_min_sizes:
        sizes = tf.constant(config.train_min_sizes, tf.int32)
        pick = tf.cast(draws[1] * len(config.train_min_sizes), tf.int32)
        min_size = sizes[tf.minimum(pick, len(config.train_min_sizes) - 1)]
    new_h, new_w, _ = resize_ops.resize_params(height, width, config, min_size)
    return new_h, new_w, draws


def _fit_inside(new_h, new_w, canvas_h, canvas_w):
    """(new_h, new_w) scaled down, aspect kept, to fit the canvas when it does not already.

    A canvas is planned from the sizes a dataset declares; an image whose file disagrees (or a
    bad image replaced by the next good one) may not fit, and is then made smaller rather
    than failing the batch."""
    h = tf.cast(new_h, tf.float64)
    w = tf.cast(new_w, tf.float64)
    factor = tf.minimum(tf.cast(canvas_h, tf.float64) / h, tf.cast(canvas_w, tf.float64) / w)
    factor = tf.minimum(factor, tf.constant(1.0, tf.float64))
    fitted_h = tf.maximum(tf.cast(tf.floor(h * factor), tf.int32), 1)
    fitted_w = tf.maximum(tf.cast(tf.floor(w * factor), tf.int32), 1)
    return (tf.minimum(fitted_h, tf.cast(canvas_h, tf.int32)),
            tf.minimum(fitted_w, tf.cast(canvas_w, tf.int32)))


def preprocess_for_training(example: Mapping[str, Any], config: Config, augment: bool = False,
                            seed=None, canvas=None) -> Dict[str, tf.Tensor]:
    """Resizes, optionally flips, and pads one example (pure TF).

    Args:
      example: dict of tensors: image uint8 [H, W, 3], boxes float32 [N, 4] (y1, x1, y2, x2)
        pixels, class_ids int32 [N], masks uint8 [N, H, W], is_crowd bool [N] (optional),
        image_id int64 [], and optionally keypoints float32 [N, K, 3] (y, x, v) in continuous
        pixels (read when config.num_keypoints = K > 0). Validate first with
        `mrcnn_tf.data.validation.validate_example`.
      config: image_min_size / image_max_size (resize), max_padded_size (P), max_instances (M).
      augment: random horizontal flip with probability 0.5, and the shorter side drawn from
        config.train_min_sizes when that is set (scale jitter).
      seed: None (stateful random flip), an int (stateless, keyed by (seed, image_id)) or an
        int [2] tensor (the stateless seed itself).
      canvas: None pads to the P x P square (P = config.max_padded_size, static shapes);
        an int32 [2] (Hc, Wc) pads to that canvas (`ops.canvas.plan_canvas`; the sides are
        then unknown to the graph), first scaling the image down if it would not fit.

    Returns:
      dict: images float32 [P, P, 3] (or [Hc, Wc, 3]), image_shape int32 [2], gt_boxes float32 [M, 4],
      gt_classes int32 [M], gt_masks uint8 [M, P, P] (or [M, S, S] mini-masks, S =
      config.mini_mask_size > 0), gt_is_crowd bool [M], gt_keypoints float32 [M, K, 3]
      (when config.num_keypoints = K > 0; see `flip_keypoints`), image_id int64 [],
      scale float32 [2], original_shape int32 [2], and with a seed, sample_seed int64 [2] (the
      model's per-image sampling seed). Instances beyond M are dropped (the first M
      are kept); boxes are scaled by the exact per-axis ratios (new_h / h, new_w / w).
    """
    m = config.max_instances
    mini = config.mini_mask_size

    image = tf.convert_to_tensor(example[schema.IMAGE])
    image_id = tf.cast(example[schema.IMAGE_ID], tf.int64)
    image_size = tf.shape(image)[:2]
    height, width = image_size[0], image_size[1]
    new_h, new_w, draws = training_size(height, width, config, augment, seed, image_id)
    if canvas is None:
        canvas_h = canvas_w = config.max_padded_size
    else:
        canvas = tf.cast(canvas, tf.int32)
        canvas_h, canvas_w = canvas[0], canvas[1]
        new_h, new_w = _fit_inside(new_h, new_w, canvas_h, canvas_w)
    scale_y = tf.cast(new_h, tf.float32) / tf.cast(height, tf.float32)
    scale_x = tf.cast(new_w, tf.float32) / tf.cast(width, tf.float32)

    # Truncate first so that dropped instances cost no resizing.
    boxes = tf.reshape(tf.cast(example[schema.BOXES], tf.float32), [-1, 4])[:m]
    class_ids = tf.cast(example[schema.CLASS_IDS], tf.int32)[:m]
    masks = tf.cast(example[schema.MASKS], tf.uint8)[:m]
    if example.get(schema.IS_CROWD) is not None:
        is_crowd = tf.cast(example[schema.IS_CROWD], tf.bool)[:m]
    else:
        is_crowd = tf.zeros_like(class_ids, dtype=tf.bool)
    num = tf.shape(boxes)[0]
    keypoints = None
    if config.num_keypoints:
        keypoints = _example_keypoints(example, num, config.num_keypoints, m)

    image = resize_ops.resize_image(image, new_h, new_w)
    if mini:
        # From the original-resolution masks: no full-size resize, and no resampling loss.
        masks = mask_ops.make_mini_masks(masks, boxes, mini)
    else:
        masks = _resize_masks_nearest(masks, new_h, new_w)
    boxes = boxes * tf.stack([scale_y, scale_x, scale_y, scale_x])
    if keypoints is not None:
        keypoints = keypoints * tf.stack([scale_y, scale_x, 1.0])

    if augment:
        def flip():
            # Mirror inside the valid width (before padding): x' = W - x, and the exclusive
            # right edge x2 becomes the inclusive left edge, hence x1' = W - x2.
            new_w_f = tf.cast(new_w, tf.float32)
            y1, x1, y2, x2 = tf.unstack(boxes, axis=1)
            flipped_boxes = tf.stack([y1, new_w_f - x2, y2, new_w_f - x1], axis=1)
            flipped = (tf.reverse(image, [1]), flipped_boxes, tf.reverse(masks, [2]))
            if keypoints is not None:
                flipped += (flip_keypoints(keypoints, new_w_f, config.keypoint_flip_permutation),)
            return flipped

        unchanged = (image, boxes, masks) + ((keypoints,) if keypoints is not None else ())
        flipped = tf.cond(draws[0] < 0.5, flip, lambda: unchanged)
        image, boxes, masks = flipped[:3]
        if keypoints is not None:
            keypoints = flipped[3]

    # Pad the image at the bottom/right so (0, 0) stays the origin of box coordinates.
    image = tf.pad(image, [[0, canvas_h - new_h], [0, canvas_w - new_w], [0, 0]])
    if mini:
        masks = tf.pad(masks, [[0, m - num], [0, 0], [0, 0]])
    else:
        masks = tf.pad(masks, [[0, m - num], [0, canvas_h - new_h], [0, canvas_w - new_w]])
    boxes = tf.pad(boxes, [[0, m - num], [0, 0]])
    class_ids = tf.pad(class_ids, [[0, m - num]])
    is_crowd = tf.pad(is_crowd, [[0, m - num]], constant_values=False)

    # Static shapes for the traced training step (tf.pad with tensor paddings loses them);
    # a planned canvas varies from batch to batch, so its sides stay unknown.
    p = config.max_padded_size if canvas is None else None
    image = tf.ensure_shape(image, [p, p, 3])
    masks = tf.ensure_shape(masks, [m, mini, mini] if mini else [m, p, p])
    boxes = tf.ensure_shape(boxes, [m, 4])
    class_ids = tf.ensure_shape(class_ids, [m])
    is_crowd = tf.ensure_shape(is_crowd, [m])
    output = {} if keypoints is None else {schema.GT_KEYPOINTS: tf.ensure_shape(
        tf.pad(keypoints, [[0, m - num], [0, 0], [0, 0]]), [m, config.num_keypoints, 3])}
    output.update({
        schema.IMAGES: image,
        schema.IMAGE_SHAPE: tf.stack([new_h, new_w]),
        schema.GT_BOXES: boxes,
        schema.GT_CLASSES: class_ids,
        schema.GT_MASKS: masks,
        schema.GT_IS_CROWD: is_crowd,
        schema.IMAGE_ID: tf.reshape(image_id, []),
        schema.SCALE: tf.stack([scale_y, scale_x]),
        schema.ORIGINAL_SHAPE: tf.cast(image_size, tf.int32),
    })
    if seed is not None:
        # The model draws this image's RPN and RoI samples from it (MaskRCNN.compute_losses),
        # so training is reproducible whatever the batch layout, replica count or restart.
        output[schema.SAMPLE_SEED] = _stateless_seed(seed, image_id)
    return output


def make_training_dataset(dataset: tf.data.Dataset, config: Config, batch_size: int,
                          shuffle: bool = True, augment: bool = True, seed: Optional[int] = None,
                          drop_remainder: bool = True, repeat: bool = True,
                          shuffle_buffer_size: int = 256) -> tf.data.Dataset:
    """Batched training input: shuffle, repeat, preprocess in parallel, batch, prefetch.

    Args:
      dataset: examples as described in `preprocess_for_training` (e.g. `shapes_dataset`).
      config: see `preprocess_for_training`.
      batch_size: images per batch (per replica count is the caller's business).
      shuffle: shuffle raw examples with a buffer of `shuffle_buffer_size`. Raw examples are
        shuffled *before* preprocessing because padded ones are much larger (a COCO example
        padded to 1344 x 1344 with 100 masks is ~200 MB).
      augment: random horizontal flips.
      seed: None, or an int making shuffling and flips reproducible (the map then keeps order,
        and each element's flip is keyed by (seed, position in the stream)).
      drop_remainder: drop a final partial batch (keeps the batch dimension static).
      repeat: repeat forever (for `model.fit(steps_per_epoch=...)`).
      shuffle_buffer_size: examples held for shuffling.

    Returns:
      Dataset of dicts with the fields of `preprocess_for_training`, each with a leading batch
      dimension B = batch_size (None if drop_remainder is False): images float32 [B, P, P, 3],
      image_shape int32 [B, 2], gt_boxes float32 [B, M, 4], gt_classes int32 [B, M],
      gt_masks uint8 [B, M, P, P], gt_is_crowd bool [B, M], image_id int64 [B],
      scale float32 [B, 2], original_shape int32 [B, 2], and with a seed sample_seed int64
      [B, 2].
    """
    if batch_size < 1:
        raise ValueError(f"make_training_dataset: batch_size={batch_size}: expected >= 1")
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer_size, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    if seed is not None:
        # Stateless per-element seeds: reproducible regardless of thread scheduling, and the
        # same image gets a fresh coin each time it comes round again.
        base = tf.constant(seed, tf.int64)
        dataset = dataset.enumerate().map(
            lambda i, ex: preprocess_for_training(ex, config, augment, tf.stack([base, i])),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        dataset = dataset.map(lambda ex: preprocess_for_training(ex, config, augment),
                              num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)
