"""Plain NumPy / Python RoIAlign, written straight from the definition, for tests only.

Independent of mrcnn_tf: scalar loops, no vectorisation tricks, small inputs. Sample
coordinates are computed in float32 in the definition's order of operations, as torchvision
does for float32 inputs, so a sample that lands exactly on a boundary (x = -1, x = W) falls on
the same side as in torchvision; the interpolation itself is done in float64.
Definition (torchvision.ops.roi_align / Detectron2 ROIAlignV2), NHWC layout:

  y1' = y1 * scale - o, ..., o = 0.5 if aligned else 0
  roi_h = y2' - y1' (forced >= 1 when not aligned), bin_h = roi_h / out_h
  grid_h = sampling_ratio, or ceil(roi_h / out_h) when sampling_ratio == 0
  sample y = y1' + ph * bin_h + (iy + 0.5) * bin_h / grid_h
  out = sum of bilinear samples / max(grid_h * grid_w, 1)
  bilinear: 0 if y < -1 or y > H (x likewise); y <= 0 -> 0; y >= H - 1 -> H - 1.
"""

import math

import numpy as np


def bilinear_sample(image, y, x):
    """image [H, W, C]; y, x Python floats -> [C] float64 value under the rule above."""
    height, width = image.shape[:2]
    if not (-1.0 <= y <= height and -1.0 <= x <= width):
        return np.zeros(image.shape[2], np.float64)
    y = min(max(y, 0.0), height - 1.0)
    x = min(max(x, 0.0), width - 1.0)
    y0, x0 = int(math.floor(y)), int(math.floor(x))
    y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
    ly, lx = y - y0, x - x0
    img = image.astype(np.float64)
    return ((1 - ly) * (1 - lx) * img[y0, x0] + (1 - ly) * lx * img[y0, x1]
            + ly * (1 - lx) * img[y1, x0] + ly * lx * img[y1, x1])


def roi_align_reference(features, boxes, box_indices, output_size, spatial_scale=1.0,
                        sampling_ratio=2, aligned=True):
    """features [B, H, W, C]; boxes [N, 4] (y1, x1, y2, x2); box_indices [N].

    Returns [N, out_h, out_w, C] float64.
    """
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    out_h, out_w = output_size
    features = np.asarray(features, np.float64)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    out = np.zeros((len(boxes), out_h, out_w, features.shape[3]), np.float64)
    f32 = np.float32
    offset = f32(0.5 if aligned else 0.0)
    scale = f32(spatial_scale)
    for n, (box, b) in enumerate(zip(boxes, box_indices)):
        y1, x1, y2, x2 = [f32(v) * scale - offset for v in box]
        roi_h, roi_w = y2 - y1, x2 - x1
        if not aligned:
            roi_h, roi_w = max(roi_h, f32(1.0)), max(roi_w, f32(1.0))
        bin_h, bin_w = roi_h / f32(out_h), roi_w / f32(out_w)
        if sampling_ratio > 0:
            grid_h = grid_w = sampling_ratio
        elif math.isnan(roi_h) or math.isnan(roi_w):
            grid_h = grid_w = 0  # NaN box: no samples (its coordinates would all be NaN)
        else:
            grid_h = math.ceil(roi_h / f32(out_h))
            grid_w = math.ceil(roi_w / f32(out_w))
        count = max(grid_h * grid_w, 1)
        for ph in range(out_h):
            for pw in range(out_w):
                acc = np.zeros(features.shape[3], np.float64)
                for iy in range(grid_h):  # empty when grid_h <= 0
                    y = y1 + f32(ph) * bin_h + f32(iy + 0.5) * bin_h / f32(grid_h)
                    for ix in range(grid_w):
                        x = x1 + f32(pw) * bin_w + f32(ix + 0.5) * bin_w / f32(grid_w)
                        acc += bilinear_sample(features[int(b)], float(y), float(x))
                out[n, ph, pw] = acc / count
    return out
