#!/usr/bin/env bash
# The test suite: install with the [test] extra, then run pytest (pytest-xdist, three workers).
# Extra arguments go to pytest.
# MRCNN_TF_TEST_EXTRAS=test,torch also installs torch/torchvision, so the parity tests against
# torchvision run instead of being skipped (CI does this).
. "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" "${MRCNN_TF_TEST_EXTRAS:-test}"
# torch's default wheels bring triton, whose C extension crashes the process when it loads after
# TensorFlow's; torch on a CPU never needs it.
if python -m pip show triton >/dev/null 2>&1; then
  python -m pip uninstall --yes --quiet triton
fi
# Three workers, one test file each at a time (module fixtures are built once): much of the suite
# is single-threaded Python (tracing, subprocess start-up), so a third worker fills the 2-core
# machine's idle time. Files are handed out longest first (tests/conftest.py LONGEST_FIRST);
# --no-loadscope-reorder keeps that order instead of xdist's default (most tests first, which
# left the few long tests of tests/training/ for the end).
# MRCNN_TF_TEST_WORKERS=N sets the count; 0 runs everything in this one process.
exec python -m pytest -q -n "${MRCNN_TF_TEST_WORKERS:-3}" --dist loadfile --no-loadscope-reorder \
  "$@"
