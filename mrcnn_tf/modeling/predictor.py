"""`MaskRCNN.predict_images`: a list of images of any sizes in, finished detections out,
one image at a time or in batches.

Batches hold images that share a padded canvas: each image is resized by its own size
(`ops.resize.preprocess_for_inference`, as `MaskRCNN.call` resizes it) and padded to a
multiple of `size_divisibility`, and only images whose padded sizes are equal run together.
A batched image then meets exactly what it meets alone (the same canvas, its own valid
region, zeros elsewhere, frozen norms that never mix images), so batching changes no
detection; only kernels' float rounding may differ with the batch size. A COCO-like folder
(mostly 640x480 and 480x640) falls into a few canvases, so batches fill.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from mrcnn_tf import postprocess
from mrcnn_tf.data.validation import to_rgb
from mrcnn_tf.ops import resize as resize_ops

OUTPUT_ROWS = ("boxes", "scores", "class_ids", "masks", "keypoints")


def padded_canvas(height: int, width: int, config) -> Tuple[int, int]:
    """(Hp, Wp): the padded size an image of height x width is resized and padded to."""
    new_h, new_w = resize_ops.resize_shape_static(height, width, config)
    d = config.size_divisibility
    return -(-new_h // d) * d, -(-new_w // d) * d


def canvas_batches(shapes: Sequence[Tuple[int, int]], config, batch_size: int
                   ) -> List[List[int]]:
    """Indices of `shapes` (H, W) grouped by padded canvas, at most `batch_size` a batch.

    Groups come in the order of their first image; within a group, input order.
    """
    groups: Dict[Tuple[int, int], List[int]] = {}
    for index, (height, width) in enumerate(shapes):
        groups.setdefault(padded_canvas(height, width, config), []).append(index)
    return [indices[start:start + batch_size] for indices in groups.values()
            for start in range(0, len(indices), batch_size)]


def as_rgb_uint8(image, source: str) -> np.ndarray:
    """Checks one image: uint8 HxWx3 (HxW, HxWx1, HxWx4 converted)."""
    image = to_rgb(image, source)
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{source}: image is empty (shape {image.shape})")
    if image.dtype != np.uint8:
        raise ValueError(f"{source}: expected dtype uint8 (0..255), got {image.dtype}")
    return image


def predict_images(model, images, score_threshold: float = 0.0, batch_size: int = 1
                   ) -> List[dict]:
    """See `MaskRCNN.predict_images`."""
    if len(images) == 0:
        raise ValueError("predict_images: expected a non-empty list of HxWx3 uint8 images")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"predict_images: batch_size={batch_size!r}, expected an integer >= 1")
    images = [as_rgb_uint8(image, f"images[{i}]") for i, image in enumerate(images)]
    results: List[dict] = [{} for _ in images]
    if batch_size == 1:
        batches = [[i] for i in range(len(images))]
    else:
        batches = canvas_batches([image.shape[:2] for image in images], model.config,
                                 int(batch_size))
    for batch in batches:
        if batch_size == 1:
            outputs = model.predict_one(tf.convert_to_tensor(images[batch[0]][None]))
        else:
            outputs = model.predict_batch(*_batch_inputs([images[i] for i in batch],
                                                         model.config))
        for row, index in enumerate(batch):
            n = int(outputs["num_detections"][row])
            rows = {key: outputs[key][row, :n].numpy() for key in OUTPUT_ROWS if key in outputs}
            height, width = images[index].shape[:2]
            results[index] = postprocess.finish_detections(
                rows, height, width, score_threshold, model.config.paste_rule, model.label_map)
    return results


def _batch_inputs(images: Sequence[np.ndarray], config):
    """Images sharing one padded canvas -> (padded float32 [B, Hp, Wp, 3], image_shape int32
    [B, 2], scale float32 [B, 2], original size float32 [B, 2]), each image preprocessed on
    its own exactly as `MaskRCNN.call` preprocesses it."""
    parts = [resize_ops.preprocess_for_inference(tf.constant(image[None]), config)
             for image in images]
    padded, image_shape, scale = (tf.concat([p[k] for p in parts], axis=0) for k in range(3))
    original = tf.constant([image.shape[:2] for image in images], tf.float32)
    return padded, image_shape, scale, original
