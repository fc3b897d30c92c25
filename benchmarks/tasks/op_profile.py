"""Where inference time goes, op by op: one traced call of the benchmarked model, its op times
summed by op type and by the part of the model that ran them.

    python -m benchmarks op_profile --size 512 --precision mixed_bfloat16

The inference function of the `inference` benchmark (model(images) + full-image mask paste,
--preset's model (R50-FPN) with random weights, score threshold 0 unless --detections) is frozen and run in a
TensorFlow session with full tracing, after --warmup untraced runs, so the numbers are those
of the kernels TensorFlow picked after its graph rewrites (oneDNN's fused convolutions, for
one). Each op's time is its kernel's wall time; with two threads ops overlap, so the sum is
above the call's wall time, which is printed beside it. The part is read from the op's name
(the Keras layer it belongs to: backbone, fpn, rpn_head, proposals, box_roi_align, box_head,
detections, mask_roi_align, mask_head) and "other" for the rest (resize, paste, glue).

Prints the tables (markdown) and writes the numbers as JSON to --out (atomically).
"""

import collections
import os
import re
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.framework import convert_to_constants  # noqa: E402

from benchmarks import flops as flop_count  # noqa: E402
from benchmarks import stages, synthetic  # noqa: E402
from benchmarks.configs import model_config  # noqa: E402
from benchmarks.models import build_model  # noqa: E402
from benchmarks.results_files import write_text_atomic  # noqa: E402
from benchmarks.tables import table  # noqa: E402

PARTS = ("backbone", "fpn", "rpn_head", "proposals", "box_roi_align", "box_head",
         "detections", "mask_roi_align", "mask_head")
CONVOLUTIONS = re.compile(r"Conv|MatMul|Einsum", re.IGNORECASE)


def add_arguments(parser):
    parser.add_argument("--preset", default="coco_r50_fpn")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--precision", default="float32",
                        choices=("float32", "mixed_bfloat16"))
    parser.add_argument("--detections", type=int, default=None,
                        help="score threshold set to keep about this many (default: all 100)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="traced runs, summed")
    parser.add_argument("--top", type=int, default=25, help="op types listed")
    parser.add_argument("--out", default=None, help="write the numbers as JSON here")


def frozen_inference(size, precision, detections=None, preset="coco_r50_fpn"):
    """(graph_def, input name, output names, model) of the benchmarked inference function of
    `preset` at `size`, its variables frozen into constants."""
    spec = {"model": {"preset": preset, "overrides": {}}}
    model = build_model(model_config(spec, size), policy=precision, folded=True)
    if detections:
        model.detector.score_threshold = _threshold_for(model, size, detections)
    function = stages.make_inference_function(model, size)
    concrete = function.get_concrete_function()
    frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
    graph_def = frozen.graph.as_graph_def()
    inputs = [t.name for t in frozen.inputs]
    outputs = [t.name for t in frozen.outputs]
    return graph_def, inputs[0], outputs, model


def _threshold_for(model, size, count):
    """The score threshold that keeps `count` detections of the noise image."""
    scores = model(synthetic.random_images(1, size))["scores"].numpy()[0]
    ordered = -np.sort(-scores)
    return float((ordered[count - 1] + ordered[count]) / 2)


def run(size=512, precision="float32", detections=None, threads=2, warmup=2, repeats=3,
            preset="coco_r50_fpn"):
    """{"by_type": [...], "by_part": [...], "top_nodes": [...], "wall_ms", "op_ms",
    "gflop"}: op times (ms per call) summed by op type, by part and per node (the 60
    slowest)."""
    graph_def, input_name, output_names, model = frozen_inference(size, precision, detections,
                                                                  preset)
    gflop = flop_count.inference_flops(model, size, size, 1,
                                       masks=detections)["total"] / 1e9
    del model
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads,
                                      inter_op_parallelism_threads=threads)
    image = synthetic.random_images(1, size)
    by_type, by_part, by_node = collections.Counter(), collections.Counter(), {}
    walls = []
    with tf.compat.v1.Session(graph=graph, config=config) as session:
        feed = {input_name: image}
        for _ in range(warmup):
            session.run(output_names, feed)
        options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
        for _ in range(repeats):
            metadata = tf.compat.v1.RunMetadata()
            start = time.perf_counter()
            session.run(output_names, feed, options=options, run_metadata=metadata)
            walls.append(time.perf_counter() - start)
            for device in metadata.step_stats.dev_stats:
                for node in device.node_stats:
                    op = _op_type(node.timeline_label)
                    if op is None:
                        continue
                    micros = node.all_end_rel_micros
                    by_type[op] += micros
                    by_part[_part(node.node_name)] += micros
                    key = (op, node.node_name)
                    by_node[key] = by_node.get(key, 0) + micros
    scale = 1.0 / (1000.0 * repeats)
    total = sum(by_type.values()) * scale
    return {"preset": preset, "size": size, "precision": precision, "detections": detections or "all",
            "wall_ms": round(1000 * statistics.median(walls), 1), "op_ms": round(total, 1),
            "gflop": round(gflop, 2),
            "by_type": [{"op": op, "ms": round(us * scale, 2),
                         "share": round(us * scale / total, 4)}
                        for op, us in by_type.most_common()],
            "by_part": [{"part": part, "ms": round(us * scale, 2),
                         "share": round(us * scale / total, 4)}
                        for part, us in by_part.most_common()],
            "top_nodes": [{"op": op, "node": name, "ms": round(us * scale, 2)}
                          for (op, name), us in sorted(by_node.items(),
                                                       key=lambda item: -item[1])[:60]]}


def _op_type(label):
    """'name = OpType(inputs)' -> 'OpType'; None for labels without one (the executor's own
    bookkeeping entries)."""
    found = re.match(r"[^=]+= (\w+)\(", label or "")
    return found.group(1) if found else None


def _part(node_name):
    """The model part of a node: the first PARTS name among its scopes (Keras suffixes
    scopes with "_1", "_2" when a layer is called again)."""
    for scope in node_name.split("/"):
        name = re.sub(r"_\d+$", "", scope)
        if name in PARTS:
            return name
    return "other"


def markdown(result, top):
    """The tables of `run`'s result, as markdown lines."""
    lines = [f"{result['precision']}, {result['size']} px, detections {result['detections']}: "
             f"wall {result['wall_ms']} ms per call (traced), op time {result['op_ms']} ms, "
             f"{result['gflop']} GFLOP", ""]
    lines += table(["op type", "ms", "share"],
                   [[r["op"], r["ms"], f"{100 * r['share']:.1f}%"]
                    for r in result["by_type"][:top]])
    lines += [""] + table(["part", "ms", "share"],
                          [[r["part"], r["ms"], f"{100 * r['share']:.1f}%"]
                           for r in result["by_part"]])
    lines += [""] + table(["op", "node", "ms"],
                          [[r["op"], r["node"][-90:], r["ms"]]
                           for r in result["top_nodes"][:top]])
    return lines


def main(args):
    import json  # noqa: PLC0415
    from benchmarks import threads  # noqa: PLC0415
    threads.pin_tensorflow_threads(args.threads)
    result = run(args.size, args.precision, args.detections, args.threads, args.warmup,
                     args.repeats, args.preset)
    print("\n".join(markdown(result, args.top)))
    if args.out:
        write_text_atomic(args.out, json.dumps(result, indent=1) + "\n")
    return 0
