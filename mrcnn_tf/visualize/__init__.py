"""Drawing detections, anchors, proposals and mask targets with OpenCV (no display needed).

Every function takes and returns uint8 RGB images [H, W, 3] and never modifies its input.
Boxes are (y1, x1, y2, x2) float pixels with exclusive right/bottom edges, so a box is drawn
on the pixels x1..x2-1, y1..y2-1, i.e. exactly around the mask it was computed from.
Keypoints are (y, x, score) or ground-truth (y, x, v) in continuous pixels (pixel i covers
[i, i + 1), see `mrcnn_tf.keypoint_spec`), so a keypoint at 12.5 is drawn centred on pixel 12.
Save results with `mrcnn_tf.io_utils.write_png_atomic`.

The modules, one job each:
  colors     the instance palette (`color_palette`) and the heat map of a soft mask
             (`mask_to_color`)
  canvas     what every drawing shares: the RGB copy drawn on, box corners, text labels,
             plain text (`put_text`)
  keypoints  poses: dots and skeleton limbs (`draw_keypoints`, `KEYPOINT_SCORE_THRESHOLD`)
  instances  masks, boxes, poses and labels of detections (`draw_instances`, `class_name`)
             and plain boxes (`draw_boxes`)
  grids      tiling images into one (`make_grid`), a captioned tile (`captioned_tile`),
             images of any sizes in rows (`stack_rows`)
  bars       a grouped bar chart with whiskers (`grouped_bar_chart`, the ablations' and the
             evaluation's error breakdown)
  curves     a line chart with a legend (`line_chart`, the precision-recall curves)
Callers use the names below: `from mrcnn_tf import visualize; visualize.draw_instances(...)`.
"""

from mrcnn_tf.visualize.bars import grouped_bar_chart
from mrcnn_tf.visualize.canvas import put_text
from mrcnn_tf.visualize.colors import CHART_COLORS, color_palette, mask_to_color
from mrcnn_tf.visualize.curves import line_chart
from mrcnn_tf.visualize.grids import captioned_tile, make_grid, stack_rows
from mrcnn_tf.visualize.instances import class_name, draw_boxes, draw_instances
from mrcnn_tf.visualize.keypoints import KEYPOINT_SCORE_THRESHOLD, draw_keypoints

__all__ = [
    "CHART_COLORS",
    "KEYPOINT_SCORE_THRESHOLD",
    "captioned_tile",
    "class_name",
    "color_palette",
    "draw_boxes",
    "draw_instances",
    "draw_keypoints",
    "grouped_bar_chart",
    "line_chart",
    "make_grid",
    "mask_to_color",
    "put_text",
    "stack_rows",
]
