"""Speed and memory benchmarks of mrcnn_tf; `python benchmarks/run.py --help` runs them.

A regular package (not a namespace one) so that `import benchmarks` always finds this folder,
never `tests/benchmarks/`, whatever order the two roots have on sys.path.
"""
