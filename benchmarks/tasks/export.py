"""Benchmark `export`: SavedModel and TFLite files written by mrcnn_tf.export at each export
size, each timed in a process of its own so that its peak RSS is the runtime's alone: the
SavedModel through tf.saved_model.load's serving_default (`run_savedmodel`, job
runtime_savedmodel), TFLite through ai_edge_litert alone, without TensorFlow
(benchmarks/tasks/export_tflite_runtime.py, job runtime_tflite)."""

import os
import shutil
import tempfile
import time

import tensorflow as tf

from benchmarks import synthetic, timing, worker
from benchmarks.configs import model_config
from benchmarks.memory import PeakMemory
from benchmarks.models import build_model


def run(spec):
    """{"rows": one per (size, format, precision), with the runtime's timed runs, or the
    reason a format is unsupported}. Raises worker.PartialFailure when an exported file
    failed to run (the working rows kept)."""
    from mrcnn_tf.export import saved_model as saved_model_export  # noqa: PLC0415
    from mrcnn_tf.export import tflite  # noqa: PLC0415
    settings = spec["export"]
    quantizations, unsupported = tflite_precisions(tflite.QUANTIZATIONS)
    workdir = tempfile.mkdtemp(prefix="mrcnn-bench-export-")
    rows = []
    try:
        for size in settings["sizes"]:
            # What `mrcnn-tf export` writes: the copy with frozen norms folded into the convs.
            model = build_model(model_config(spec, size), folded=True)
            artifacts = []
            with PeakMemory() as peak:
                start = time.perf_counter()
                path = saved_model_export.export_saved_model(
                    model, os.path.join(workdir, f"saved_model_{size}"))
                seconds = time.perf_counter() - start
            artifacts.append(("savedmodel", "float32", path, seconds, peak.as_dict()))
            # The TFLite exporter copies a dynamic-shapes model into a static-shapes one
            # (gather-only RoIAlign: same weights and numbers) on every call; building that
            # model once, with the same seed and so the same weights, keeps the copy out of
            # each export's time.
            del model
            model = build_model(model_config(spec, size, static_shapes=True))
            for quantization in quantizations:
                path = os.path.join(workdir, f"model_{size}_{quantization}.tflite")
                with PeakMemory() as peak:
                    start = time.perf_counter()
                    tflite.export_tflite(model, path, quantization, input_size=(size, size),
                                         calibration_images=_calibration(spec, quantization,
                                                                         size))
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
        raise worker.PartialFailure(f"exported model(s) failed to run: {names}: "
                                    f"{failed[0].get('error')}", {"rows": rows})
    return {"rows": rows}


# Images that calibrate the full-integer int8 file: noise, like the timed image, since the
# weights are random (calibration runs the float file once per image).
CALIBRATION_IMAGES = 8


def _calibration(spec, quantization, size):
    """The calibration images of `quantization` ("int8" only; else None): uint8 noise."""
    if quantization != "int8":
        return None
    count = 2 if spec["smoke"] else CALIBRATION_IMAGES
    return list(synthetic.random_images(count, size, seed=1))


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


def _dir_size_mb(path):
    """Size of a file or of every file under a folder, MB."""
    if os.path.isfile(path):
        return round(os.path.getsize(path) / 1e6, 2)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
                for f in files)
    return round(total / 1e6, 2)


def _run_runtime(spec, name, settings, workdir):
    """Times an exported artifact in a fresh child process, so its peak RSS is the runtime's
    own. Returns the child's result dict (see worker.run_worker)."""
    return worker.run_worker(name, dict(spec, runtime=settings), workdir, spec["timeout_s"])


def run_savedmodel(spec):
    """(job runtime_savedmodel, a child of this benchmark) Loads the SavedModel at
    spec["runtime"]["path"] and times its serving_default signature per batch size.

    Returns: {"rows": [timed row per batch], "load_s": seconds to load}.
    """
    settings = spec["runtime"]
    start = time.perf_counter()
    loaded = tf.saved_model.load(settings["path"])
    serve = loaded.signatures["serving_default"]
    load_s = time.perf_counter() - start
    rows = []
    for batch in settings["batches"]:
        images = tf.constant(synthetic.random_images(batch, settings["size"]))
        row = timing.timed_row(lambda: serve(image_tensor=images)["num_detections"].numpy(),
                               spec, size=settings["size"], batch=batch)
        rows.append(row)
    return {"rows": rows, "load_s": round(load_s, 2)}
