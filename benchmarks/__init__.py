"""Speed and memory benchmarks of mrcnn_tf: `python -m benchmarks --list` names the tasks,
`python -m benchmarks TASK --help` gives one's arguments.

This folder holds the library the tasks share (timing, child processes, reports, synthetic
inputs, FLOP counting, ...); benchmarks/tasks/ holds the tasks.

A regular package (not a namespace one) so that `import benchmarks` always finds this folder,
never `tests/benchmarks/`, whatever order the two roots have on sys.path.
"""
