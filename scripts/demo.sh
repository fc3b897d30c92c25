#!/usr/bin/env bash
# The demo: install, train shapes_tiny on synthetic shapes, evaluate (COCO AP), draw, save.
# Extra arguments go to `mrcnn-tf demo` (e.g. --out runs/demo2 --steps 500).
. "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
exec mrcnn-tf demo --out runs/demo "$@"
