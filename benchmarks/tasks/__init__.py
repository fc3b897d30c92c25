"""The tasks of `python -m benchmarks`, one module each (and the child jobs some run in
processes of their own); benchmarks/registry.py names them and says the shape of each."""
