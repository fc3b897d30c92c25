"""Runs one benchmark in this process and writes its result as JSON (used by benchmarks/run.py).

    python benchmarks/worker.py NAME SPEC.json RESULT.json

The result file holds {"status": "ok", "results": ...}, {"status": "skipped", "reason": ...}
or {"status": "error", "error": ..., "traceback": ...}, plus this process's memory: RSS after
imports and its peak. A crash that kills the process (segfault, out of memory) leaves no
result file; the parent reports that from the exit status.

Only the framework the benchmark needs is imported: the TFLite runtime runs without
TensorFlow, the torchvision comparison without TensorFlow, so each one's memory is its own.
"""

import importlib
import json
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import harness, memory  # noqa: E402

# name -> (module, function, framework). TensorFlow's threads are pinned here, before the
# module is imported; torch's by the torchvision benchmark itself, once it knows torch exists.
BENCHMARKS = {
    "runtime_tflite": ("benchmarks.litert_runtime", "bench_runtime_tflite", None),
    "torchvision": ("benchmarks.torchvision_benchmark", "bench_torchvision", "torch"),
    # benchmarks/keypoints.py: Keypoint R-CNN, ours and torchvision's, one size per process.
    "keypoints_mrcnn_tf": ("benchmarks.keypoints", "bench_keypoints_mrcnn_tf", "tensorflow"),
    "keypoints_torchvision": ("benchmarks.keypoints", "bench_keypoints_torchvision", "torch"),
}
TF_BENCHMARKS = ("inference", "stages", "train_step", "input_pipeline", "export",
                 "runtime_savedmodel", "flops", "scaling_size", "scaling_batch",
                 "scaling_instances", "scaling_proposals")
BENCHMARKS.update({name: ("benchmarks.tasks", "bench_" + name, "tensorflow")
                   for name in TF_BENCHMARKS})


def load(name):
    """(module name, function name, framework) of benchmark `name`; exits naming the known
    benchmarks when there is no such one."""
    if name not in BENCHMARKS:
        raise SystemExit(f"worker.py: unknown benchmark {name!r}; expected one of "
                         f"{sorted(BENCHMARKS)}")
    module, function, framework = BENCHMARKS[name]
    return module, function, framework


def run(name, spec):
    """Runs benchmark `name` with `spec`; returns the result dict (never raises)."""
    module_name, function_name, framework = load(name)
    try:
        if framework == "tensorflow":
            harness.pin_tensorflow_threads(spec["threads"])
        module = importlib.import_module(module_name)
        rss_before_run = memory.current_rss_mb()
        results = getattr(module, function_name)(spec)
        status = {"status": "ok", "results": results}
    except Exception as error:  # noqa: BLE001 (every failure is reported, not raised)
        if isinstance(error, harness.Skipped):
            status = {"status": "skipped", "reason": str(error)}
        elif isinstance(error, harness.PartialFailure):
            status = {"status": "error", "error": str(error), "results": error.results,
                      "traceback": traceback.format_exc()}
        else:
            status = {"status": "error", "error": f"{type(error).__name__}: {error}",
                      "traceback": traceback.format_exc()}
        rss_before_run = None
    # RSS once the benchmark's module is imported (TF for most; torch is imported inside its
    # benchmark, so the torchvision figure is before torch).
    status["rss_before_run_mb"] = (None if rss_before_run is None
                                   else round(rss_before_run, 1))
    status["process_peak_rss_mb"] = round(memory.process_peak_rss_mb(), 1)
    return status


def main(argv):
    if len(argv) != 4:
        raise SystemExit("usage: python benchmarks/worker.py NAME SPEC.json RESULT.json")
    name, spec_path, result_path = argv[1:]
    with open(spec_path) as f:
        spec = json.load(f)
    result = run(name, spec)
    harness.write_text_atomic(result_path, json.dumps(result, indent=1, default=float))
    if result["status"] == "error":
        print(result["traceback"], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
