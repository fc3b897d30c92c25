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
# machine's idle time (measured on 2 cores: 14 min 13 s of pytest with three workers, against
# 15 min 01 s with two for the suite less tests/benchmarks/).
# MRCNN_TF_TEST_WORKERS=N sets the count; 0 runs everything in this one process.
exec python -m pytest -q -n "${MRCNN_TF_TEST_WORKERS:-3}" --dist loadfile "$@"
