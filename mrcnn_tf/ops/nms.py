"""Non-maximum suppression with static, padded outputs.

Every function returns a fixed number of indices per image plus a valid count, so callers stay
static-shaped under tf.function, XLA-free graphs, tf.distribute and TFLite.
"""

import tensorflow as tf


def nms_padded(boxes, scores, max_output_size, iou_threshold, score_threshold=float("-inf")):
    """Greedy NMS on one image, padded.

    A box is suppressed by a higher-scoring kept box when their IoU is > iou_threshold
    (torchvision / Detectron2 semantics). Lowers to TFLite's builtin NON_MAX_SUPPRESSION_V4.

    Args:
      boxes: [N, 4] float32; scores: [N] float32.
      max_output_size: python int, the padded output length.
    Returns:
      indices [max_output_size] int32 (kept boxes in decreasing score order, then zeros),
      count [] int32 (how many indices are valid).
    """
    indices, count = tf.raw_ops.NonMaxSuppressionV4(
        boxes=boxes, scores=scores, max_output_size=max_output_size,
        iou_threshold=iou_threshold, score_threshold=score_threshold,
        pad_to_max_output_size=True)
    return indices, count


def batched_nms_padded(boxes, scores, max_output_size, iou_threshold,
                       score_threshold=float("-inf")):
    """`nms_padded` applied to each image of a batch.

    Args:
      boxes: [B, N, 4]; scores: [B, N].
    Returns:
      indices [B, max_output_size] int32, valid [B, max_output_size] bool.
    """
    def one_image(args):
        image_boxes, image_scores = args
        indices, count = nms_padded(image_boxes, image_scores, max_output_size, iou_threshold,
                                    score_threshold)
        return indices, count

    if boxes.shape[0] == 1:
        # One image of a static batch (the TFLite export): no map_fn, so no WHILE op. TFLite's
        # int8 calibrator crashes on a WHILE whose body passes a tensor through unchanged
        # (the loop's captured inputs; tensorflow/tensorflow#75140, TF 2.14 and later).
        index, count = one_image((boxes[0], scores[0]))
        indices, counts = index[None], count[None]
    else:
        indices, counts = tf.map_fn(
            one_image, (boxes, scores),
            fn_output_signature=(tf.TensorSpec([max_output_size], tf.int32),
                                 tf.TensorSpec([], tf.int32)))
    valid = tf.range(max_output_size)[None, :] < counts[:, None]
    return indices, valid


def offset_boxes_by_group(boxes, groups):
    """Moves each group's boxes far apart so one NMS call acts as per-group NMS.

    Boxes of different groups (classes, pyramid levels) then never overlap, which is the
    "batched NMS" trick: one NMS over everything instead of a loop over groups.

    Args:
      boxes: [B, N, 4] in pixels (any sign); groups: [B, N] int.
    Returns:
      [B, N, 4] shifted boxes (only for NMS: keep the originals for output).
    """
    span = tf.reduce_max(tf.abs(boxes), axis=[1, 2], keepdims=True) * 2.0 + 1.0  # [B, 1, 1]
    return boxes + tf.cast(groups, boxes.dtype)[..., None] * span
