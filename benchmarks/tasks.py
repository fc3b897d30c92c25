"""The TensorFlow benchmarks. Each `bench_*` function takes the resolved settings (`spec`, a
dict made by benchmarks/run.py) and returns a JSON-ready dict; benchmarks/worker.py runs each
in its own process, with TF pinned to `spec["threads"]` threads.

Every timed row carries its own peak RSS (`benchmarks.memory.PeakMemory`), its FLOPs and the
achieved GFLOP/s where the FLOPs are known (`benchmarks.flops`). inference, stages and
train_step give one row per Keras dtype policy of spec["precisions"] (float32,
mixed_bfloat16, ...), labelled "precision"; inference also compares each mixed policy's
detections with float32's (benchmarks/agreement.py).
"""

import contextlib
import functools
import gc
import os
import shutil
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from benchmarks import flops as flop_count
from benchmarks import agreement, harness, random_init, stages, synthetic
from benchmarks.configs import model_config
from benchmarks.memory import PeakMemory
from mrcnn_tf.config import get_config
from mrcnn_tf.modeling.mask_rcnn import MaskRCNN
from mrcnn_tf.modeling.optimizer import make_optimizer
from mrcnn_tf.training.precision import set_precision, wrap_optimizer


# -- models ----------------------------------------------------------------------------------
@contextlib.contextmanager
def _global_policy(policy):
    """The Keras global dtype policy is `policy` inside the block and float32 after it, even
    when the block raises: a later model must not silently inherit a mixed policy."""
    set_precision(policy)
    try:
        yield
    finally:
        set_precision("float32")


def build_model(config, seed=0, policy="float32", stem_statistics=None):
    """A built MaskRCNN of `config` computing under Keras dtype policy `policy`, with seeded
    random weights made numerically sane for `config.image_max_size` images
    (benchmarks/random_init.py).

    The same seed gives every policy the same weights (variables are float32 in each) except
    the stem norm's calibrated statistics: pass a float32 model's `stem_statistics` to make
    those equal too. The global policy is set only while the layers are made (each layer
    takes it when constructed) and is float32 after.
    """
    keras.utils.set_random_seed(seed)
    with _global_policy(policy):
        model = MaskRCNN(config)
        model.build()
    random_init.sane_random_init(model, config.image_max_size, stem_statistics)
    return model


def per_policy(config, policies, fn, seed=0):
    """Calls `fn(policy, model)` for each policy, float32 first, on models of `config` with the
    same weights (`build_model`), and returns the list of what it returned.

    One model is alive at a time: the previous one is collected before the next is built, so
    each timed row's peak RSS holds a single model, as a one-precision run's does.
    """
    results, stem = [], None
    for policy in sorted(policies, key=lambda p: p != "float32"):
        model = build_model(config, seed, policy, stem_statistics=stem)
        if stem is None:
            stem = random_init.stem_statistics(model)
        results.append(fn(policy, model))
        del model
        gc.collect()  # a model and its traced functions hold each other in cycles
    return results


def policies(spec, benchmark):
    """The Keras dtype policies benchmark `benchmark` runs (spec["precisions"]; float32 for a
    spec without them)."""
    return spec.get("precisions", {}).get(benchmark, ["float32"])


def precision_labels(policy):
    """Row labels of a policy: precision, and for mixed_bfloat16 whether the CPU has bf16
    instructions (without them the row still runs, in slow software conversion)."""
    labels = {"precision": policy}
    if policy == "mixed_bfloat16":
        labels["bf16_hardware"] = harness.bf16_hardware()
    return labels


def _with_flops(row, flops, median_ms):
    """Adds gflop and achieved_gflops (`flops` / median latency) to a timed row."""
    row["gflop"] = round(flops / 1e9, 3)
    row["achieved_gflops"] = round(flops / 1e9 / (median_ms / 1000.0), 2) if median_ms else None
    return row


# -- inference -------------------------------------------------------------------------------
def _inference_rows(model, spec, size, batches, inference=None, **labels):
    """End-to-end inference rows of `model` on [batch, size, size, 3] noise images, timing
    `inference` (default: a new `stages.make_inference_function` of `model`)."""
    inference = inference or stages.make_inference_function(model, size)
    rows = []
    for batch in batches:
        images = tf.constant(synthetic.random_images(batch, size))
        detections = []

        def run():
            out = inference(images)
            detections.append(int(out["num_detections"].numpy().min()))

        row = harness.timed_row(run, spec, size=size, batch=batch, **labels)
        row["images_per_s"] = round(batch / (row["median_ms"] / 1000.0), 3)
        # The mask head runs on every detection slot; with score threshold 0 they are all real.
        row["min_detections"] = min(detections)
        row["detections_per_image"] = model.config.detections_per_image
        counts = flop_count.inference_flops(model, size, size, batch)
        rows.append(_with_flops(row, counts["total"], row["median_ms"]))
    return rows


def _as_numpy(outputs):
    """A dict of tensors as a dict of NumPy arrays."""
    return {key: value.numpy() for key, value in outputs.items()}


def _reference_detections(inference, images):
    """float32's detections on `images` ([B, S, S, 3]) as NumPy, kept while the other
    precisions are timed: masks [B, D, S, S] bool are packed 8 pixels a byte along the width
    (4 images x 100 masks at 1024 px: 420 MB as bool, 52 MB packed)."""
    reference = _as_numpy(inference(images))
    reference["masks"] = np.packbits(reference["masks"], axis=-1)
    return reference


def _agreement_row(model, inference, reference, images, **labels):
    """`benchmarks.agreement.batch_agreement` of `model` (a mixed policy, float32's weights)
    against float32's `_reference_detections` on the same `images`, with `labels`."""
    reference = dict(reference, masks=np.unpackbits(
        reference["masks"], axis=-1, count=int(images.shape[2])).astype(bool))
    # Only backbone_fpn and mask_paste are called, so only those two are traced.
    same_box = stages.masks_on_boxes(stages.make_stage_functions(model, images.shape[1]),
                                     images, reference)
    row = {"size": int(images.shape[1]), "images": int(images.shape[0]), **labels}
    row.update(agreement.batch_agreement(reference, _as_numpy(inference(images)),
                                         same_box.numpy()))
    return row


def _inference_at_size(spec, size):
    """bench_inference at one image size: (timed rows, agreement rows)."""
    images = tf.constant(synthetic.random_images(max(spec["batches"]), size))
    rows, agreement_rows, reference = [], [], {}

    def measure(policy, model):
        inference = stages.make_inference_function(model, size)
        labels = precision_labels(policy)
        rows.extend(_inference_rows(model, spec, size, spec["batches"], inference, **labels))
        if policy == "float32":  # per_policy runs float32 first
            reference.update(_reference_detections(inference, images))
        elif reference:
            agreement_rows.append(_agreement_row(model, inference, reference, images,
                                                 **labels))

    per_policy(model_config(spec, size), policies(spec, "inference"), measure)
    return rows, agreement_rows


def bench_inference(spec):
    """Latency of model(images) + mask paste at each size, batch size and precision, and how
    the detections of each mixed precision agree with float32's (benchmarks/agreement.py) on
    the largest timed batch's images, with the same weights."""
    rows, agreement_rows = [], []
    for size in spec["sizes"]:
        size_rows, size_agreement = _inference_at_size(spec, size)
        rows += size_rows
        agreement_rows += size_agreement
    return {"rows": rows, "agreement": agreement_rows,
            "what": "model(images) + full-image mask paste, one tf.function"}


def bench_stages(spec):
    """Latency of each of the four stages (benchmarks/stages.py) at each size, batch and
    precision."""
    rows = []
    for size in spec["sizes"]:
        for policy_rows in per_policy(model_config(spec, size), policies(spec, "stages"),
                                      functools.partial(_stage_rows, spec=spec, size=size)):
            rows += policy_rows
    return {"rows": rows, "stages": list(stages.STAGE_NAMES)}


def _stage_rows(policy, model, spec, size):
    """The four stage rows of `model` (computing under `policy`) per batch size, each with its
    share of their sum."""
    functions = stages.make_stage_functions(model, size)
    labels = precision_labels(policy)
    rows = []
    for batch in spec["batches"]:
        images = tf.constant(synthetic.random_images(batch, size))
        calls, _, _ = stages.stage_calls(functions, images)
        counts = flop_count.inference_flops(model, size, size, batch)
        group = [harness.timed_row(calls[name], spec, size=size, batch=batch, stage=name,
                                   **labels) for name in stages.STAGE_NAMES]
        total_ms = sum(row["median_ms"] for row in group)
        for name, row in zip(stages.STAGE_NAMES, group):
            _with_flops(row, counts[name], row["median_ms"])
            row["share_of_stage_sum"] = round(row["median_ms"] / total_ms, 4)
        rows += group
    return rows


# -- training --------------------------------------------------------------------------------
def _train_rows(policy, model, spec, size, batch_size, instance_counts, labels=None):
    """Training step rows (the project's SGD, compiled step) of `model` (computing under
    `policy`) at one size, per instance count; `labels` are added to each row."""
    config = model.config
    model.compile(optimizer=wrap_optimizer(
        make_optimizer(config, batch_size=batch_size), policy))
    step = tf.function(model.train_step)
    rows = []
    for instances in instance_counts:
        batch = synthetic.training_batch(config, size, batch_size, instances)
        losses = []

        def run():
            losses.append(float(step(batch)["loss"].numpy()))

        row = harness.timed_row(run, spec, size=size, batch=batch_size, instances=instances,
                                **(labels or {}))
        row["images_per_s"] = round(batch_size / (row["median_ms"] / 1000.0), 3)
        row["last_loss"] = losses[-1]
        if not np.isfinite(losses).all():
            raise FloatingPointError(f"training loss is not finite at size {size}, "
                                     f"{instances} instances, {policy}: {losses}")
        rows.append(row)
    return rows


def _train_step_rows(policy, model, spec, size):
    """bench_train_step's rows of one precision at one size."""
    train = spec["train"]
    return _train_rows(policy, model, spec, size, train["batch"], [train["instances"]],
                       precision_labels(policy))


def bench_train_step(spec):
    """One SGD training step (batch and instances per image from spec["train"]) at each size
    and precision."""
    rows = []
    for size in spec["sizes"]:
        for policy_rows in per_policy(model_config(spec, size), policies(spec, "train_step"),
                                      functools.partial(_train_step_rows, spec=spec,
                                                        size=size)):
            rows += policy_rows
    return {"rows": rows, "optimizer": "mrcnn_tf.modeling.optimizer.make_optimizer (SGD, "
                                       "momentum, weight decay)"}


# -- input pipeline --------------------------------------------------------------------------
def bench_input_pipeline(spec):
    """tf.data images/s from a COCO-format folder and from TFRecords (benchmarks/input_pipeline)."""
    from benchmarks import input_pipeline  # noqa: PLC0415 (imports CocoDataset etc.)
    settings = spec["input_pipeline"]
    config = get_config(settings["preset"], backbone_weights=None,
                        **settings.get("overrides", {}))
    root = tempfile.mkdtemp(prefix="mrcnn-bench-data-")
    try:
        start = time.perf_counter()
        coco, pattern = input_pipeline.write_sources(root, settings["image_size"],
                                                     settings["num_images"],
                                                     settings["num_shards"])
        write_s = time.perf_counter() - start
        datasets = input_pipeline.training_datasets(coco, pattern, config, settings["batch"],
                                                    threads=spec["threads"])
        rows = []
        for source, dataset in datasets.items():
            with PeakMemory() as peak:
                rates = input_pipeline.throughput({source: dataset}, settings["batch"],
                                                  settings["batches"], spec["repeats"])
            # Latency statistics are of milliseconds per image, one value per round.
            row = {"source": source}
            row.update(harness.summarize([1.0 / r for r in rates[source]]))
            row.update(images_per_s_median=round(1000.0 / row["median_ms"], 2),
                       images_per_s_p10=round(1000.0 / row["p90_ms"], 2),
                       images_per_round=settings["batch"] * settings["batches"])
            row.update(peak.as_dict())
            rows.append(row)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"rows": rows, "write_sources_s": round(write_s, 2),
            "preset": settings["preset"], "image_size": settings["image_size"],
            "canvas": config.max_padded_size, "batch": settings["batch"]}


# -- export ----------------------------------------------------------------------------------
def _dir_size_mb(path):
    """Size of a file or of every file under a folder, MB."""
    if os.path.isfile(path):
        return round(os.path.getsize(path) / 1e6, 2)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
                for f in files)
    return round(total / 1e6, 2)


def _run_runtime(spec, name, settings, workdir):
    """Times an exported artifact in a fresh child process, so its peak RSS is the runtime's
    own. Returns the child's result dict (see harness.run_worker)."""
    return harness.run_worker(name, dict(spec, runtime=settings), workdir, spec["timeout_s"])


def tflite_precisions(available):
    """What the TFLite exporter offers, and what the benchmark asks for but it lacks.

    Args: available: mrcnn_tf.export.tflite.QUANTIZATIONS.
    Returns: (the quantizations to export: all of `available`, {name: reason} of those
      missing). Full-integer int8 (int8 activations from a representative dataset) is asked
      for; dynamic-range "int8_dynamic" (int8 weights, float activations) is not the same.
    """
    unsupported = {}
    if not any(q in ("int8", "int8_full", "int8_full_integer") for q in available):
        unsupported["int8_full_integer"] = (
            f"mrcnn_tf/export/tflite.py offers quantization {tuple(available)}: only "
            "dynamic-range int8 (int8 weights, float32 activations; measured as int8_dynamic), "
            "no full-integer int8 with a representative dataset")
    return list(available), unsupported


def bench_export(spec):
    """Exports SavedModel and TFLite files at each export size and times each in its own
    process (TFLite through ai_edge_litert alone, without TensorFlow)."""
    from mrcnn_tf.export import saved_model as saved_model_export  # noqa: PLC0415
    from mrcnn_tf.export import tflite  # noqa: PLC0415
    settings = spec["export"]
    quantizations, unsupported = tflite_precisions(tflite.QUANTIZATIONS)
    workdir = tempfile.mkdtemp(prefix="mrcnn-bench-export-")
    rows = []
    try:
        for size in settings["sizes"]:
            model = build_model(model_config(spec, size))
            artifacts = []
            with PeakMemory() as peak:
                start = time.perf_counter()
                path = saved_model_export.export_saved_model(
                    model, os.path.join(workdir, f"saved_model_{size}"))
                seconds = time.perf_counter() - start
            artifacts.append(("savedmodel", "float32", path, seconds, peak.as_dict()))
            # The TFLite exporter copies a crop_and_resize model into a gather-RoIAlign one
            # (same weights and numbers) on every call; building that model once, with the
            # same seed and so the same weights, keeps the copy out of each export's time.
            del model
            model = build_model(model_config(spec, size, roi_align_implementation="builtin"))
            for quantization in quantizations:
                path = os.path.join(workdir, f"model_{size}_{quantization}.tflite")
                with PeakMemory() as peak:
                    start = time.perf_counter()
                    tflite.export_tflite(model, path, quantization, input_size=(size, size))
                    seconds = time.perf_counter() - start
                artifacts.append(("tflite", quantization, path, seconds, peak.as_dict()))
            del model
            for kind, precision, path, seconds, export_peak in artifacts:
                batches = spec["batches"] if kind == "savedmodel" else [1]
                runtime = _run_runtime(spec, f"runtime_{kind}", {
                    "path": path, "size": size, "batches": batches,
                    "label": f"{kind}_{precision}_{size}"}, workdir)
                row = {"format": kind, "precision": precision, "size": size,
                       "file_mb": _dir_size_mb(path), "export_s": round(seconds, 2),
                       "export_peak_rss_mb": export_peak["peak_rss_mb"],
                       "status": runtime["status"],
                       # The child's own record: wait4's ru_maxrss of a child forked from
                       # this large process counts this process's memory too.
                       "runtime_process_peak_rss_mb": runtime.get("process_peak_rss_mb")}
                if runtime["status"] == "ok":
                    row["runs"] = runtime["results"]["rows"]
                    row["load_s"] = runtime["results"]["load_s"]
                    row["runtime"] = runtime["results"].get("runtime", "tf.saved_model.load")
                else:
                    row["error"] = runtime.get("error")
                    row["log_tail"] = runtime.get("log_tail")
                rows.append(row)
            for name, reason in unsupported.items():
                rows.append({"format": "tflite", "precision": name, "size": size,
                             "status": "unsupported", "reason": reason})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    failed = [r for r in rows if r["status"] not in ("ok", "unsupported")]
    if failed:
        # A half-working export must not pass as ok; the working rows stay in the result.
        names = [f"{r['format']} {r['precision']} {r['size']}px" for r in failed]
        raise harness.PartialFailure(f"exported model(s) failed to run: {names}: "
                                     f"{failed[0].get('error')}", {"rows": rows})
    return {"rows": rows}


def bench_runtime_savedmodel(spec):
    """(child of export) Loads a SavedModel and times its serving_default signature."""
    settings = spec["runtime"]
    start = time.perf_counter()
    loaded = tf.saved_model.load(settings["path"])
    serve = loaded.signatures["serving_default"]
    load_s = time.perf_counter() - start
    rows = []
    for batch in settings["batches"]:
        images = tf.constant(synthetic.random_images(batch, settings["size"]))
        row = harness.timed_row(lambda: serve(image_tensor=images)["num_detections"].numpy(), spec,
                         size=settings["size"], batch=batch)
        rows.append(row)
    return {"rows": rows, "load_s": round(load_s, 2)}


# -- FLOPs -----------------------------------------------------------------------------------
def bench_flops(spec):
    """Per-stage FLOPs at each size, checked against the R50-FPN reference numbers."""
    settings = spec["flops"]
    rows = []
    jobs = [("benchmarked", spec, size) for size in spec["sizes"]]
    # The reference model (R50-FPN, 80 classes, 1000 proposals, 100 masks) is counted too when
    # the benchmarked model is another one (smoke mode), so the check always runs.
    reference_spec = dict(spec, model={"preset": "coco_r50_fpn", "overrides": {}})
    jobs += [("reference_r50_fpn", reference_spec, size)
             for size in settings["reference_sizes"]]
    for label, job_spec, size in jobs:
        config = model_config(job_spec, size)
        start = time.perf_counter()
        model = flop_count.shape_built_model(config)  # counting needs shapes, not values
        counts = flop_count.inference_flops(model, size, size)
        row = {"model": label, "preset": config.name, "size": size,
               "padded_size": counts["padded_size"], "proposals": counts["proposals"],
               "masks": counts["masks"], "gflop": flop_count.gflop(counts),
               "count_s": round(time.perf_counter() - start, 2)}
        if flop_count.is_reference_shaped(config):
            row["reference_check"] = flop_count.reference_check(counts, size)
        rows.append(row)
        del model
    return {"rows": rows, "convention": "convolutions, transposed convolutions and dense "
                                        "layers; 1 multiply-add = 2 FLOP; per image"}


# -- scaling ---------------------------------------------------------------------------------
def bench_scaling_size(spec):
    """Inference latency against image size (batch 1)."""
    rows = []
    for size in spec["scaling"]["sizes"]:
        model = build_model(model_config(spec, size))
        rows += _inference_rows(model, spec, size, [1])
        del model
    return {"rows": rows, "variable": "size",
            "exponent": harness.growth_exponent([r["size"] for r in rows],
                                                [r["median_ms"] for r in rows])}


def bench_scaling_batch(spec):
    """Inference latency against batch size at one image size."""
    size = spec["scaling"]["batch_size_image"]
    model = build_model(model_config(spec, size))
    rows = _inference_rows(model, spec, size, spec["scaling"]["batches"])
    for row in rows:
        row["ms_per_image"] = round(row["median_ms"] / row["batch"], 3)
    return {"rows": rows, "variable": "batch",
            "exponent": harness.growth_exponent([r["batch"] for r in rows],
                                                [r["median_ms"] for r in rows])}


def bench_scaling_instances(spec):
    """Training step time against ground-truth instances per image."""
    scaling = spec["scaling"]
    size = scaling["instances_image"]
    rows = _train_rows("float32", build_model(model_config(spec, size)), spec, size,
                       spec["train"]["batch"], scaling["instances"])
    return {"rows": rows, "variable": "instances",
            "exponent": harness.growth_exponent([r["instances"] for r in rows],
                                                [r["median_ms"] for r in rows])}


def bench_scaling_proposals(spec):
    """Inference latency against the number of RPN proposals per image (box head rows)."""
    size = spec["scaling"]["proposals_image"]
    rows = []
    for proposals in spec["scaling"]["proposals"]:
        config = model_config(spec, size, rpn_post_nms_topk_test=int(proposals))
        model = build_model(config)
        rows += _inference_rows(model, spec, size, [1], proposals=int(proposals))
        del model
    return {"rows": rows, "variable": "proposals",
            "exponent": harness.growth_exponent([r["proposals"] for r in rows],
                                                [r["median_ms"] for r in rows])}


TASKS = {
    "inference": bench_inference,
    "stages": bench_stages,
    "train_step": bench_train_step,
    "input_pipeline": bench_input_pipeline,
    "export": bench_export,
    "runtime_savedmodel": bench_runtime_savedmodel,
    "flops": bench_flops,
    "scaling_size": bench_scaling_size,
    "scaling_batch": bench_scaling_batch,
    "scaling_instances": bench_scaling_instances,
    "scaling_proposals": bench_scaling_proposals,
}
