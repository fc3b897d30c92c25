"""Shared test set-up: quiet TensorFlow, two threads (the CI machine has 2 cores)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

tf.config.threading.set_inter_op_parallelism_threads(2)
tf.config.threading.set_intra_op_parallelism_threads(2)

import sys  # noqa: E402
import pathlib  # noqa: E402

# Test modules import the NumPy references as `from reference import ...`, and the benchmark
# modules as `from benchmarks import ...` (the repository root).
sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(1, str(pathlib.Path(__file__).parent.parent))
