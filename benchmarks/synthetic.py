"""Synthetic inputs for the benchmarks: images, and training batches with an exact number of
ground-truth instances per image (the shapes generator skips shapes it cannot place, so it
cannot promise 100 objects in one image).
"""

import numpy as np
import tensorflow as tf

from mrcnn_tf.data import pipeline
from mrcnn_tf.data.shapes import tight_boxes


def random_images(batch, size, seed=0):
    """uint8 [batch, size, size, 3] noise images (random weights make content irrelevant)."""
    return np.random.default_rng(seed).integers(0, 256, (batch, size, size, 3), np.uint8)


def instances_example(size, num_instances, num_classes, seed=0, image_id=0):
    """One training example with exactly `num_instances` elliptical objects on a grid.

    The image is split into a g x g grid (g = ceil(sqrt(n))) and object i fills an ellipse in
    cell i, 40-90% of the cell on each side, so no object hides another.

    Returns: dict image uint8 [S, S, 3], boxes float32 [N, 4] (tight, y1 x1 y2 x2 pixels),
      class_ids int32 [N] in 1..num_classes, masks uint8 [N, S, S], is_crowd bool [N],
      image_id int64 [].
    """
    if num_instances < 1:
        raise ValueError(f"instances per image = {num_instances}: expected >= 1")
    rng = np.random.default_rng((seed, image_id))
    grid = int(np.ceil(np.sqrt(num_instances)))
    cell = size / grid
    if cell < 3:
        raise ValueError(f"{num_instances} instances in a {size}px image leave {cell:.1f}px "
                         "per object: expected >= 3 (use a larger image or fewer instances)")
    image = rng.normal(110, 30, (size, size, 3))
    rows, cols = np.mgrid[0:size, 0:size]
    masks = np.zeros((num_instances, size, size), np.uint8)
    for i in range(num_instances):
        r, c = divmod(i, grid)
        h, w = rng.uniform(0.4, 0.9, 2) * cell
        cy = r * cell + cell / 2 + rng.uniform(-1, 1) * (cell - h) / 2
        cx = c * cell + cell / 2 + rng.uniform(-1, 1) * (cell - w) / 2
        inside = ((rows + 0.5 - cy) / (h / 2)) ** 2 + ((cols + 0.5 - cx) / (w / 2)) ** 2 <= 1
        if not inside.any():  # a thin ellipse can miss every pixel centre: keep one pixel
            inside[min(int(cy), size - 1), min(int(cx), size - 1)] = True
        masks[i] = inside
        image[inside] = rng.uniform(0, 255, 3)
    return {"image": np.clip(image, 0, 255).astype(np.uint8),
            "boxes": tight_boxes(masks),
            "class_ids": rng.integers(1, num_classes + 1, num_instances).astype(np.int32),
            "masks": masks, "is_crowd": np.zeros(num_instances, bool),
            "image_id": np.int64(image_id)}


def training_batch(config, size, batch_size, num_instances, seed=0):
    """One batch from `mrcnn_tf.data.pipeline.make_training_dataset` (no augmentation, fixed
    sampling seeds) of `batch_size` synthetic [size, size] images with `num_instances`
    objects each: the dict `MaskRCNN.train_step` takes (images [B, P, P, 3], gt_* [B, M, ...],
    sample_seed [B, 2], ...)."""
    if num_instances > config.max_instances:
        raise ValueError(f"{num_instances} instances per image: expected <= config."
                         f"max_instances = {config.max_instances}")
    examples = [instances_example(size, num_instances, config.num_classes, seed, i)
                for i in range(batch_size)]
    signature = {
        "image": tf.TensorSpec([size, size, 3], tf.uint8),
        "boxes": tf.TensorSpec([None, 4], tf.float32),
        "class_ids": tf.TensorSpec([None], tf.int32),
        "masks": tf.TensorSpec([None, size, size], tf.uint8),
        "is_crowd": tf.TensorSpec([None], tf.bool),
        "image_id": tf.TensorSpec([], tf.int64),
    }
    raw = tf.data.Dataset.from_generator(lambda: iter(examples), output_signature=signature)
    data = pipeline.make_training_dataset(raw, config, batch_size, shuffle=False,
                                          augment=False, seed=seed, repeat=False)
    return next(iter(data))
