"""Which synthetic dataset fits a config: shapes (boxes and masks) or, for a keypoint model,
keypoint shapes (houses with six named keypoints).

The CLI's --synthetic_train_images / --synthetic_val_images and the demos pick the set here, so
a keypoint preset trains on examples that carry keypoints without further flags.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Tuple

import numpy as np
import tensorflow as tf

from mrcnn_tf import keypoint_spec
from mrcnn_tf.data import keypoint_shapes, shapes, small_shapes


@dataclasses.dataclass(frozen=True)
class SyntheticSet:
    """A synthetic dataset: its name, class names (classes 1..K) and keypoint count,
    `generate(index, seed, image_size)` -> one example dict (a pure function of its args) and
    `dataset(num_images, seed, image_size)` -> the same examples as a tf.data.Dataset."""

    name: str
    class_names: Tuple[str, ...]
    num_keypoints: int
    generate: Callable[[int, int, int], Dict[str, np.ndarray]]
    dataset: Callable[[int, int, int], tf.data.Dataset]

    def make_arrays(self, num_images: int, seed: int, image_size: int
                    ) -> List[Dict[str, np.ndarray]]:
        """Examples 0..num_images-1 of `seed`."""
        return [self.generate(i, seed, image_size) for i in range(num_images)]


SHAPES = SyntheticSet("synthetic shapes", tuple(shapes.CLASS_NAMES), 0,
                      shapes.generate_shapes_example, shapes.shapes_dataset)
KEYPOINT_SHAPES = SyntheticSet("synthetic keypoint shapes", tuple(keypoint_shapes.CLASS_NAMES),
                               keypoint_shapes.NUM_KEYPOINTS,
                               keypoint_shapes.generate_keypoint_example,
                               keypoint_shapes.keypoint_shapes_dataset)

SMALL_SHAPES = SyntheticSet("synthetic small shapes", tuple(small_shapes.CLASS_NAMES), 0,
                            small_shapes.generate_small_shapes_example,
                            small_shapes.small_shapes_dataset)


def synthetic_set_for(config) -> SyntheticSet:
    """SHAPES for a model without keypoints, KEYPOINT_SHAPES for one with the house keypoints.

    Raises:
      ValueError: for a keypoint model with other keypoints (no synthetic set has them).
    """
    if config.num_keypoints:
        if tuple(config.keypoint_names) != keypoint_spec.HOUSE_KEYPOINT_NAMES:
            raise ValueError(
                f"synthetic data: config keypoint_names {list(config.keypoint_names)}: the "
                f"synthetic keypoint set has {list(keypoint_spec.HOUSE_KEYPOINT_NAMES)} "
                "(preset shapes_keypoints_tiny); use a COCO-format dataset for other keypoints")
        return KEYPOINT_SHAPES
    return SHAPES
