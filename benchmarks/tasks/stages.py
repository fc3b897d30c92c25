"""Benchmark `stages`: latency of each of the four stages of the model (backbone_fpn,
rpn_proposals, box_detection, mask_paste: benchmarks/stages.py) at each size, batch size and
Keras dtype policy of spec["precisions"], with each stage's FLOPs and share of their sum."""

import functools

import tensorflow as tf

from benchmarks import flops as flop_count
from benchmarks import stages as stage_functions
from benchmarks import synthetic, timing
from benchmarks.configs import model_config
from benchmarks.models import per_policy, policies, precision_labels
from benchmarks.timed_rows import with_flops


def run(spec):
    """{"rows": one per (size, policy, batch, stage), "stages": their names}."""
    rows = []
    for size in spec["sizes"]:
        for policy_rows in per_policy(model_config(spec, size), policies(spec, "stages"),
                                      functools.partial(_stage_rows, spec=spec, size=size),
                                      folded=True):
            rows += policy_rows
    return {"rows": rows, "stages": list(stage_functions.STAGE_NAMES)}


def _stage_rows(policy, model, spec, size):
    """The four stage rows of `model` (computing under `policy`) per batch size, each with its
    share of their sum."""
    functions = stage_functions.make_stage_functions(model, size)
    labels = precision_labels(policy)
    rows = []
    for batch in spec["batches"]:
        images = tf.constant(synthetic.random_images(batch, size))
        calls, _, _ = stage_functions.stage_calls(functions, images)
        counts = flop_count.inference_flops(model, size, size, batch)
        group = [timing.timed_row(calls[name], spec, size=size, batch=batch, stage=name,
                                  **labels) for name in stage_functions.STAGE_NAMES]
        total_ms = sum(row["median_ms"] for row in group)
        for name, row in zip(stage_functions.STAGE_NAMES, group):
            with_flops(row, counts[name], row["median_ms"])
            row["share_of_stage_sum"] = round(row["median_ms"] / total_ms, 4)
        rows += group
    return rows
