"""Plain NumPy / Python RoIPool and RoIWarp, written straight from the definitions, for tests
only (scalar loops, independent of mrcnn_tf).

RoIPool (Fast R-CNN, Caffe and torchvision), NHWC layout, round() halves away from zero:

  start_y = round(y1 * scale), end_y = round(y2 * scale), roi_h = max(end_y - start_y + 1, 1)
  bin_h = roi_h / out_h
  rows of bin ph: [floor(ph * bin_h) + start_y, ceil((ph + 1) * bin_h) + start_y), clipped
  to [0, H]; out = max over the bin's cells, 0 when the bin is empty

RoIWarp: the box's corners rounded to the feature grid (round(v * scale) / scale), then
RoIAlign with aligned=False.
"""

import math

import numpy as np

from reference.roi_align_reference import roi_align_reference


def round_half_away(value):
    return math.copysign(math.floor(abs(value) + 0.5), value)


def roi_pool_reference(features, boxes, box_indices, output_size, spatial_scale=1.0):
    """features [B, H, W, C]; boxes [N, 4] (y1, x1, y2, x2); box_indices [N] ->
    [N, out_h, out_w, C] float64."""
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    out_h, out_w = output_size
    features = np.asarray(features, np.float64)
    height, width = features.shape[1:3]
    out = np.zeros((len(boxes), out_h, out_w, features.shape[3]), np.float64)
    for n, (box, b) in enumerate(zip(np.asarray(boxes, np.float64), box_indices)):
        y1, x1, y2, x2 = [round_half_away(float(np.float32(v) * np.float32(spatial_scale)))
                          for v in box]
        bin_h = max(y2 - y1 + 1, 1) / out_h
        bin_w = max(x2 - x1 + 1, 1) / out_w
        for ph in range(out_h):
            top = min(max(math.floor(ph * bin_h) + y1, 0), height)
            bottom = min(max(math.ceil((ph + 1) * bin_h) + y1, 0), height)
            for pw in range(out_w):
                left = min(max(math.floor(pw * bin_w) + x1, 0), width)
                right = min(max(math.ceil((pw + 1) * bin_w) + x1, 0), width)
                if bottom > top and right > left:
                    cells = features[int(b), int(top):int(bottom), int(left):int(right)]
                    out[n, ph, pw] = cells.reshape(-1, features.shape[3]).max(axis=0)
    return out


def roi_warp_reference(features, boxes, box_indices, output_size, spatial_scale=1.0,
                       sampling_ratio=2):
    """RoIAlign (aligned=False) of the boxes rounded to the feature grid."""
    rounded = [[round_half_away(float(np.float32(v) * np.float32(spatial_scale)))
                / spatial_scale for v in box] for box in np.asarray(boxes, np.float64)]
    return roi_align_reference(features, rounded, box_indices, output_size, spatial_scale,
                               sampling_ratio, aligned=False)
