"""The suite: speed and memory of Mask R-CNN (R50-FPN) on this machine, benchmark by benchmark.

    python -m benchmarks all          # every benchmark at full size: an hour or more on 2 cores
    python -m benchmarks inference --sizes 512 --repeats 2
    python -m benchmarks all --only inference,stages --repeats 3
    python -m benchmarks all --smoke --out /tmp/b/results.json --results_md /tmp/b/RESULTS.md

The benchmarks are benchmarks/registry.py's SUITE (`python -m benchmarks --list` names
them). Each runs in its own child process (benchmarks/worker.py), so a crash in one is
reported and the rest still run, and each has its own peak resident memory.

Settings shared by all: random weights kept numerically sane (benchmarks/random_init.py),
box score threshold 0 (so all 100 detections run the mask head), images resized to exactly
the benchmark size, TF and torch pinned to --threads threads, --warmup untimed runs then
--repeats timed ones. --precisions are Keras dtype policies (mrcnn_tf.training.precision);
a mixed_bfloat16 row on a CPU without AVX512_BF16 / AMX-BF16 still runs and says so
("bf16_hardware": false). Results go to --out (JSON) and to a section of --results_md
between the markers of benchmarks/report.py; the rest of that file is left as it is. A run
of some benchmarks (one alone, or --only) keeps the other benchmarks' entries already in
--out. `--smoke` runs every benchmark on a tiny model at 64 px (about 80 s with --jobs 2 on 2
idle cores, ~150 CPU-seconds in all), and never writes over benchmarks/results.json or
RESULTS.md unless --out / --results_md say so.
"""

import concurrent.futures
import json
import os
import shutil
import sys
import tempfile
import time

from benchmarks import machine, results_files, suite_settings, worker
from benchmarks.registry import SUITE_NAMES, UsageError

# Start order with --jobs > 1 (roughly by smoke-run duration); results keep SUITE_NAMES order.
LONGEST_FIRST = ("export", "train_step", "scaling_instances", "torchvision", "flops", "stages",
                 "inference", "scaling_size", "scaling_batch", "scaling_proposals",
                 "input_pipeline", "ceilings")


def run(names, spec, workdir, jobs):
    """Runs each benchmark of `names` in its own process, `jobs` at a time, printing one line
    per benchmark as it ends. Returns {name: entry} in SUITE_NAMES order, each entry the
    worker's result (status, results or reason or error, process) with its end time and peak
    RSS."""
    def one(name):
        print(f"[benchmarks] {name}: started", flush=True)
        entry = worker.run_worker(name, spec, workdir, spec["timeout_s"])
        entry["finished_at"] = results_files.now()
        # The worker's own record of its peak survives its per-row resets; wait4's is the
        # fallback for a process that died before writing one (and includes its children).
        entry["peak_rss_mb"] = entry.get("process_peak_rss_mb") or entry["process"][
            "peak_rss_mb"]
        detail = (entry.get("reason") or entry.get("error") or "").splitlines()
        detail = detail[0] if detail else ""
        print(f"[benchmarks] {name}: {entry['status']} in {entry['process']['wall_s']} s, peak "
              f"RSS {entry['peak_rss_mb']} MB {detail}".rstrip(), flush=True)
        return name, entry

    # Longest first, so that with several jobs the slow ones do not start last.
    order = sorted(names, key=lambda n: LONGEST_FIRST.index(n))
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        done = dict(pool.map(one, order))
    return {name: done[name] for name in SUITE_NAMES if name in done}


def main(args, names):
    """Runs benchmarks `names` with the suite's flags `args` (benchmarks/suite_flags.py; its
    command line in args.command) and writes the results JSON and markdown. Returns the exit
    status: 0, or 1 when a benchmark failed. Raises UsageError for flags that do not fit the
    model, or --markdown_only without an earlier run's JSON."""
    try:
        spec = suite_settings.resolve_spec(args)
    except ValueError as error:
        raise UsageError(str(error)) from error
    out_path, results_md = results_files.default_paths(args)
    if args.markdown_only:
        rewrite_markdown(out_path, results_md)
        return 0
    description = machine.cpu_description()
    description["load_average_before"] = machine.load_average()
    workdir = args.logs or tempfile.mkdtemp(prefix="mrcnn-bench-")
    os.makedirs(workdir, exist_ok=True)
    start = time.perf_counter()
    try:
        entries = run(names, spec, workdir, args.jobs)
    finally:
        if args.logs is None:
            shutil.rmtree(workdir, ignore_errors=True)
    for entry in entries.values():
        entry["command"] = args.command
        entry["smoke"] = spec["smoke"]
    description["load_average_after"] = machine.load_average()
    every = set(names) == set(SUITE_NAMES)
    results = {
        "schema": 1, "generated_at": results_files.now(), "command": args.command,
        "smoke": spec["smoke"], "wall_s": round(time.perf_counter() - start, 1),
        "machine": description, "versions": machine.package_versions(), "settings": spec,
        "benchmarks": entries if every else results_files.merge_previous(out_path, entries,
                                                                         spec["smoke"]),
    }
    results_files.write_text_atomic(out_path, json.dumps(results, indent=1) + "\n")
    results_files.write_markdown(results, results_md)
    failed = [n for n, e in entries.items() if e["status"] == "error"]
    print(f"[benchmarks] {len(entries)} benchmark(s) in {results['wall_s']} s; results "
          f"{out_path}, markdown {results_md}"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""), flush=True)
    for name in failed:
        print(f"--- {name}: {entries[name].get('error')}\n{entries[name].get('log_tail', '')}",
              file=sys.stderr)
    return 1 if failed else 0


def rewrite_markdown(out_path, results_md):
    """--markdown_only: the section of `results_md` from the JSON at `out_path` (UsageError
    when there is no such JSON)."""
    if not os.path.exists(out_path):
        raise UsageError(f"--markdown_only: --out {out_path} does not exist; expected the "
                         "results JSON of an earlier run")
    with open(out_path) as f:
        results_files.write_markdown(json.load(f), results_md)
    print(f"[benchmarks] wrote the section of {results_md} from {out_path}", flush=True)
