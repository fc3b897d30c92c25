#!/usr/bin/env bash
# The test suite: install with the [test] extra, then run pytest. Extra arguments go to pytest.
. "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" test
exec python -m pytest -q "$@"
