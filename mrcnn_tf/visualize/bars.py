"""A grouped bar chart with whiskers, drawn with OpenCV (the ablations' chart)."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from mrcnn_tf.visualize.canvas import put_text as _text
from mrcnn_tf.visualize.colors import CHART_COLORS

# Series colours: the first five chart colours (blue, orange, green, red, purple).
_SERIES_COLORS = CHART_COLORS[:5]


def grouped_bar_chart(title: str, groups: Sequence[str], series: Sequence[str],
                      means: np.ndarray, lows: np.ndarray, highs: np.ndarray,
                      notes: Sequence[str] = (), y_max: float = 1.0,
                      size=(480, 760)) -> np.ndarray:
    """Bars of `means` grouped by `groups`, one colour per series, with a whisker from `lows`
    to `highs` (e.g. the smallest and largest value over seeds) and the mean written on top.

    Args:
      title: drawn at the top.
      groups: G group labels (x axis); notes: optional G second lines under them.
      series: S series names (legend).
      means, lows, highs: [G, S] values in [0, y_max].
      y_max: the top of the y axis.
      size: (height, width) of the image.
    Returns:
      uint8 RGB [height, width, 3].
    """
    means, lows, highs = (np.asarray(v, np.float64) for v in (means, lows, highs))
    shape = (len(groups), len(series))
    if means.shape != shape or lows.shape != shape or highs.shape != shape:
        raise ValueError(f"grouped_bar_chart: means/lows/highs {means.shape}, {lows.shape}, "
                         f"{highs.shape}: expected {shape} (groups x series)")
    if len(series) > len(_SERIES_COLORS):
        raise ValueError(f"grouped_bar_chart: {len(series)} series; at most "
                         f"{len(_SERIES_COLORS)}")
    height, width = size
    image = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 50, width - 20, 60, height - 60
    _text(image, title, width / 2, 24, 0.55, centered=True)
    for i, name in enumerate(series):  # legend
        x = left + i * 150
        cv2.rectangle(image, (x, 36), (x + 12, 48), _SERIES_COLORS[i], -1)
        _text(image, name, x + 18, 47, 0.42)

    def y_of(value):
        return bottom - (bottom - top) * float(np.clip(value / y_max, 0.0, 1.0))

    # A tick every tenth when y_max is a whole number of them (up to ten), else five ticks.
    tenths = round(y_max * 10)
    ticks, digits = ((tenths, 1) if 1 <= tenths <= 10 and abs(y_max * 10 - tenths) < 1e-6
                     else (5, 2))
    for k in range(ticks + 1):  # y axis grid and ticks
        value = y_max * k / ticks
        y = int(y_of(value))
        cv2.line(image, (left, y), (right, y), (225, 225, 225), 1)
        _text(image, f"{value:.{digits}f}", 8, y + 4, 0.4)
    group_width = (right - left) / len(groups)
    bar_width = group_width * 0.8 / len(series)
    for g, group in enumerate(groups):
        x0 = left + g * group_width + group_width * 0.1
        for s in range(len(series)):
            x1 = int(x0 + s * bar_width)
            x2 = int(x0 + (s + 1) * bar_width) - 2
            cv2.rectangle(image, (x1, int(y_of(means[g, s]))), (x2, bottom),
                          _SERIES_COLORS[s], -1)
            middle = (x1 + x2) // 2
            cv2.line(image, (middle, int(y_of(lows[g, s]))), (middle, int(y_of(highs[g, s]))),
                     (0, 0, 0), 1)
            _text(image, f"{means[g, s]:.2f}", middle, y_of(highs[g, s]) - 4, 0.35,
                  centered=True)
        centre = left + (g + 0.5) * group_width
        _text(image, group, centre, bottom + 20, 0.45, centered=True)
        if g < len(notes) and notes[g]:
            _text(image, notes[g], centre, bottom + 40, 0.38, (90, 90, 90), centered=True)
    cv2.line(image, (left, bottom), (right, bottom), (0, 0, 0), 1)
    return image
