#!/usr/bin/env bash
# The test suite: install with the [test] extra, then run pytest. Extra arguments go to pytest.
# MRCNN_TF_TEST_EXTRAS=test,torch also installs torch/torchvision, so the parity tests against
# torchvision run instead of being skipped (CI does this).
. "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" "${MRCNN_TF_TEST_EXTRAS:-test}"
# torch's default wheels bring triton, whose C extension crashes the process when it loads after
# TensorFlow's; torch on a CPU never needs it.
if python -m pip show triton >/dev/null 2>&1; then
  python -m pip uninstall --yes --quiet triton
fi
exec python -m pytest -q "$@"
