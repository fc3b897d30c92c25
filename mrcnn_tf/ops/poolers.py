"""The RoI poolers a model can use, by name (`Config.roi_pooler`), in both shape policies.

  roi_align     RoIAlign, aligned=True (Detectron2's ROIAlignV2; the paper's RoIAlign with
                the half-pixel offset): `ops.roi_align`.
  roi_align_v1  RoIAlign, aligned=False (the paper's original form; torchvision v1's).
  roi_warp      the box's corners rounded to the feature grid, then RoIAlign aligned=False
                (Mask R-CNN's Table 2 "RoIWarp"): `ops.roi_pool.roi_warp`.
  roi_pool      Fast R-CNN's RoIPool (box rounded to the grid, bins with floor/ceil edges,
                max per bin): `ops.roi_pool.roi_pool`.

Each pooler has two forms with the same numbers (tests/ops/test_poolers.py):

* `single(features, boxes, box_indices, output_size, spatial_scale, sampling_ratio)` pools
  boxes on one map; `PyramidRoIAlign` calls it per FPN level with the boxes of that level
  (shapes follow the data; `static_shapes=False`).
* `multilevel(maps, boxes, box_indices, levels, spatial_scales, output_size, sampling_ratio)`
  pools each box on its own level among several in one pass with fixed shapes (XLA, TFLite;
  `static_shapes=True`).

Every multilevel form converts to TFLite with builtin ops only, so the TFLite export takes any
pooler: the RoIAlign family by gathers and arithmetic (`ops.roi_align_builtin`), RoIPool by a
WHILE loop of GATHER_ND and MAXIMUM (tests/export/test_ablation_variants.py converts
roi_pool, roi_warp and roi_align_v1 models; tests/export/test_tflite.py the default).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Sequence

import tensorflow as tf

from mrcnn_tf.ops import roi_align as roi_align_ops
from mrcnn_tf.ops import roi_align_builtin as builtin_ops
from mrcnn_tf.ops import roi_pool as roi_pool_ops


@dataclasses.dataclass(frozen=True)
class RoiPooler:
    """One pooler: its single-map and multilevel forms (module docstring)."""

    name: str
    single: Callable
    multilevel: Callable


def _align(aligned: bool):
    def single(features, boxes, box_indices, output_size, spatial_scale, sampling_ratio):
        return roi_align_ops.roi_align(features, boxes, box_indices, output_size,
                                       spatial_scale, sampling_ratio, aligned=aligned)

    def multilevel(maps, boxes, box_indices, levels, spatial_scales, output_size,
                   sampling_ratio):
        return builtin_ops.multilevel_roi_align_builtin(
            maps, boxes, box_indices, levels, spatial_scales, output_size, sampling_ratio,
            aligned=aligned)

    return single, multilevel


def _warp_single(features, boxes, box_indices, output_size, spatial_scale, sampling_ratio):
    return roi_pool_ops.roi_warp(features, boxes, box_indices, output_size, spatial_scale,
                                 sampling_ratio)


def _warp_multilevel(maps, boxes, box_indices, levels, spatial_scales, output_size,
                     sampling_ratio):
    """Each box rounded to its own level's grid, then RoIAlign aligned=False in one pass."""
    scale = tf.gather(tf.constant([float(s) for s in spatial_scales], tf.float32),
                      tf.cast(levels, tf.int32))[:, None]  # [N, 1]
    rounded = roi_pool_ops.round_half_away(
        tf.cast(tf.stop_gradient(boxes), tf.float32) * scale) / scale
    return builtin_ops.multilevel_roi_align_builtin(
        maps, rounded, box_indices, levels, spatial_scales, output_size, sampling_ratio,
        aligned=False)


def _pool_single(features, boxes, box_indices, output_size, spatial_scale, sampling_ratio):
    del sampling_ratio  # RoIPool takes the max over every cell of a bin
    return roi_pool_ops.roi_pool(features, boxes, box_indices, output_size, spatial_scale)


def _pool_multilevel(maps: Sequence[tf.Tensor], boxes, box_indices, levels, spatial_scales,
                     output_size, sampling_ratio):
    """RoIPool of every box on each level, keeping its own level's result.

    Boxes of other levels are pooled as the empty box (0, 0, 0, 0), one cell per bin, so a
    level's loop runs only as long as the largest bin of its own boxes: the cost is about one
    RoIPool of all boxes plus L - 1 one-cell passes, with static shapes.
    """
    del sampling_ratio
    levels = tf.cast(levels, tf.int32)
    boxes = tf.cast(boxes, tf.float32)
    pooled = None
    for level, (features, scale) in enumerate(zip(maps, spatial_scales)):
        here = tf.equal(levels, level)
        level_boxes = tf.where(here[:, None], boxes, tf.zeros_like(boxes))
        part = tf.cast(roi_pool_ops.roi_pool(features, level_boxes, box_indices, output_size,
                                             scale), tf.float32)
        part = tf.where(here[:, None, None, None], part, tf.zeros_like(part))
        pooled = part if pooled is None else pooled + part
    return tf.cast(pooled, maps[0].dtype)


_ALIGN = _align(True)
_ALIGN_V1 = _align(False)
ROI_POOLERS: Dict[str, RoiPooler] = {
    "roi_align": RoiPooler("roi_align", *_ALIGN),
    "roi_align_v1": RoiPooler("roi_align_v1", *_ALIGN_V1),
    "roi_warp": RoiPooler("roi_warp", _warp_single, _warp_multilevel),
    "roi_pool": RoiPooler("roi_pool", _pool_single, _pool_multilevel),
}
