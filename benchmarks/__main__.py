"""`python -m benchmarks TASK [ARGUMENTS]`: the benchmarks' one entry point (benchmarks/cli.py);
`python -m benchmarks --list` names the tasks."""

import sys

from benchmarks.cli import main

if __name__ == "__main__":
    sys.exit(main())
