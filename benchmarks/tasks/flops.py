"""Benchmark `flops`: per-stage FLOPs of one inference at each size, counted analytically from
the layer shapes (benchmarks/flops.py), checked against the R50-FPN reference numbers."""

import time

from benchmarks import flops as flop_count
from benchmarks.configs import model_config


def run(spec):
    """{"rows": one per (model, size) with its GFLOP per stage and the reference check,
    "convention": what is counted}."""
    settings = spec["flops"]
    rows = []
    jobs = [("benchmarked", spec, size) for size in spec["sizes"]]
    # The reference model (R50-FPN, 80 classes, 1000 proposals, 100 masks) is counted too when
    # the benchmarked model is another one (smoke mode), so the check always runs.
    reference_spec = dict(spec, model={"preset": "coco_r50_fpn", "overrides": {}})
    jobs += [("reference_r50_fpn", reference_spec, size)
             for size in settings["reference_sizes"]]
    for label, job_spec, size in jobs:
        config = model_config(job_spec, size)
        start = time.perf_counter()
        model = flop_count.shape_built_model(config)  # counting needs shapes, not values
        counts = flop_count.inference_flops(model, size, size)
        row = {"model": label, "preset": config.name, "size": size,
               "padded_size": counts["padded_size"], "proposals": counts["proposals"],
               "masks": counts["masks"], "gflop": flop_count.gflop(counts),
               "count_s": round(time.perf_counter() - start, 2)}
        if flop_count.is_reference_shaped(config):
            row["reference_check"] = flop_count.reference_check(counts, size)
        rows.append(row)
        del model
    return {"rows": rows, "convention": "convolutions, transposed convolutions and dense "
                                        "layers; 1 multiply-add = 2 FLOP; per image"}
