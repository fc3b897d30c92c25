"""Benchmark `scaling_batch`: inference latency against batch size at one image size, and the
exponent of its growth."""

from benchmarks.configs import model_config
from benchmarks.models import build_model
from benchmarks.timed_rows import inference_rows
from benchmarks.timing import sweep_result


def run(spec):
    """{"rows": one per batch of spec["scaling"]["batches"], "variable", "exponent"}."""
    size = spec["scaling"]["batch_size_image"]
    model = build_model(model_config(spec, size), folded=True)
    rows = inference_rows(model, spec, size, spec["scaling"]["batches"])
    for row in rows:
        row["ms_per_image"] = round(row["median_ms"] / row["batch"], 3)
    return sweep_result(rows, "batch")
