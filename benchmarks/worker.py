"""One benchmark in a child process of its own, so that a crash is reported instead of ending
the run and the process's peak memory is that benchmark's alone.

`run_worker` (the parent's side) writes the spec and starts

    python -m benchmarks --worker NAME SPEC.json RESULT.json

whose `main` (the child's side) runs job NAME and writes {"status": "ok", "results": ...},
{"status": "skipped", "reason": ...} or {"status": "error", "error": ..., "traceback": ...},
plus the process's memory: RSS after imports and its peak. A crash that kills the process
(segfault, out of memory) leaves no result file; the parent reports that from the exit status.

Only the framework the job needs is imported: the TFLite runtime runs without TensorFlow, the
torchvision comparison without TensorFlow, so each one's memory is its own.
"""

import importlib
import json
import os
import sys
import traceback

from benchmarks import memory, processes, threads
from benchmarks.results_files import write_text_atomic
from benchmarks.registry import SUITE

COMMAND = "--worker"  # the hidden first argument of `python -m benchmarks` in a child
# name -> (module, function, framework): the suite's benchmarks, and the jobs that tasks run
# in processes of their own. TensorFlow's threads are pinned here, before the module is
# imported; torch's by the job itself, once it knows torch exists.
JOBS = {benchmark.name: (benchmark.module, "run", benchmark.framework) for benchmark in SUITE}
JOBS.update({
    # The export benchmark's exported files, each timed by its own runtime.
    "runtime_savedmodel": ("benchmarks.tasks.export", "run_savedmodel", "tensorflow"),
    "runtime_tflite": ("benchmarks.tasks.export_tflite_runtime", "run", None),
    # The keypoints task: Keypoint R-CNN, ours and torchvision's, one size per process.
    "keypoints_mrcnn_tf": ("benchmarks.tasks.keypoints_mrcnn_tf", "run", "tensorflow"),
    "keypoints_torchvision": ("benchmarks.tasks.keypoints_torchvision", "run", "torch"),
    # The coco_eval_backends task: one COCOeval backend's peak memory, no framework.
    "coco_eval_memory": ("benchmarks.coco_eval_timing", "measure_memory", None),
})


class Skipped(Exception):
    """Raised by a job that cannot run here (a missing optional package); the message is the
    reason recorded in the results."""


class PartialFailure(Exception):
    """Raised by a job when some of its parts failed: it is reported as an error, and the
    parts that worked are kept in the result (`results`)."""

    def __init__(self, message, results):
        super().__init__(message)
        self.results = results


# -- the parent's side -----------------------------------------------------------------------
def run_worker(name, spec, workdir, timeout_s, extra_env=None):
    """Runs job `name` in a child process.

    The spec goes to `workdir/NAME.spec.json`, the child writes `workdir/NAME.result.json`
    and its output to `workdir/NAME.log`. `extra_env` adds to the child's environment.

    Returns: the child's result dict (status "ok" / "skipped" / "error", results or reason or
    error) with "process" = {returncode, timed_out, wall_s, peak_rss_mb} and, on error, the
    log's last lines in "log_tail". A child that crashed or was killed before writing its
    result (segfault, out of memory, timeout) comes back as an error saying so.
    """
    spec_path = os.path.join(workdir, f"{name}.spec.json")
    result_path = os.path.join(workdir, f"{name}.result.json")
    log_path = os.path.join(workdir, f"{name}.log")
    write_text_atomic(spec_path, json.dumps(spec))
    if os.path.exists(result_path):
        os.remove(result_path)
    env = processes.child_env(**threads.thread_env(spec["threads"], spec.get("omp_wait_policy")),
                              **(extra_env or {}))
    process = processes.run_child(
        processes.module_command(COMMAND, name, spec_path, result_path), timeout_s, log_path,
        env=env)
    result = None
    if os.path.exists(result_path):
        with open(result_path) as f:
            result = json.load(f)
    if result is None:
        why = (f"timed out after {timeout_s} s" if process["timed_out"] else
               f"exited with code {process['returncode']} without writing a result")
        result = {"status": "error", "error": why}
    if result["status"] == "error":
        result["log_tail"] = processes.log_tail(log_path)
    result["process"] = process
    return result


# -- the child's side ------------------------------------------------------------------------
def load(name):
    """(module name, function name, framework) of job `name`; exits naming the known jobs
    when there is no such one."""
    if name not in JOBS:
        raise SystemExit(f"worker: unknown benchmark {name!r}; expected one of {sorted(JOBS)}")
    return JOBS[name]


def run(name, spec):
    """Runs job `name` with `spec`; returns the result dict (never raises)."""
    module_name, function_name, framework = load(name)
    try:
        if framework == "tensorflow":
            threads.pin_tensorflow_threads(spec["threads"])
        module = importlib.import_module(module_name)
        rss_before_run = memory.current_rss_mb()
        results = getattr(module, function_name)(spec)
        status = {"status": "ok", "results": results}
    except Exception as error:  # noqa: BLE001 (every failure is reported, not raised)
        if isinstance(error, Skipped):
            status = {"status": "skipped", "reason": str(error)}
        elif isinstance(error, PartialFailure):
            status = {"status": "error", "error": str(error), "results": error.results,
                      "traceback": traceback.format_exc()}
        else:
            status = {"status": "error", "error": f"{type(error).__name__}: {error}",
                      "traceback": traceback.format_exc()}
        rss_before_run = None
    # RSS once the job's module is imported, with its framework (TF for most, torch for the
    # torchvision ones, neither for the TFLite runtime).
    status["rss_before_run_mb"] = (None if rss_before_run is None
                                   else round(rss_before_run, 1))
    status["process_peak_rss_mb"] = round(memory.process_peak_rss_mb(), 1)
    return status


def main(argv):
    """The child: argv = [NAME, SPEC.json, RESULT.json]. Returns the exit status."""
    if len(argv) != 3:
        raise SystemExit(f"usage: python -m benchmarks {COMMAND} NAME SPEC.json RESULT.json")
    name, spec_path, result_path = argv
    with open(spec_path) as f:
        spec = json.load(f)
    result = run(name, spec)
    write_text_atomic(result_path, json.dumps(result, indent=1, default=float))
    if result["status"] == "error":
        print(result["traceback"], file=sys.stderr)
        return 1
    return 0
