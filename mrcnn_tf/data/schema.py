"""What an example is: the keys, dtypes and shapes of the data layer, written once.

Names and specs only, no behaviour. The readers (`coco`, `tfrecord_reader`, `shapes`,
`keypoint_shapes`, `synthetic`), the validator (`validation`), the TFRecord codec and the
training pipeline (`pipeline`) take their keys from here instead of spelling them out.

One example, as every reader yields it (numpy arrays, or tensors inside tf.data); N instances,
K keypoint types:

    image      uint8   [H, W, 3]  RGB, the right way up
    boxes      float32 [N, 4]     (y1, x1, y2, x2) pixels, y2/x2 exclusive
    class_ids  int32   [N]        1..num_classes (0 is the background, never an instance)
    masks      uint8   [N, H, W]  0/1, one full-image mask per box
    is_crowd   bool    [N]        crowd regions (COCO's iscrowd); optional in what the
                                  validator is given (all False then), always in its output
    image_id   int64   []         the dataset's own id of the image (any integer, 0 included)
    keypoints  float32 [N, K, 3]  optional: (y, x, v) per instance and keypoint type in
                                  continuous pixels (pixel i covers [i, i + 1)); v 0 = not
                                  labelled (then y = x = 0), 1 = occluded, 2 = visible
                                  (`mrcnn_tf.keypoint_spec`)

One training input, as `pipeline.preprocess_for_training` makes it (padded to static shapes;
P = config.max_padded_size, M = config.max_instances, S = config.mini_mask_size):

    images          float32 [P, P, 3]  0..255 RGB, the resized image at the top-left
    image_shape     int32   [2]        (height, width) of the resized image inside the canvas
    gt_boxes        float32 [M, 4]     (y1, x1, y2, x2) resized-image pixels, zero padding rows
    gt_classes      int32   [M]        1..num_classes, 0 for padding rows
    gt_masks        uint8   [M, P, P]  0/1 full-canvas masks, or [M, S, S] mini-masks when S > 0
    gt_is_crowd     bool    [M]
    gt_keypoints    float32 [M, K, 3]  (y, x, v) resized-image pixels (config.num_keypoints K > 0)
    image_id        int64   []
    scale           float32 [2]        (resized / original) along y and x
    original_shape  int32   [2]        (height, width) before resizing
    sample_seed     int64   [2]        with a seed: the model's per-image sampling seed

One TFRecord (`tf.train.Example`) per example (`tfrecord_codec`):

    image/encoded         bytes       the original JPEG/PNG file, or a PNG of the RGB image
    image/format          bytes       b"png" or b"jpeg" (informational; decoding sniffs)
    image/orientation     int64       the original file's EXIF orientation 1..8, applied after
                                      decoding (1, the default, in PNG re-encodes and in
                                      records of writers before it existed)
    image/height          int64       H, upright (after the orientation)
    image/width           int64       W, upright
    image/id              int64       image_id
    object/bbox           float [4N]  boxes, flattened
    object/class_id       int64 [N]   class_ids
    object/is_crowd       int64 [N]   is_crowd as 0/1
    object/mask_rle       bytes [N]   COCO compressed RLE "counts" of each [H, W] mask
    object/keypoints      float [3NK] keypoints, flattened; only in records of examples with
                                      keypoints
    object/num_keypoints  int64       K; present exactly when the record has keypoints (also
                                      with N = 0)
    format/version        int64       FORMAT_VERSION
"""

from __future__ import annotations

from typing import Dict, Optional

import tensorflow as tf

# -- one example -----------------------------------------------------------------------------

IMAGE = "image"
BOXES = "boxes"
CLASS_IDS = "class_ids"
MASKS = "masks"
IS_CROWD = "is_crowd"
IMAGE_ID = "image_id"
KEYPOINTS = "keypoints"

# The keys every reader yields, in the order of `example_signature` (keypoints, when there are
# any, come last).
EXAMPLE_KEYS = (IMAGE, BOXES, CLASS_IDS, MASKS, IS_CROWD, IMAGE_ID)
# The keys `validation.validate_example` requires; it fills in is_crowd, and keypoints are
# optional.
REQUIRED_KEYS = (IMAGE, BOXES, CLASS_IDS, MASKS, IMAGE_ID)


def example_signature(num_keypoints: int = 0,
                      image_size: Optional[int] = None) -> Dict[str, tf.TensorSpec]:
    """`tf.TensorSpec` of one example (table in the module doc); N is dynamic.

    Args:
      num_keypoints: K; when > 0 the signature also has keypoints float32 [N, K, 3].
      image_size: S for square images of one known size (the synthetic sets): H = W = S.
        None leaves H and W dynamic.
    """
    size = image_size
    signature = {
        IMAGE: tf.TensorSpec([size, size, 3], tf.uint8),
        BOXES: tf.TensorSpec([None, 4], tf.float32),
        CLASS_IDS: tf.TensorSpec([None], tf.int32),
        MASKS: tf.TensorSpec([None, size, size], tf.uint8),
        IS_CROWD: tf.TensorSpec([None], tf.bool),
        IMAGE_ID: tf.TensorSpec([], tf.int64),
    }
    if num_keypoints:
        signature[KEYPOINTS] = tf.TensorSpec([None, int(num_keypoints), 3], tf.float32)
    return signature


# -- one training input ----------------------------------------------------------------------

IMAGES = "images"
IMAGE_SHAPE = "image_shape"
GT_BOXES = "gt_boxes"
GT_CLASSES = "gt_classes"
GT_MASKS = "gt_masks"
GT_IS_CROWD = "gt_is_crowd"
GT_KEYPOINTS = "gt_keypoints"
SCALE = "scale"
ORIGINAL_SHAPE = "original_shape"
SAMPLE_SEED = "sample_seed"
# (and IMAGE_ID, as in an example)


# -- one TFRecord ----------------------------------------------------------------------------

# Bumped whenever the record layout changes incompatibly; readers refuse other versions
# instead of silently misreading fields. Keypoints are optional features, so adding them left
# the version unchanged: records without them parse exactly as before.
FORMAT_VERSION = 1

FEATURE_IMAGE_ENCODED = "image/encoded"
FEATURE_IMAGE_FORMAT = "image/format"
FEATURE_IMAGE_ORIENTATION = "image/orientation"
FEATURE_IMAGE_HEIGHT = "image/height"
FEATURE_IMAGE_WIDTH = "image/width"
FEATURE_IMAGE_ID = "image/id"
FEATURE_BOXES = "object/bbox"
FEATURE_CLASS_IDS = "object/class_id"
FEATURE_IS_CROWD = "object/is_crowd"
FEATURE_MASKS_RLE = "object/mask_rle"
FEATURE_KEYPOINTS = "object/keypoints"
FEATURE_NUM_KEYPOINTS = "object/num_keypoints"
FEATURE_FORMAT_VERSION = "format/version"

# What the parser reads of every record (image/format is written but not needed to decode).
RECORD_FEATURES = {
    FEATURE_IMAGE_ENCODED: tf.io.FixedLenFeature([], tf.string),
    # Optional, so records of earlier writers (no orientation: stored upright) read as before.
    FEATURE_IMAGE_ORIENTATION: tf.io.FixedLenFeature([], tf.int64, default_value=1),
    FEATURE_IMAGE_HEIGHT: tf.io.FixedLenFeature([], tf.int64),
    FEATURE_IMAGE_WIDTH: tf.io.FixedLenFeature([], tf.int64),
    FEATURE_IMAGE_ID: tf.io.FixedLenFeature([], tf.int64),
    FEATURE_BOXES: tf.io.VarLenFeature(tf.float32),
    FEATURE_CLASS_IDS: tf.io.VarLenFeature(tf.int64),
    FEATURE_IS_CROWD: tf.io.VarLenFeature(tf.int64),
    FEATURE_MASKS_RLE: tf.io.VarLenFeature(tf.string),
    FEATURE_FORMAT_VERSION: tf.io.FixedLenFeature([], tf.int64),
}
# Read only when the reader wants keypoints; absent in records without them (K = 0).
RECORD_KEYPOINT_FEATURES = {
    FEATURE_KEYPOINTS: tf.io.VarLenFeature(tf.float32),
    FEATURE_NUM_KEYPOINTS: tf.io.FixedLenFeature([], tf.int64, default_value=0),
}
