"""What every benchmark shares: thread pinning, timing statistics and timed rows, the machine
description, atomic file writes, and running one benchmark in a child process with its own
peak memory.

Nothing here imports TensorFlow or torch at module level: the parent process of
`benchmarks/run.py` stays small, and each child pays only for the framework it measures.
"""

import importlib.metadata
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time

from benchmarks import memory

# CPU flags worth naming in a report: they decide which kernels oneDNN / XNNPACK can use.
INTERESTING_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                         "amx_bf16", "amx_int8", "amx_tile")
VERSIONED_PACKAGES = ("tensorflow", "keras", "numpy", "ai-edge-litert", "torch", "torchvision",
                      "pycocotools")


class Skipped(Exception):
    """Raised by a benchmark that cannot run here (a missing optional package); the message
    is the reason recorded in the results."""


class PartialFailure(Exception):
    """Raised by a benchmark when some of its parts failed: it is reported as an error, and
    the parts that worked are kept in the result (`results`)."""

    def __init__(self, message, results):
        super().__init__(message)
        self.results = results


# -- threads ---------------------------------------------------------------------------------
def thread_env(threads, omp_wait_policy=None):
    """Environment variables that cap the thread pools of TF, oneDNN/OpenMP and torch.

    Set in each child's environment before it imports anything, because TF and torch read
    some of them only once, at start-up.

    omp_wait_policy: None leaves OpenMP's (torch's) default; "PASSIVE" makes idle OpenMP
      threads sleep instead of spinning. On a CPU shared with other work, spinning threads
      fight the other processes for the cores: on a 2-core machine under load, torchvision's
      64 px smoke inference took 0.5-2.4 s with the default and 0.09 s with PASSIVE.
    """
    n = str(int(threads))
    env = {"TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": n, "OMP_NUM_THREADS": n,
           "MKL_NUM_THREADS": n, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if omp_wait_policy:
        env["OMP_WAIT_POLICY"] = omp_wait_policy
    return env


def pin_tensorflow_threads(threads):
    """Pins TF's intra- and inter-op pools to `threads` (must run before any TF op)."""
    import tensorflow as tf  # noqa: PLC0415 (TF only in the children that time it)
    tf.config.threading.set_intra_op_parallelism_threads(int(threads))
    tf.config.threading.set_inter_op_parallelism_threads(int(threads))


def pin_torch_threads(threads):
    """Pins torch's intra- and inter-op pools to `threads` (before any torch op)."""
    import torch  # noqa: PLC0415
    torch.set_num_threads(int(threads))
    try:
        torch.set_num_interop_threads(int(threads))
    except RuntimeError:
        pass  # already fixed by an earlier parallel op in this process: the intra cap stands


# -- timing ----------------------------------------------------------------------------------
def summarize(seconds):
    """Latency statistics of a list of per-run times in seconds.

    Returns dict: median_ms, p90_ms (linear interpolation between order statistics), min_ms,
    mean_ms, runs, and times_ms (every run, in order, for anyone who wants the spread).
    """
    if not seconds:
        raise ValueError("summarize: expected at least one timed run, got none")
    ms = sorted(1000.0 * s for s in seconds)
    return {"median_ms": round(_percentile(ms, 50), 3), "p90_ms": round(_percentile(ms, 90), 3),
            "min_ms": round(ms[0], 3), "mean_ms": round(sum(ms) / len(ms), 3),
            "runs": len(ms), "times_ms": [round(1000.0 * s, 3) for s in seconds]}


def _percentile(sorted_values, q):
    """q-th percentile of an ascending list, interpolating linearly (NumPy's default)."""
    position = (len(sorted_values) - 1) * q / 100.0
    low = int(math.floor(position))
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def time_calls(fn, warmup, repeats):
    """Runs `fn()` `warmup` times untimed (tracing, allocator and cache warm-up), then
    `repeats` times timed. `fn` must block until its work is done (fetch a small output).

    Returns the `summarize` dict plus "first_ms", the first warm-up call (trace + run).
    """
    if repeats < 1:
        raise ValueError(f"--repeats={repeats}: expected >= 1 timed run")
    first = None
    for _ in range(max(warmup, 0)):
        start = time.perf_counter()
        fn()
        first = time.perf_counter() - start if first is None else first
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    result = summarize(seconds)
    result["first_ms"] = None if first is None else round(1000.0 * first, 3)
    return result


def timed_row(fn, spec, **labels):
    """Times `fn` (see `time_calls`) with spec's "warmup" and "repeats" under a
    `memory.PeakMemory`. Returns the row: `labels`, the `time_calls` statistics and the peak
    RSS of the timed calls (peak_rss_mb, ...)."""
    with memory.PeakMemory() as peak:
        stats = time_calls(fn, spec["warmup"], spec["repeats"])
    row = dict(labels)
    row.update(stats)
    row.update(peak.as_dict())
    return row


def growth_exponent(xs, ys):
    """Least-squares slope of log(y) against log(x): y grows like x ** slope.

    Returns None when fewer than two points have positive values.
    """
    points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y and y > 0]
    if len(points) < 2:
        return None
    mean_x = sum(p[0] for p in points) / len(points)
    mean_y = sum(p[1] for p in points) / len(points)
    var = sum((p[0] - mean_x) ** 2 for p in points)
    if var == 0:
        return None
    return round(sum((p[0] - mean_x) * (p[1] - mean_y) for p in points) / var, 3)


# -- the machine -----------------------------------------------------------------------------
def _cpuinfo():
    """(model name or None, set of instruction-set flags) of the first CPU in /proc/cpuinfo;
    (None, empty set) where it cannot be read (not Linux)."""
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model is None:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, flags


def bf16_hardware(flags=None):
    """Whether the CPU has bfloat16 arithmetic (AVX512_BF16 or AMX-BF16), which oneDNN needs to
    run mixed_bfloat16 faster than float32; without it bf16 is converted in software, slower.

    flags: a set of /proc/cpuinfo flags (default: this machine's).
    """
    flags = _cpuinfo()[1] if flags is None else flags
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def cpu_description():
    """CPU model name, logical CPU count, usable cores and notable instruction-set flags."""
    model, flags = _cpuinfo()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model or platform.processor() or platform.machine(),
            "logical_cpus": os.cpu_count(), "usable_cpus": usable,
            "flags": [f for f in INTERESTING_CPU_FLAGS if f in flags],
            "bf16_hardware": bf16_hardware(flags),
            "memory_gb": _memory_total_gb(), "machine": platform.machine(),
            "os": f"{platform.system()} {platform.release()}"}


def _memory_total_gb():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024.0 / 1024.0, 1)
    except OSError:
        return None
    return None


def package_versions():
    """Python and the installed versions of the packages that matter here (None: absent).

    Read from the installed metadata, so no framework is imported just to name its version.
    """
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def load_average():
    """The 1, 5 and 15 minute load averages (other work on the CPU skews timings)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# -- files -----------------------------------------------------------------------------------
def write_text_atomic(path, text):
    """Writes `text` to `path` (creating its folder) with `mrcnn_tf.io_utils.atomic_write`, so
    a reader (or a crash) never sees a half-written file."""
    # Imported here, not at the top: io_utils imports OpenCV (~30 MB resident), which would
    # otherwise count in the memory of every benchmark process, the TFLite runtime's included.
    from mrcnn_tf.io_utils import atomic_write  # noqa: PLC0415
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "w") as f:
        f.write(text)


# -- child processes -------------------------------------------------------------------------
def run_child(argv, timeout_s, log_path, env=None):
    """Runs `argv` in a child process and returns how it ended and its peak memory.

    The child's stdout and stderr go to `log_path`. The child is reaped with os.wait4, whose
    rusage gives that child's own peak RSS (its own reaped children folded in), which
    Popen.wait would throw away.

    Returns dict: returncode (negative: killed by that signal), timed_out, wall_s, cpu_s
    (user + system time of the child and its reaped children), peak_rss_mb (see memory.py:
    it also counts the parent's pages when the parent is large, so prefer the child's own).
    """
    start = time.perf_counter()
    with open(log_path, "w") as log:
        # A new session so that a timeout can end the child's own children too, and nothing
        # else: the group id is the child's pid.
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        timed_out = False
        while True:
            pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > timeout_s:
                timed_out = True
                os.killpg(process.pid, signal.SIGKILL)
                pid, status, rusage = os.wait4(process.pid, 0)
                break
            time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)  # Popen must not reap it again
    return {"returncode": process.returncode, "timed_out": timed_out,
            "wall_s": round(time.perf_counter() - start, 2),
            "cpu_s": round(rusage.ru_utime + rusage.ru_stime, 2),
            "peak_rss_mb": round(memory.child_maxrss_mb(rusage), 1)}


def log_tail(log_path, lines=25):
    """The last `lines` lines of a child's log (the traceback of a crash, usually)."""
    try:
        with open(log_path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def python_command(script, *args):
    """[sys.executable, script, *args] with unbuffered output, for child processes."""
    return [sys.executable, "-u", script, *[str(a) for a in args]]


def run_worker(name, spec, workdir, timeout_s, extra_env=None):
    """Runs benchmark `name` of benchmarks/worker.py in a child process.

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
    worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
    env = dict(os.environ, **thread_env(spec["threads"], spec.get("omp_wait_policy")),
               **(extra_env or {}))
    process = run_child(python_command(worker, name, spec_path, result_path), timeout_s,
                        log_path, env=env)
    result = None
    if os.path.exists(result_path):
        with open(result_path) as f:
            result = json.load(f)
    if result is None:
        why = (f"timed out after {timeout_s} s" if process["timed_out"] else
               f"exited with code {process['returncode']} without writing a result")
        result = {"status": "error", "error": why}
    if result["status"] == "error":
        result["log_tail"] = log_tail(log_path)
    result["process"] = process
    return result
