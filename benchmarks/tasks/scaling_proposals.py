"""Benchmark `scaling_proposals`: inference latency (batch 1) against the number of RPN
proposals per image (the box head's rows), and the exponent of its growth."""

from benchmarks.configs import model_config
from benchmarks.models import build_model
from benchmarks.timed_rows import inference_rows
from benchmarks.timing import sweep_result


def run(spec):
    """{"rows": one per count of spec["scaling"]["proposals"], "variable", "exponent"}."""
    size = spec["scaling"]["proposals_image"]
    rows = []
    for proposals in spec["scaling"]["proposals"]:
        config = model_config(spec, size, rpn_post_nms_topk_test=int(proposals))
        model = build_model(config)
        rows += inference_rows(model, spec, size, [1], proposals=int(proposals))
        del model
    return sweep_result(rows, "proposals")
