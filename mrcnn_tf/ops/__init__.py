"""Pure TensorFlow functions with no state: boxes, anchors, RoIAlign, NMS, targets, masks."""
