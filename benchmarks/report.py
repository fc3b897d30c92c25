"""The markdown section of benchmarks/RESULTS.md written by the suite (`python -m benchmarks
all`, or one of its benchmarks alone): a header (machine, versions, settings), a table per
benchmark that ran, and every benchmark process.

The section sits between BEGIN and END markers; `replace_section` swaps it in and leaves the
rest of the file (hand-written results of other benchmarks) untouched.
"""

from benchmarks.tables import cell, status_cell, table

# The markers keep the spelling of the files written so far, so that their sections are found
# and replaced rather than appended again.
BEGIN = "<!-- benchmarks/run.py begin -->"
END = "<!-- benchmarks/run.py end -->"


def _ok(results, name):
    """The results dict of benchmark `name` if it ran ok, else None."""
    entry = results["benchmarks"].get(name)
    return entry["results"] if entry and entry.get("status") == "ok" else None


# -- the header ------------------------------------------------------------------------------
def machine_line(machine):
    """'Machine: MODEL, N logical CPUs (M usable), flags ...; X GB RAM; OS.'"""
    flags = ", ".join(machine.get("flags") or []) or "none of note"
    return (f"Machine: {machine['model']}, {machine['logical_cpus']} logical CPUs "
            f"({machine['usable_cpus']} usable), {machine['machine']}; CPU flags: {flags}; "
            f"{cell(machine.get('memory_gb'))} GB RAM; {machine['os']}; load average "
            f"{machine.get('load_average_before')} before, "
            f"{machine.get('load_average_after')} after.")


def versions_line(versions):
    """'Versions: python 3.11, tensorflow 2.21.0, ... (torch: not installed).'"""
    present = [f"{k} {v}" for k, v in versions.items() if v]
    absent = [k for k, v in versions.items() if not v]
    line = "Versions: " + ", ".join(present)
    return line + (f" (not installed: {', '.join(absent)})." if absent else ".")


def settings_line(settings):
    """One sentence with the settings every number shares."""
    model = settings["model"]
    overrides = f" with {model['overrides']}" if model.get("overrides") else ""
    detections = settings["model_facts"]["detections_per_image"]
    few = settings.get("few_detections")
    few_clause = (f", and in the inference table also a threshold that leaves about {few} "
                  "per image (a photo's count)" if few else "")
    return (f"Settings: `{model['preset']}`{overrides}, {settings['init']}; box score "
            "threshold 0 "
            f"(all {detections} detection slots reach the mask head){few_clause}, images "
            "resized to exactly "
            f"the listed size; {settings['threads']} threads (TF intra/inter-op, torch; "
            f"OMP_WAIT_POLICY {settings.get('omp_wait_policy_in_effect')}); "
            f"{settings['warmup']} warm-up + {settings['repeats']} "
            "timed runs per row, median and p90. Peak RSS is per row (the process's "
            "high-water mark reset before each row) unless said otherwise; GFLOP/s = "
            "analytic FLOPs / median latency." + _precisions_clause(settings.get("precisions"))
            + _left_out_clause(settings.get("precisions_left_out")))


def _precisions_clause(precisions):
    """' Keras dtype policies: inference float32, mixed_bfloat16; ...' ('' for results from
    before the precision rows)."""
    if not precisions:
        return ""
    return " Keras dtype policies: " + "; ".join(
        f"{name} {', '.join(policies)}" for name, policies in precisions.items()) + "."


def _left_out_clause(left_out):
    """' Left out: mixed_float16 (why).' for the policies this machine could not run."""
    if not left_out:
        return ""
    return " Left out: " + "; ".join(f"{policy} ({reason})"
                                     for policy, reason in sorted(left_out.items())) + "."


# -- one table per benchmark -----------------------------------------------------------------
def _section(title, intro, header, body):
    """The lines of one benchmark's section: its heading, an intro paragraph, its table."""
    return [f"### {title}", "", intro, "", *table(header, body), ""]


def _precision(row):
    """A row's Keras dtype policy, with "(no bf16 instructions)" where a mixed_bfloat16 row
    ran without CPU bf16 support; results from before the precision rows were float32."""
    policy = row.get("precision", "float32")
    return policy + (" (no bf16 instructions)" if row.get("bf16_hardware") is False else "")


# The compute dtype of a Keras dtype policy, whose ceiling bounds its rows (float16 is not
# measured on CPUs).
_CEILING_DTYPE = {"float32": "float32", "mixed_bfloat16": "bfloat16"}


def _conv_ceiling_share(results):
    """row -> its GFLOP/s as a share of its precision's conv ceiling ("61%"), or None where
    the ceilings did not run in these results or the row has no GFLOP/s."""
    data = _ok(results, "ceilings")

    def share(row):
        ceiling = data and data["ceilings"].get(
            _CEILING_DTYPE.get(row.get("precision", "float32")), {}).get("conv3x3")
        if not ceiling or not row.get("achieved_gflops"):
            return None
        return f"{100 * row['achieved_gflops'] / ceiling:.0f}%"

    return share


def ceilings_section(results):
    data = _ok(results, "ceilings")
    if not data:
        return []
    best = "; ".join(f"{dtype} conv3x3 {cell(kinds['conv3x3'])}, matmul {cell(kinds['matmul'])}"
                     for dtype, kinds in data["ceilings"].items())
    body = [[r["kind"], r["dtype"], r["shape"], r["gflop"], r["median_ms"], r["min_ms"],
             r["gflop_per_s"]] for r in data["rows"]]
    return _section(
        "ceilings",
        "The R50-FPN's own 3x3 convolution shapes (batch x height x width x channels, with bias "
        "and ReLU, on variables) and its box head's matmuls (m x k x n), each alone in a "
        "tf.function, at least 10 timed runs (benchmarks/ceilings.py). A precision's ceiling "
        f"is its best GFLOP/s (of the median): {best}. The inference and stage rows' "
        "'of ceiling' is their GFLOP/s over their precision's conv ceiling.",
        ["kind", "dtype", "shape", "GFLOP", "median ms", "min ms", "GFLOP/s"], body)


def _detections(row):
    """'100 (all slots)', or '8-12 (threshold 0.0123)' for a realistic-count row."""
    low, high = row.get("min_detections"), row.get("max_detections", row.get("min_detections"))
    if low is None:
        return None
    count = str(low) if low == high else f"{low}-{high}"
    threshold = row.get("score_threshold") or 0.0
    return f"{count} (all slots)" if threshold == 0 else f"{count} (threshold {threshold:.4g})"


def _inference_table(rows, extra=(), share=lambda row: None):
    header = [*(e[0] for e in extra), "size", "batch", "precision", "detections/image",
              "median ms", "p90 ms", "images/s", "GFLOP", "GFLOP/s", "of ceiling",
              "peak RSS MB"]
    body = [[*(r.get(e[1]) for e in extra), r["size"], r["batch"], _precision(r),
             _detections(r), r["median_ms"], r["p90_ms"], r["images_per_s"], r.get("gflop"),
             r.get("achieved_gflops"), share(r), r["peak_rss_mb"]] for r in rows]
    return table(header, body)


def _agreement_section(rows):
    """The table of benchmarks/agreement.py's numbers (none: no lines)."""
    if not rows:
        return []
    first = rows[0]
    body = [[r["size"], r["images"], _precision(r), r["detections"],
             f"{r['matched']} ({cell(r['matched_fraction'])})", r["mask_iou_min"],
             r["mask_iou_median"], r["same_box_mask_iou_min"], r["same_box_mask_iou_median"],
             r["same_box_fraction"]] for r in rows]
    return _section(
        "inference: mixed precision against float32",
        "The same weights and images (those of the largest timed batch) in each precision "
        "(benchmarks/agreement.py). Matched: "
        "float32 detections whose same-class detection of the other precision with the highest "
        f"box IoU reaches {first['match_box_iou']}; mask IoU of those pairs' pasted masks "
        "(threshold 0.5). Same boxes: the other precision's mask head on float32's own boxes "
        "and classes, mask IoU per detection, and the fraction at least "
        f"{first['same_box_mask_iou_threshold']}. Random weights score every class about "
        "equally, so near-ties decide which boxes survive NMS: the matched count is "
        "pessimistic, the same-box numbers are the mask head's own.",
        ["size", "images", "precision", "float32 detections", "matched", "mask IoU min",
         "mask IoU median", "same-box mask IoU min", "same-box median",
         f"same-box >= {first['same_box_mask_iou_threshold']}"], body)


def inference_section(results):
    data = _ok(results, "inference")
    if not data:
        return []
    return ["### inference", "", f"What is timed: {data['what']}.", "",
            *_inference_table(data["rows"], share=_conv_ceiling_share(results)), "",
            *_agreement_section(data.get("agreement"))]


def stages_section(results):
    data = _ok(results, "stages")
    if not data:
        return []
    share = _conv_ceiling_share(results)
    body = [[r["size"], r["batch"], _precision(r), r["stage"], r["median_ms"], r["p90_ms"],
             f"{100 * r['share_of_stage_sum']:.1f}%", r.get("gflop"), r.get("achieved_gflops"),
             share(r), r["peak_rss_mb"]] for r in data["rows"]]
    return _section("stages", "Each stage is a tf.function of the model's own sublayers fed the "
                    "previous stage's real outputs (benchmarks/stages.py).",
                    ["size", "batch", "precision", "stage", "median ms", "p90 ms", "share",
                     "GFLOP", "GFLOP/s", "of ceiling", "peak RSS MB"], body)


def _train_table(rows):
    body = [[r["size"], r["batch"], _precision(r), r["instances"], r["median_ms"], r["p90_ms"],
             r["images_per_s"], r["peak_rss_mb"]] for r in rows]
    return table(["size", "batch", "precision", "instances/image", "median ms", "p90 ms",
                  "images/s", "peak RSS MB"], body)


def train_section(results):
    data = _ok(results, "train_step")
    if not data:
        return []
    return ["### train_step", "", f"Compiled `model.train_step`, optimizer "
            f"{data['optimizer']}.", "", *_train_table(data["rows"]), ""]


def input_pipeline_section(results):
    data = _ok(results, "input_pipeline")
    if not data:
        return []
    body = [[r["source"], r["images_per_s_median"], r["images_per_s_p10"], r["runs"],
             r["images_per_round"], r["peak_rss_mb"]] for r in data["rows"]]
    return _section(
        "input_pipeline",
        f"`make_training_dataset` of `{data['preset']}` (canvas {data['canvas']}, batch "
        f"{data['batch']}) over synthetic {data['image_size']}px shapes written as a "
        "COCO-format folder (PNG + JSON) and as TFRecords (benchmarks/input_pipeline.py); "
        "p10 is the slowest-decile round.",
        ["source", "images/s median", "images/s p10", "rounds", "images/round",
         "peak RSS MB"], body)


def _export_rows(row):
    """The table rows of one export row: one per timed batch, or one saying unsupported."""
    if row["status"] == "unsupported":
        return [[row["format"], row["precision"], row["size"], "-", "-", "-", "-", "-",
                 f"unsupported: {row['reason']}", "-", "-"]]
    return [[row["format"], row["precision"], row["size"], row.get("runtime", "-"),
             row["file_mb"], row["export_s"], row.get("load_s"), run["batch"],
             run["median_ms"], run["p90_ms"], run["peak_rss_mb"]]
            for run in row.get("runs", [])]


def export_section(results):
    data = _ok(results, "export")
    if not data:
        return []
    return _section(
        "export",
        "Written with mrcnn_tf.export (SavedModel; TFLite builtin ops), each timed in its own "
        "process: the SavedModel through tf.saved_model.load's serving_default, TFLite "
        "through ai_edge_litert's Interpreter alone (no TensorFlow in that process). Peak "
        "RSS is the timing runs' own (after loading).",
        ["format", "precision", "size", "runtime", "file MB", "export s", "load s", "batch",
         "median ms", "p90 ms", "peak RSS MB"],
        [line for r in data["rows"] for line in _export_rows(r)])


def _flops_row(row):
    """The table row of one flops row: GFLOP per stage and the reference check."""
    g = row["gflop"]
    check = row.get("reference_check") or {}
    total = check.get("total", {})
    within = ("yes" if all(c["within_tolerance"] for c in check.values()) else "NO"
              ) if check else "-"
    return [f"{row['preset']} ({row['model']})", row["size"], g["backbone"], g["fpn"], g["rpn"],
            g["box_head"], g["mask_head"], g["total"], total.get("reference_gflop"),
            total.get("ratio"), within]


def flops_section(results):
    data = _ok(results, "flops")
    if not data:
        return []
    return _section("flops", f"GFLOP per image, {data['convention']} (benchmarks/flops.py).",
                    ["model", "size", "backbone", "FPN", "RPN", "box head", "mask head",
                     "total", "reference total", "ratio", "every stage within 10%"],
                    [_flops_row(r) for r in data["rows"]])


def scaling_section(results):
    lines = []
    titles = {"scaling_size": ("size", "inference, batch 1"),
              "scaling_batch": ("batch", "inference"),
              "scaling_instances": ("instances", "training step"),
              "scaling_proposals": ("proposals", "inference, batch 1")}
    for name, (variable, what) in titles.items():
        data = _ok(results, name)
        if not data:
            continue
        rows = data["rows"]
        first = rows[0]["median_ms"]
        fixed = [k for k in ("size", "batch") if k != variable]
        body = [[r[variable], *(r.get(k) for k in fixed), r["median_ms"], r["p90_ms"],
                 f"{r['median_ms'] / first:.2f}x", r.get("gflop"), r.get("achieved_gflops"),
                 r["peak_rss_mb"]] for r in rows]
        lines += [f"### {name}", "",
                  f"{what}; time grows like {variable}^{cell(data['exponent'])} "
                  "(least-squares slope of log time against log " + variable + ").", "",
                  *table([variable, *fixed, "median ms", "p90 ms", "vs first",
                          "GFLOP", "GFLOP/s", "peak RSS MB"], body), ""]
    return lines


def _float32_rows(results, name):
    """The float32 rows of benchmark `name` at score threshold 0 (torchvision's model runs in
    float32, every detection slot through its mask head)."""
    rows = (_ok(results, name) or {}).get("rows", [])
    return [r for r in rows if r.get("precision", "float32") == "float32"
            and not r.get("score_threshold")]


def torchvision_section(results):
    entry = results["benchmarks"].get("torchvision")
    if not entry:
        return []
    if entry["status"] == "skipped":
        return ["### torchvision", "", f"Skipped: {entry['reason']}", ""]
    data = _ok(results, "torchvision")
    if not data:
        return []
    ours = {(r["size"], r["batch"]): r for r in _float32_rows(results, "inference")}
    body = []
    for r in data["inference"]:
        mine = ours.get((r["size"], r["batch"]))
        body.append([r["size"], r["batch"], r["median_ms"], r["p90_ms"], r["gflop"],
                     r["achieved_gflops"], r["peak_rss_mb"],
                     mine["median_ms"] if mine else None,
                     f"{mine['median_ms'] / r['median_ms']:.2f}" if mine else "-"])
    our_stages = {(r["size"], r["batch"], r["stage"]): r
                  for r in _float32_rows(results, "stages")}
    stage_body = []
    for r in data["stages"]:
        mine = our_stages.get((r["size"], r["batch"], r["stage"]))
        stage_body.append([r["size"], r["batch"], r["stage"], r["median_ms"], r["gflop"],
                           mine["median_ms"] if mine else None,
                           mine["gflop"] if mine else None])
    return ["### torchvision", "", f"{data['model']}; torch {data['versions']['torch']}, "
            f"torchvision {data['versions']['torchvision']}, {data['threads']} threads. "
            "GFLOP from torch's FlopCounterMode; mrcnn_tf / torchvision > 1 means mrcnn_tf "
            "is slower.", "",
            *table(["size", "batch", "torchvision median ms", "p90 ms", "GFLOP", "GFLOP/s",
                    "peak RSS MB", "mrcnn_tf median ms", "mrcnn_tf / torchvision"], body), "",
            *table(["size", "batch", "stage", "torchvision ms", "torchvision GFLOP",
                    "mrcnn_tf ms", "mrcnn_tf GFLOP"], stage_body), ""]


def processes_section(results):
    body = [[name, status_cell(entry), entry["process"]["wall_s"],
             entry["process"].get("cpu_s"), entry.get("peak_rss_mb"),
             entry.get("rss_before_run_mb"), entry.get("finished_at", "-")]
            for name, entry in results["benchmarks"].items()]
    lines = ["### Every benchmark process", "",
             "Each benchmark ran in its own process; peak RSS is that process's whole-run "
             "high-water mark; RSS before run is after importing its framework.", "",
             *table(["benchmark", "status", "wall s", "CPU s", "process peak RSS MB",
                     "RSS before run MB", "finished"], body), ""]
    kept = [f"{name} (`{entry['command']}`, {entry.get('finished_at')})"
            for name, entry in results["benchmarks"].items()
            if entry.get("command") != results["command"]]
    if kept:
        lines += ["Kept from earlier runs (--only reran the others): " + "; ".join(kept) + ".",
                  ""]
    return lines


def render(results):
    """The whole markdown section, markers included, for a suite results dict."""
    smoke = results.get("smoke")
    lines = [BEGIN, "## Benchmark harness (`python -m benchmarks`)", "",
             "Written by the command below; do not edit by hand (run it again)."
             + (" SMOKE RUN: tiny model and sizes, the numbers only show the harness works."
                if smoke else ""), "",
             f"`{results['command']}` ({results['generated_at']})", "",
             machine_line(results["machine"]), "", versions_line(results["versions"]), "",
             settings_line(results["settings"]), ""]
    for section in (ceilings_section, inference_section, stages_section, train_section, input_pipeline_section,
                    export_section, flops_section, scaling_section, torchvision_section,
                    processes_section):
        lines += section(results)
    lines.append(END)
    return "\n".join(lines) + "\n"


def replace_section(document, section):
    """`document` with its BEGIN..END section replaced by `section` (appended if absent)."""
    start, end = document.find(BEGIN), document.find(END)
    if start != -1 and end > start:
        return document[:start] + section.rstrip("\n") + document[end + len(END):]
    if start != -1 or end != -1:
        raise ValueError(f"RESULTS.md has one of the markers {BEGIN!r} / {END!r} but not both "
                         "in order; fix the file by hand before writing the section")
    separator = "" if not document or document.endswith("\n\n") else (
        "\n" if document.endswith("\n") else "\n\n")
    return document + separator + section
