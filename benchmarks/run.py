"""Speed and memory of Mask R-CNN (R50-FPN) on this machine: one command for every benchmark.

    python benchmarks/run.py          # everything at full size: an hour or more on 2 cores
    python benchmarks/run.py --only inference --sizes 512 --repeats 2
    python benchmarks/run.py --smoke --out /tmp/b/results.json --results_md /tmp/b/RESULTS.md

Benchmarks (each in its own child process, so a crash in one is reported and the rest still
run, and each has its own peak resident memory):

  flops              per-stage FLOPs (analytic), checked against the R50-FPN reference numbers
  inference          model(images) + mask paste: median/p90 latency, batch 1 and 4, GFLOP/s,
                     per --precisions; each mixed precision's detections against float32's
  stages             backbone+FPN, RPN+proposals, box head+detection, mask head+paste,
                     per --precisions
  train_step         one SGD step, batch 2, 3 objects per image, per --precisions
  input_pipeline     tf.data images/s from a COCO-format folder and from TFRecords
  export             SavedModel and TFLite (float32, float16, int8 dynamic-range; full-int8
                     is reported unsupported, mrcnn_tf's exporter lacks it): latency, RSS
  scaling_size       inference time against image size (512, 768, 1024, 1333)
  scaling_batch      inference time against batch size
  scaling_instances  training step time against objects per image (1, 10, 50, 100)
  scaling_proposals  inference time against RPN proposals per image
  torchvision        torchvision's maskrcnn_resnet50_fpn, same settings (skipped without torch)

Settings shared by all: random weights kept numerically sane (benchmarks/random_init.py),
box score threshold 0 (so all 100 detections run the mask head), images resized to exactly
the benchmark size, TF and torch pinned to --threads threads, --warmup untimed runs then
--repeats timed ones. --precisions are Keras dtype policies (mrcnn_tf.training.precision);
a mixed_bfloat16 row on a CPU without AVX512_BF16 / AMX-BF16 still runs and says so
("bf16_hardware": false). Results go to --out (JSON) and to a section of --results_md
between `<!-- benchmarks/run.py begin -->` and `... end -->` markers; the rest of that file
is left as it is. With --only, the other benchmarks' entries already in --out are kept.
`--smoke` runs every benchmark on a tiny model at 64 px (about 80 s with --jobs 2 on 2 idle
cores, ~150 CPU-seconds in all), and never writes over benchmarks/results.json or RESULTS.md
unless --out / --results_md say so.
"""

import argparse
import concurrent.futures
import datetime
import json
import os
import shlex
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import configs, harness, report  # noqa: E402
from mrcnn_tf.training import cpu_support  # noqa: E402  (no TensorFlow in this process)

BENCHMARKS = ("flops", "inference", "stages", "train_step", "input_pipeline", "export",
              "scaling_size", "scaling_batch", "scaling_instances", "scaling_proposals",
              "torchvision")
# Start order with --jobs > 1 (roughly by smoke-run duration); results keep BENCHMARKS order.
LONGEST_FIRST = ("export", "train_step", "scaling_instances", "torchvision", "flops", "stages",
                 "inference", "scaling_size", "scaling_batch", "scaling_proposals",
                 "input_pipeline")
# The Keras dtype policies of mrcnn_tf.training.precision.POLICIES, spelled out because
# importing that module imports TensorFlow, which this parent process never does.
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
DEFAULT_PRECISIONS = ["float32", "mixed_bfloat16"]
# The benchmarks that give one row per --precisions policy.
PRECISION_BENCHMARKS = ("inference", "stages", "train_step")
DEFAULT_OUT = os.path.join(REPO, "benchmarks", "results.json")
DEFAULT_RESULTS_MD = os.path.join(REPO, "benchmarks", "RESULTS.md")

# Full size: the R50-FPN settings. Smoke: a shapes_tiny-sized model that exercises the
# same code paths in seconds.
FULL = {
    "model": {"preset": "coco_r50_fpn", "overrides": {}},
    "sizes": [512, 1024], "batches": [1, 4], "warmup": 1, "repeats": 5, "timeout_s": 3600,
    "train": {"batch": 2, "instances": 3},
    "input_pipeline": {"preset": "coco_r50_fpn", "overrides": {}, "image_size": 640,
                       "num_images": 48, "num_shards": 4, "batch": 2, "batches": 20},
    "scaling": {"sizes": [512, 768, 1024, 1333], "batches": [1, 2, 4, 8],
                "instances": [1, 10, 50, 100], "proposals": [250, 500, 1000, 2000]},
    "torchvision": {"kwargs": {}},
}
SMOKE = {
    "model": {"preset": "shapes_tiny", "overrides": {
        "fpn_channels": 32, "box_head_fc_dim": 64, "mask_head_conv_dim": 32,
        "detections_per_image": 10, "rpn_pre_nms_topk_test": 100, "rpn_post_nms_topk_test": 50}},
    "sizes": [64], "batches": [1, 2], "warmup": 1, "repeats": 2, "timeout_s": 300,
    "train": {"batch": 2, "instances": 3},
    "input_pipeline": {"preset": "shapes_tiny", "overrides": {"image_min_size": 64,
                                                               "image_max_size": 64},
                       "image_size": 64, "num_images": 8, "num_shards": 2, "batch": 2,
                       "batches": 3},
    "scaling": {"sizes": [64, 96], "batches": [1, 2], "instances": [1, 3],
                "proposals": [25, 50]},
    # torchvision's model is always R50-FPN: few proposals and masks keep it quick at 64 px.
    "torchvision": {"kwargs": {"rpn_pre_nms_top_n_test": 50, "rpn_post_nms_top_n_test": 10,
                               "box_detections_per_img": 2}},
}


# -- flags -----------------------------------------------------------------------------------
def _int_list(flag):
    """argparse type: '512,1024' -> [512, 1024], naming `flag` when a value is not a positive
    integer."""
    def parse(text):
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            values = []
        if not values or min(values) < 1:
            raise argparse.ArgumentTypeError(
                f"{flag}={text!r}: expected comma-separated positive integers, e.g. 512,1024")
        return values
    return parse


def _policy_list(text):
    """argparse type of --precisions: 'float32,mixed_bfloat16' -> a list of POLICIES, each
    once, in the order given."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in values if v not in POLICIES]
    if unknown or not values:
        raise argparse.ArgumentTypeError(
            f"--precisions={text!r}: expected comma-separated Keras dtype policies from "
            f"{', '.join(POLICIES)}")
    return list(dict.fromkeys(values))


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Benchmarks: " + ", ".join(BENCHMARKS))
    parser.add_argument("--smoke", action="store_true",
                        help="every benchmark on a tiny model at 64 px (checks the harness)")
    parser.add_argument("--only", default=None,
                        help="comma-separated benchmarks to run (default: all)")
    parser.add_argument("--out", default=None,
                        help=f"results JSON (default {os.path.relpath(DEFAULT_OUT)}; with "
                             "--smoke, a temporary folder)")
    parser.add_argument("--results_md", default=None,
                        help=f"markdown file whose section to replace (default "
                             f"{os.path.relpath(DEFAULT_RESULTS_MD)}; with --smoke, next to "
                             "--out)")
    parser.add_argument("--sizes", type=_int_list("--sizes"), default=None,
                        help="square image sizes of inference/stages/train/export/flops "
                             "(default 512,1024; smoke 64)")
    parser.add_argument("--batches", type=_int_list("--batches"), default=None,
                        help="inference batch sizes (default 1,4; smoke 1,2)")
    parser.add_argument("--export_sizes", type=_int_list("--export_sizes"), default=None,
                        help="sizes of the exported files (default: --sizes)")
    parser.add_argument("--scaling_sizes", type=_int_list("--scaling_sizes"), default=None,
                        help="scaling_size image sizes (default 512,768,1024,1333; smoke 64,96)")
    parser.add_argument("--scaling_batches", type=_int_list("--scaling_batches"), default=None,
                        help="scaling_batch batch sizes at the first --sizes size (default "
                             "1,2,4,8; smoke 1,2)")
    parser.add_argument("--scaling_instances", type=_int_list("--scaling_instances"),
                        default=None,
                        help="scaling_instances objects per training image (default "
                             "1,10,50,100; smoke 1,3)")
    parser.add_argument("--scaling_proposals", type=_int_list("--scaling_proposals"),
                        default=None,
                        help="scaling_proposals RPN proposals per image (default "
                             "250,500,1000,2000; smoke 25,50)")
    parser.add_argument("--precisions", type=_policy_list, default=None,
                        help="Keras dtype policies of inference, stages and train_step, one "
                             f"row each (default {','.join(DEFAULT_PRECISIONS)}; smoke the "
                             "same, stages float32 only)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs per row (default 5; smoke 2)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed runs before timing (default 1)")
    parser.add_argument("--threads", type=int, default=2,
                        help="TF intra/inter-op and torch threads (default 2)")
    parser.add_argument("--omp_wait_policy", choices=("PASSIVE", "ACTIVE", "default"),
                        default=None,
                        help="OMP_WAIT_POLICY of the benchmark processes (torch's OpenMP "
                             "threads): PASSIVE sleeps when idle, which a CPU shared with other "
                             "work needs; 'default' leaves the environment's (default: PASSIVE "
                             "with --smoke, else 'default')")
    parser.add_argument("--timeout", type=int, default=None,
                        help="seconds before a benchmark process is killed (default 3600; "
                             "smoke 300)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="benchmark processes at once (default 1; more only for --smoke, "
                             "since parallel runs share the CPU and skew timings)")
    parser.add_argument("--markdown_only", action="store_true",
                        help="run nothing: rewrite the --results_md section from the --out "
                             "JSON of an earlier run")
    parser.add_argument("--logs", default=None,
                        help="keep each benchmark's spec, result and log here (default: a "
                             "temporary folder, deleted; a failed benchmark's last log lines "
                             "are printed and kept in the JSON)")
    args = parser.parse_args(argv)
    _check_args(parser, args)
    return args


def _check_args(parser, args):
    """Flag values argparse cannot check alone; parser.error exits 2 with one line."""
    if args.only is not None:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BENCHMARKS]
        if unknown or not names:
            parser.error(f"--only={args.only!r}: unknown benchmark(s) {unknown}; expected a "
                         f"comma-separated subset of {', '.join(BENCHMARKS)}")
        args.only = [n for n in BENCHMARKS if n in names]
    for flag, value, lowest in (("--repeats", args.repeats, 1), ("--warmup", args.warmup, 0),
                                ("--threads", args.threads, 1), ("--timeout", args.timeout, 1),
                                ("--jobs", args.jobs, 1)):
        if value is not None and value < lowest:
            parser.error(f"{flag}={value}: expected an integer >= {lowest}")


# -- settings --------------------------------------------------------------------------------
def resolve_spec(args):
    """The settings every benchmark process gets: defaults of the mode, then the flags."""
    base = json.loads(json.dumps(SMOKE if args.smoke else FULL))  # deep copy
    spec = dict(base, smoke=bool(args.smoke), threads=args.threads)
    policy = args.omp_wait_policy or ("PASSIVE" if args.smoke else "default")
    # None: the children inherit OMP_WAIT_POLICY (or its absence) from this environment.
    spec["omp_wait_policy"] = None if policy == "default" else policy
    spec["omp_wait_policy_in_effect"] = spec["omp_wait_policy"] or os.environ.get(
        "OMP_WAIT_POLICY", "unset (OpenMP default)")
    for key in ("sizes", "batches", "repeats", "warmup"):
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    if args.timeout is not None:
        spec["timeout_s"] = args.timeout
    scaling = spec["scaling"]
    for key in ("sizes", "batches", "instances", "proposals"):
        value = getattr(args, f"scaling_{key}")
        if value is not None:
            scaling[key] = value
    # The single-size scaling sweeps run at the first benchmark size.
    scaling.update(batch_size_image=spec["sizes"][0], instances_image=spec["sizes"][0],
                   proposals_image=spec["sizes"][0])
    spec["export"] = {"sizes": args.export_sizes or spec["sizes"]}
    spec["precisions"], spec["precisions_left_out"] = _runnable(_precisions(args))
    # The R50-FPN reference FLOPs are checked even when the benchmarked model is another one.
    checked = set(spec["sizes"]) if spec["model"]["preset"] == "coco_r50_fpn" else set()
    spec["flops"] = {"reference_sizes": [512] if args.smoke else
                     sorted({512, 1024} - checked)}
    spec["model_facts"] = _model_facts(spec)
    spec["init"] = ("random weights (seed 0), made numerically sane: each residual block's last "
                    "norm scale zeroed (zero_init_residual) and the stem norm's statistics set "
                    "from one noise image (benchmarks/random_init.py); torchvision's model "
                    "likewise")
    return spec


def _precisions(args):
    """{benchmark: [policy, ...]} for PRECISION_BENCHMARKS: --precisions for each. A smoke run
    without the flag times stages in float32 only: inference already runs the mixed-precision
    model end to end and its backbone_fpn and mask_paste stage functions (the same-box
    comparison), and tracing all four stages of a second model would take the smoke run past
    about 90 s on 2 cores."""
    chosen = args.precisions or list(DEFAULT_PRECISIONS)
    spec = {name: list(chosen) for name in PRECISION_BENCHMARKS}
    if args.smoke and args.precisions is None:
        spec["stages"] = [p for p in chosen if p == "float32"] or chosen[:1]
    return spec


def _runnable(precisions):
    """({benchmark: [policy, ...]}, {policy: reason}): `precisions` without the mixed policies
    this machine's CPU kernels cannot compute (`mrcnn_tf.training.cpu_support`: oneDNN capped
    by ONEDNN_MAX_CPU_ISA below what TensorFlow routes to it), which would abort their rows,
    and why each was left out. float32 always stays."""
    left_out = {}
    for policy in sorted({p for policies in precisions.values() for p in policies}):
        reason = cpu_support.unsupported_reason(policy)
        if reason:
            left_out[policy] = reason
            print(f"[run.py] {policy} left out: {reason}", file=sys.stderr, flush=True)
    kept = {name: [p for p in policies if p not in left_out] or ["float32"]
            for name, policies in precisions.items()}
    return kept, left_out


def _model_facts(spec):
    """Detections and proposals per image of the benchmarked config, after checking the
    config at every size the benchmarks use (before any process starts, so a size that does
    not fit fails at once). Raises ValueError naming the size."""
    sizes = sorted(set(spec["sizes"]) | set(spec["export"]["sizes"])
                   | set(spec["scaling"]["sizes"]))
    for size in sizes:
        try:
            config = configs.model_config(spec, size)
        except ValueError as error:
            raise ValueError(f"image size {size} (--sizes / --export_sizes / --scaling_sizes): "
                             f"{error}") from error
    return {"name": config.name, "detections_per_image": config.detections_per_image,
            "proposals": config.rpn_post_nms_topk_test, "num_classes": config.num_classes,
            "backbone": config.backbone}


def default_paths(args):
    """(out JSON, results markdown). The checked-in benchmarks/results.json and RESULTS.md
    are the defaults only of a full-size run given neither --out nor --results_md: a smoke
    run defaults to a temporary folder, and an --out elsewhere takes its RESULTS.md along."""
    if args.smoke and args.out is None:
        out = os.path.join(tempfile.mkdtemp(prefix="mrcnn-bench-smoke-"), "results.json")
    else:
        out = args.out or DEFAULT_OUT
    if args.results_md is not None:
        return out, args.results_md
    if os.path.abspath(out) == DEFAULT_OUT and not args.smoke:
        return out, DEFAULT_RESULTS_MD
    return out, os.path.join(os.path.dirname(os.path.abspath(out)), "RESULTS.md")


# -- running ---------------------------------------------------------------------------------
def run_benchmarks(names, spec, workdir, jobs):
    """Runs each benchmark in its own process, `jobs` at a time, printing one line per
    benchmark as it ends. Returns {name: entry} in BENCHMARKS order."""
    def one(name):
        print(f"[run.py] {name}: started", flush=True)
        entry = harness.run_worker(name, spec, workdir, spec["timeout_s"])
        entry["finished_at"] = _now()
        # The worker's own record of its peak survives its per-row resets; wait4's is the
        # fallback for a process that died before writing one (and includes its children).
        entry["peak_rss_mb"] = entry.get("process_peak_rss_mb") or entry["process"][
            "peak_rss_mb"]
        detail = (entry.get("reason") or entry.get("error") or "").splitlines()
        detail = detail[0] if detail else ""
        print(f"[run.py] {name}: {entry['status']} in {entry['process']['wall_s']} s, peak RSS "
              f"{entry['peak_rss_mb']} MB {detail}".rstrip(), flush=True)
        return name, entry

    # Longest first, so that with several jobs the slow ones do not start last.
    order = sorted(names, key=lambda n: LONGEST_FIRST.index(n))
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        done = dict(pool.map(one, order))
    return {name: done[name] for name in names}


def _now():
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def merge_previous(out_path, entries, only, smoke):
    """With --only, keeps the entries of benchmarks not rerun from an existing results file
    (only those of the same mode: smoke numbers never mix with full-size ones)."""
    if not only or not os.path.exists(out_path):
        return entries
    try:
        with open(out_path) as f:
            previous = json.load(f).get("benchmarks", {})
    except (OSError, ValueError) as error:
        print(f"[run.py] not merging with {out_path}: {error}", file=sys.stderr)
        return entries
    merged = {n: previous[n] for n in BENCHMARKS if n in previous and n not in entries
              and previous[n].get("smoke") == smoke}
    merged.update(entries)
    return {n: merged[n] for n in BENCHMARKS if n in merged}


def write_markdown(results, results_md):
    """Replaces (or appends) the harness's section of `results_md` with `results`' tables."""
    document = ""
    if os.path.exists(results_md):
        with open(results_md) as f:
            document = f.read()
    harness.write_text_atomic(results_md, report.replace_section(document,
                                                                 report.render(results)))


def rewrite_markdown(out_path, results_md):
    """--markdown_only: the section of `results_md` from the JSON at `out_path`."""
    if not os.path.exists(out_path):
        print(f"run.py: error: --markdown_only: --out {out_path} does not exist; expected the "
              "results JSON of an earlier run", file=sys.stderr)
        return 2
    with open(out_path) as f:
        write_markdown(json.load(f), results_md)
    print(f"[run.py] wrote the section of {results_md} from {out_path}", flush=True)
    return 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        spec = resolve_spec(args)
    except ValueError as error:  # a user error: one line, exit 2
        print(f"run.py: error: {error}", file=sys.stderr)
        return 2
    out_path, results_md = default_paths(args)
    if args.markdown_only:
        return rewrite_markdown(out_path, results_md)
    names = list(args.only or BENCHMARKS)
    command = "python benchmarks/run.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    machine = harness.cpu_description()
    machine["load_average_before"] = harness.load_average()
    workdir = args.logs or tempfile.mkdtemp(prefix="mrcnn-bench-")
    os.makedirs(workdir, exist_ok=True)
    start = time.perf_counter()
    try:
        entries = run_benchmarks(names, spec, workdir, args.jobs)
    finally:
        if args.logs is None:
            shutil.rmtree(workdir, ignore_errors=True)
    for entry in entries.values():
        entry["command"] = command
        entry["smoke"] = spec["smoke"]
    machine["load_average_after"] = harness.load_average()
    results = {
        "schema": 1, "generated_at": _now(), "command": command, "smoke": spec["smoke"],
        "wall_s": round(time.perf_counter() - start, 1), "machine": machine,
        "versions": harness.package_versions(), "settings": spec,
        "benchmarks": merge_previous(out_path, entries, args.only, spec["smoke"]),
    }
    harness.write_text_atomic(out_path, json.dumps(results, indent=1) + "\n")
    write_markdown(results, results_md)
    failed = [n for n, e in entries.items() if e["status"] == "error"]
    print(f"[run.py] {len(entries)} benchmark(s) in {results['wall_s']} s; results {out_path}, "
          f"markdown {results_md}" + (f"; FAILED: {', '.join(failed)}" if failed else ""),
          flush=True)
    for name in failed:
        print(f"--- {name}: {entries[name].get('error')}\n{entries[name].get('log_tail', '')}",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
