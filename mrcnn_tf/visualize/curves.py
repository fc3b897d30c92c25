"""A line chart drawn with OpenCV (precision-recall curves, with each curve's number in the
legend)."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from mrcnn_tf.visualize.canvas import put_text
from mrcnn_tf.visualize.colors import CHART_COLORS

# A curve given color=None takes the next of these.
LINE_COLORS = CHART_COLORS
# Curves past the palette are drawn in this light grey and left out of the legend.
MUTED = (200, 200, 200)


def line_chart(title: str, lines: Sequence[dict], x_label: str = "", y_label: str = "",
               x_range=(0.0, 1.0), y_range=(0.0, 1.0), size=(420, 560),
               ticks: int = 5) -> np.ndarray:
    """Curves on one pair of axes, with a legend of their labels.

    Args:
      title: drawn at the top.
      lines: one dict per curve: "x" and "y" float [N] (same N, NaN breaks the line),
        "label" (legend text; "" leaves the curve out of the legend), and optionally
        "color" (RGB; None: the next of LINE_COLORS, or MUTED once they are used up,
        unlabelled then), "width" (pixels, default 2). Drawn in order, so the last is on top.
      x_label, y_label: axis names, under the x axis and above the y axis.
      x_range, y_range: (low, high) of the axes; values outside are clipped to the frame.
      size: (height, width) of the image.
      ticks: tick intervals per axis.
    Returns:
      uint8 RGB [height, width, 3]: white, the frame and grid grey, the legend in the lower
      left corner inside the frame (where precision-recall curves seldom are).
    """
    height, width = size
    (x0, x1), (y0, y1) = (map(float, x_range)), (map(float, y_range))
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"line_chart: x_range {x_range} and y_range {y_range} must each be "
                         "(low, high) with low < high")
    image = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 46, width - 14, 44, height - 40
    put_text(image, title, width / 2, 22, 0.5, centered=True)

    def px(x, y):
        u = left + (right - left) * (np.clip(x, x0, x1) - x0) / (x1 - x0)
        v = bottom - (bottom - top) * (np.clip(y, y0, y1) - y0) / (y1 - y0)
        return u, v

    for k in range(ticks + 1):  # grid lines and tick labels
        fx, fy = x0 + (x1 - x0) * k / ticks, y0 + (y1 - y0) * k / ticks
        u, _ = px(fx, y0)
        _, v = px(x0, fy)
        cv2.line(image, (int(u), top), (int(u), bottom), (232, 232, 232), 1)
        cv2.line(image, (left, int(v)), (right, int(v)), (232, 232, 232), 1)
        put_text(image, f"{fx:g}", u, bottom + 15, 0.38, centered=True)
        put_text(image, f"{fy:g}", 6, v + 4, 0.38)
    cv2.rectangle(image, (left, top), (right, bottom), (120, 120, 120), 1)
    put_text(image, x_label, (left + right) / 2, bottom + 32, 0.42, centered=True)
    put_text(image, y_label, 6, top - 8, 0.42)

    legend = []
    next_color = 0
    for i, line in enumerate(lines):
        x = np.asarray(line["x"], np.float64).reshape(-1)
        y = np.asarray(line["y"], np.float64).reshape(-1)
        if x.shape != y.shape:
            raise ValueError(f"line_chart: line {i} ({line.get('label', '')!r}) has "
                             f"{x.size} x values and {y.size} y values")
        color, label = line.get("color"), str(line.get("label", ""))
        if color is None:
            if next_color < len(LINE_COLORS):
                color, next_color = LINE_COLORS[next_color], next_color + 1
            else:
                color, label = MUTED, ""
        color = tuple(int(c) for c in color)
        u, v = px(x, y)
        # Runs of finite points are drawn as one polyline each; NaN ends a run.
        finite = np.isfinite(x) & np.isfinite(y)
        points = np.stack([u, v], axis=-1) * 16  # 4 fractional bits: smooth, anti-aliased
        runs = np.split(np.arange(x.size), np.flatnonzero(np.diff(finite.astype(int))) + 1)
        for run in runs:
            if run.size and finite[run[0]]:
                cv2.polylines(image, [np.round(points[run]).astype(np.int32)], False, color,
                              int(line.get("width", 2)), cv2.LINE_AA, shift=4)
        if label:
            legend.append((label, color))

    row = 15
    y_start = bottom - 8 - row * (len(legend) - 1)
    for j, (label, color) in enumerate(legend):  # lower left, inside the frame
        y = int(y_start + j * row)
        cv2.line(image, (left + 8, y - 4), (left + 26, y - 4), color, 3)
        put_text(image, label, left + 32, y, 0.4)
    return image
