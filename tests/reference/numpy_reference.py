"""Plain NumPy references for the box, NMS, target and mask ops, for tests only.

Written from the definitions (Faster R-CNN box coding, greedy NMS, RoIAlign-style bilinear
sampling), independent of mrcnn_tf. Loops are fine: inputs in tests are small.
Boxes are (y1, x1, y2, x2) with continuous coordinates (width = x2 - x1, no +1).
"""

import math

import numpy as np


def area(boxes):
    boxes = np.asarray(boxes, np.float64)
    return (np.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
            * np.maximum(boxes[..., 3] - boxes[..., 1], 0.0))


def intersection(a, b):
    """a [N, 4], b [M, 4] -> [N, M], by explicit loops."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    out = np.zeros((len(a), len(b)))
    for i in range(len(a)):
        for j in range(len(b)):
            h = min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0])
            w = min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1])
            out[i, j] = max(h, 0.0) * max(w, 0.0)
    return out


def iou(a, b):
    inter = intersection(a, b)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def ioa(a, b):
    inter = intersection(a, b)
    area_a = area(a)[:, None]
    return np.where(area_a > 0, inter / np.where(area_a > 0, area_a, 1.0), 0.0)


def encode(boxes, anchors, weights):
    boxes = np.asarray(boxes, np.float64)
    anchors = np.asarray(anchors, np.float64)
    wy, wx, wh, ww = weights
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    ha = anchors[..., 2] - anchors[..., 0]
    wa = anchors[..., 3] - anchors[..., 1]
    cy = boxes[..., 0] + h / 2
    cx = boxes[..., 1] + w / 2
    cya = anchors[..., 0] + ha / 2
    cxa = anchors[..., 1] + wa / 2
    return np.stack([wy * (cy - cya) / ha, wx * (cx - cxa) / wa,
                     wh * np.log(h / ha), ww * np.log(w / wa)], axis=-1)


def decode(deltas, anchors, weights, clip=math.log(1000.0 / 16)):
    deltas = np.asarray(deltas, np.float64)
    anchors = np.asarray(anchors, np.float64)
    wy, wx, wh, ww = weights
    ha = anchors[..., 2] - anchors[..., 0]
    wa = anchors[..., 3] - anchors[..., 1]
    cya = anchors[..., 0] + ha / 2
    cxa = anchors[..., 1] + wa / 2
    cy = deltas[..., 0] / wy * ha + cya
    cx = deltas[..., 1] / wx * wa + cxa
    h = np.exp(np.minimum(deltas[..., 2] / wh, clip)) * ha
    w = np.exp(np.minimum(deltas[..., 3] / ww, clip)) * wa
    return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)


def clip_boxes(boxes, height, width):
    boxes = np.array(boxes, np.float64)
    boxes[..., 0::2] = np.clip(boxes[..., 0::2], 0, height)
    boxes[..., 1::2] = np.clip(boxes[..., 1::2], 0, width)
    return boxes


def greedy_nms(boxes, scores, iou_threshold, max_output=None, score_threshold=-np.inf):
    """Keeps boxes in decreasing score order; a box is dropped when its IoU with an already
    kept box is > iou_threshold. Returns the list of kept indices."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    kept = []
    for i in order:
        if scores[i] <= score_threshold:
            continue
        if all(iou(boxes[i:i + 1], boxes[k:k + 1])[0, 0] <= iou_threshold for k in kept):
            kept.append(i)
        if max_output is not None and len(kept) == max_output:
            break
    return kept


def _bilinear_weights(coords, size, zero_outside):
    """Matrix [S, size] so that (matrix @ v) samples v at pixel-index coords.

    zero_outside=False: RoIAlign rule (0 if c < -1 or c > size, else clamp to [0, size - 1]).
    zero_outside=True: the signal is 0 beyond the pixels (zero-padded interpolation).
    """
    mat = np.zeros((len(coords), size))
    for k, c in enumerate(coords):
        if zero_outside:
            c0 = math.floor(c)
            for idx, wgt in ((c0, 1.0 - (c - c0)), (c0 + 1, c - c0)):
                if 0 <= idx < size:
                    mat[k, idx] += wgt
            continue
        if c < -1.0 or c > size:
            continue
        c = min(max(c, 0.0), size - 1.0)
        c0 = int(math.floor(c))
        c1 = min(c0 + 1, size - 1)
        mat[k, c0] += 1.0 - (c - c0)
        mat[k, c1] += c - c0
    return mat


def crop_mask_soft(mask, box, mask_size, sampling_ratio=2):
    """Average of sampling_ratio^2 bilinear samples at the centres of equal sub-bins of the
    box (pixel i covers [i, i + 1): index = coordinate - 0.5), RoIAlign border rule.
    Returns the [mask_size, mask_size] averages before thresholding."""
    mask = np.asarray(mask, np.float64)
    y1, x1, y2, x2 = [float(v) for v in box]
    n = mask_size * sampling_ratio
    ys = [y1 + (k + 0.5) * (y2 - y1) / n - 0.5 for k in range(n)]
    xs = [x1 + (k + 0.5) * (x2 - x1) / n - 0.5 for k in range(n)]
    wy = _bilinear_weights(ys, mask.shape[0], zero_outside=False)
    wx = _bilinear_weights(xs, mask.shape[1], zero_outside=False)
    samples = wy @ mask @ wx.T  # [n, n]
    s = sampling_ratio
    return samples.reshape(mask_size, s, mask_size, s).mean(axis=(1, 3))


def crop_mask(mask, box, mask_size, sampling_ratio=2):
    return (crop_mask_soft(mask, box, mask_size, sampling_ratio) >= 0.5).astype(np.float32)


def paste_mask(mask, box, height, width):
    """Samples an [m, m] box-relative mask at every image pixel centre (i + 0.5, j + 0.5),
    bilinearly, the mask being zero beyond its pixels (grid_sample with zero padding)."""
    mask = np.asarray(mask, np.float64)
    m_h, m_w = mask.shape
    y1, x1, y2, x2 = [float(v) for v in box]
    ys = [(i + 0.5 - y1) * m_h / (y2 - y1) - 0.5 for i in range(height)]
    xs = [(j + 0.5 - x1) * m_w / (x2 - x1) - 0.5 for j in range(width)]
    wy = _bilinear_weights(ys, m_h, zero_outside=True)
    wx = _bilinear_weights(xs, m_w, zero_outside=True)
    return wy @ mask @ wx.T


def random_boxes(rng, n, extent=100.0, min_size=1.0, max_size=40.0):
    y1 = rng.uniform(0, extent, n)
    x1 = rng.uniform(0, extent, n)
    h = rng.uniform(min_size, max_size, n)
    w = rng.uniform(min_size, max_size, n)
    return np.stack([y1, x1, y1 + h, x1 + w], axis=-1).astype(np.float32)
