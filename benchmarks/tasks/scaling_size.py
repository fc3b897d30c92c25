"""Benchmark `scaling_size`: inference latency (batch 1) against image size, and the exponent
of its growth."""

from benchmarks.configs import model_config
from benchmarks.models import build_model
from benchmarks.timed_rows import inference_rows
from benchmarks.timing import sweep_result


def run(spec):
    """{"rows": one per size of spec["scaling"]["sizes"], "variable", "exponent"}."""
    rows = []
    for size in spec["scaling"]["sizes"]:
        model = build_model(model_config(spec, size), folded=True)
        rows += inference_rows(model, spec, size, [1])
        del model
    return sweep_result(rows, "size")
