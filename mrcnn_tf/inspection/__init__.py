"""What the model sees, step by step, for one example (`mrcnn-tf inspect`).

`inspect_example(model, example, out_dir)` runs the model's own pieces on one example and
writes one PNG per view, the ones matterport's inspect_data / inspect_model notebooks made
popular, without a notebook:

    anchors.png           per FPN level P2..P6, the anchors of every ratio centred on the
                          image centre and on the ground-truth box centres (one tile per level,
                          captioned with level, stride and size), and a last tile with the
                          positive anchors of the RPN targets. Too few positives for an object
                          means its size or shape is not covered by `anchor_sizes` /
                          `anchor_ratios`.
    proposals.png         the top RPN proposals at inference, coloured by rank.
    rois.png              the RoIs sampled for the box, mask and keypoint heads in training:
                          positives with the box their regression targets decode to (it must
                          coincide with the matched ground-truth box) and a sample of the
                          negatives.
    mask_targets.png      each positive RoI's mask target (mask_size x mask_size) next to the
                          image crop of that RoI, captioned with the target class. Only for a
                          model with a mask head (config.mask_on).
    keypoint_targets.png  each positive RoI with its ground-truth keypoints and, for every
                          keypoint the loss trains on, the centre of its target heatmap bin
                          decoded back to image pixels (`keypoint_target_points`); labelled
                          keypoints outside the RoI, which get no target, are crossed out.
                          Only for a Keypoint R-CNN model (config.num_keypoints > 0).
    detections.png        the final detections (masks and poses as the model has them), as
                          `mrcnn-tf predict` draws them.
    ground_truth.png      the ground-truth boxes, masks and keypoints (with the skeleton).

Everything is drawn on the resized image the network sees (before normalization), cropped to
its valid region (no padding), and enlarged with nearest-neighbour to at least
`drawing.MIN_DISPLAY_SIDE` pixels on the shorter side so labels stay readable on small
images. Each view has a caption bar above the image.

The work is split so that each part can be used and tested on its own:

- `inspection.data`: `inspection_data` runs the model (TF) and returns NumPy arrays in
  resized-image pixels; `roi_target_boxes` and `keypoint_target_points` decode the targets.
- `inspection.views`: draws them, `write_inspection_views` writes the PNGs (`view_names` says
  which views apply); `anchor_tiles` and the single views.
- `inspection.target_tiles`: the per-positive-RoI views, `mask_target_tiles` and
  `keypoint_target_tiles`.
- `inspection.drawing`: zoom, captions, outlines, colours and crops the views share.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from mrcnn_tf import visualize
from mrcnn_tf.inspection.data import inspection_data
from mrcnn_tf.inspection.views import write_inspection_views


def inspect_example(model, example: Mapping[str, Any], out_dir: str | os.PathLike,
                    max_proposals: int = 50, score_threshold: float = 0.5,
                    keypoint_threshold: float = visualize.KEYPOINT_SCORE_THRESHOLD
                    ) -> dict[str, str]:
    """Writes the inspection views of one example (see the module docstring).

    Args:
      model: a `MaskRCNN`.
      example: one example dict (see `inspection_data`); boxes/masks may be empty.
      out_dir: folder for anchors.png, proposals.png, rois.png, mask_targets.png (with a mask
        head), keypoint_targets.png (with a keypoint head), detections.png and
        ground_truth.png (created if missing).
      max_proposals: proposals drawn in proposals.png (the best ones).
      score_threshold: detections drawn in detections.png score at least this.
      keypoint_threshold: predicted keypoints drawn in detections.png score at least this.

    Returns:
      {view name: PNG path}, for `view_names` of the model's data.

    Raises:
      ValueError: naming the field, for a malformed example; or max_proposals < 1.
    """
    if int(max_proposals) < 1:
        raise ValueError(f"inspect_example: max_proposals={max_proposals}: expected >= 1")
    data = inspection_data(model, example)
    return write_inspection_views(data, out_dir, model.label_map.class_names,
                                  int(max_proposals), score_threshold, keypoint_threshold)
