"""Benchmark `ceilings`: this machine's float32 and bfloat16 GFLOP/s on the R50-FPN's own 3x3
convolution and matmul shapes (benchmarks/ceilings.py), measured in the suite's process setup
so that the inference and stage rows can be stated as a share of them."""

from benchmarks import ceilings

# A ceiling is a best case, so it gets more runs than a model row: at least this many.
MIN_REPEATS = 10


def run(spec):
    """{"rows": one per (kind, dtype, shape), "ceilings": {dtype: {kind: GFLOP/s}}}."""
    if spec["smoke"]:
        # Smoke mode checks the code path, not the machine: one small shape per kind.
        return ceilings.measure(warmup=spec["warmup"], repeats=spec["repeats"],
                                conv_shapes=((1, 16, 16, 32),), matmul_shapes=((64, 64, 64),))
    return ceilings.measure(warmup=spec["warmup"] + 2,
                            repeats=max(spec["repeats"], MIN_REPEATS))
