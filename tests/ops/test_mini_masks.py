"""Mini-masks: masks stored inside their boxes give the same mask targets as full masks."""

import numpy as np
import tensorflow as tf

from mrcnn_tf.data import shapes
from mrcnn_tf.ops import masks as mask_ops


def test_a_mask_filling_its_box_gives_an_all_ones_mini_mask():
    masks = np.zeros((1, 40, 50), np.uint8)
    masks[0, 5:25, 10:40] = 1
    mini = mask_ops.make_mini_masks(masks, tf.constant([[5., 10., 25., 40.]]), 16).numpy()
    assert mini.shape == (1, 16, 16) and mini.dtype == np.uint8
    assert mini.min() == 1


def test_mini_mask_of_a_left_half_keeps_the_left_half():
    masks = np.zeros((1, 32, 32), np.uint8)
    masks[0, 0:32, 0:16] = 1
    mini = mask_ops.make_mini_masks(masks, tf.constant([[0., 0., 32., 32.]]), 8).numpy()[0]
    np.testing.assert_array_equal(mini[:, :4], 1)
    np.testing.assert_array_equal(mini[:, 4:], 0)


def test_targets_from_mini_masks_agree_with_targets_from_full_masks():
    example = shapes.generate_shapes_example(3, seed=5, image_size=128, min_shapes=3,
                                             max_shapes=4)
    masks = tf.constant(example["masks"][None])  # [1, N, H, W]
    boxes = tf.constant(example["boxes"][None])  # [1, N, 4]
    n = masks.shape[1]
    mini = mask_ops.make_mini_masks(masks[0], boxes[0], 56)[None]
    # RoIs: each gt box, jittered by a few pixels, matched to its own gt.
    rng = np.random.default_rng(0)
    rois = boxes.numpy() + rng.uniform(-4, 4, size=boxes.shape).astype(np.float32)
    matched = tf.range(n)[None]
    full_targets = mask_ops.crop_mask_targets(masks, rois, matched, 28).numpy()
    mini_targets = mask_ops.crop_mini_mask_targets(mini, boxes, rois, matched, 28).numpy()
    agreement = (full_targets == mini_targets).mean(axis=(2, 3))
    assert agreement.min() > 0.95, agreement
    # And the targets are not trivially empty.
    assert full_targets.mean() > 0.2
