"""Benchmark `scaling_instances`: training step time against ground-truth instances per
image, and the exponent of its growth."""

from benchmarks.configs import model_config
from benchmarks.models import build_model
from benchmarks.timed_rows import train_rows
from benchmarks.timing import sweep_result


def run(spec):
    """{"rows": one per count of spec["scaling"]["instances"], "variable", "exponent"}."""
    scaling = spec["scaling"]
    size = scaling["instances_image"]
    rows = train_rows("float32", build_model(model_config(spec, size)), spec, size,
                      spec["train"]["batch"], scaling["instances"])
    return sweep_result(rows, "instances")
