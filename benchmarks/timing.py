"""Timing: latency statistics of repeated calls, the timed row every benchmark reports (its
statistics and the peak RSS of its runs), and how a time grows with a variable.

Imports no framework: the callables timed bring their own.
"""

import math
import time

from benchmarks import memory


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


def sweep_result(rows, variable):
    """The result of a scaling sweep: its timed rows, the variable swept (a key of every
    row) and the exponent of the median time's growth with it (`growth_exponent`)."""
    return {"rows": rows, "variable": variable,
            "exponent": growth_exponent([r[variable] for r in rows],
                                        [r["median_ms"] for r in rows])}
