#!/usr/bin/env bash
# The demo: install, train shapes_tiny on synthetic shapes, evaluate (COCO AP), draw, save,
# export. Extra arguments go to `mrcnn-tf demo` (e.g. --out runs/demo2 --steps 500, or
# --config shapes_keypoints_tiny --out runs/demo_keypoints for Keypoint R-CNN).
# The empty argument: a sourced script sees the caller's arguments otherwise, and _venv.sh
# would take the first demo flag for a pip extra.
. "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" ""
exec mrcnn-tf demo --out runs/demo "$@"
