"""Shared test set-up: quiet TensorFlow, two threads (the CI machine has 2 cores), the
longest test files handed out first."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

tf.config.threading.set_inter_op_parallelism_threads(2)
tf.config.threading.set_intra_op_parallelism_threads(2)

import logging  # noqa: E402
import pathlib  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

# Test modules import the NumPy references as `from reference import ...`, and the benchmark
# modules as `from benchmarks import ...` (the repository root).
sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(1, str(pathlib.Path(__file__).parent.parent))

# The files that take longest, longest first (per-file sums of `pytest --durations` on the
# 2-core machine). pytest-xdist's --dist loadfile hands files out in collection order, and
# collection order is alphabetical, which put tests/training/ (the heaviest folder) last: the
# suite then ended with one worker busy and the others idle. Handing the long files out first
# lets the short ones fill the gaps at the end. Order only; every test still runs.
LONGEST_FIRST = (
    "training/test_resume_and_distribute.py",
    "benchmarks/test_benchmarks_smoke.py",
    "importers/test_torchvision_maskrcnn.py",
    "training/test_precision.py",
    "export/test_saved_model.py",
    "training/test_op_audit_xla.py",
    "training/test_op_audit_gpu.py",
    "modeling/test_task.py",
    "benchmarks/test_trained_model_tasks.py",
    "export/test_ablation_variants.py",
    "modeling/test_mask_rcnn.py",
    "cli/test_export.py",
    "modeling/test_keypoint_rcnn.py",
    "export/test_keypoint_export.py",
    "training/test_input.py",
    "benchmarks/test_coco_scale_data.py",
    "benchmarks/test_gpu_check.py",
    "benchmarks/test_keypoints_benchmark.py",
    "cli/test_disk_full.py",
    "export/test_tflite.py",
    "test_demo.py",
    "cli/test_train.py",
    "cli/test_evaluate.py",
    "cli/test_ablate.py",
    "modeling/test_predictor.py",
    "training/test_guards.py",
    "test_serving_client.py",
    "test_end_to_end.py",
)
_TESTS = pathlib.Path(__file__).parent


def pytest_collection_modifyitems(items):
    """Puts the LONGEST_FIRST files first, in that order; the rest keep their order."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}

    def key(item):
        try:
            relative = pathlib.Path(str(item.path)).relative_to(_TESTS).as_posix()
        except ValueError:
            return len(rank)
        return rank.get(relative, len(rank))

    items.sort(key=key)  # stable: tests within a file, and the other files, keep their order


# The "absl" and root loggers' levels when the session starts, before any test or fixture.
_BASE_LOGGING_LEVELS = (logging.getLogger("absl").level, logging.root.level)


@pytest.fixture(autouse=True)
def _base_logging_levels():
    """Sets the "absl" and root loggers' levels back to the session's first ones before and
    after each test.

    Parsing or resetting absl's flags (a CLI run in this process, `FLAGS.unparse_flags()`)
    sets those levels from `--verbosity`, WARNING by default; a module-scoped fixture can do it
    before any function fixture of its first test runs. Left so, every later test in the same
    worker would miss INFO records in caplog, and which tests fail would depend on how
    pytest-xdist happened to share out the files."""
    absl_logger = logging.getLogger("absl")
    absl_logger.setLevel(_BASE_LOGGING_LEVELS[0])
    logging.root.setLevel(_BASE_LOGGING_LEVELS[1])
    yield
    absl_logger.setLevel(_BASE_LOGGING_LEVELS[0])
    logging.root.setLevel(_BASE_LOGGING_LEVELS[1])
