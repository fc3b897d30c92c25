"""GPU check: the documented training recipes run on this machine's GPUs, and how fast.

    python benchmarks/gpu.py [--out benchmarks/gpu] [--steps 30] [--batch_per_gpu 4]
    python benchmarks/gpu.py --smoke --out DIR    # all of it tiny, on any device
    python benchmarks/gpu.py --parts train/xla,resume   # some of it

Each part runs in its own process, since op determinism and the Keras dtype policy are
process-wide, and goes through `training.trainer.train`, the code `mrcnn-tf train` runs, so
the device plan decides each run exactly as it would for a user:

  train/float32_deterministic  the default flags (op determinism on: the builtin RoIAlign)
  train/mixed_float16          --mixed_precision=mixed_float16 (dynamic loss scaling)
  train/xla                    --jit_compile
  train/mirrored               --strategy=mirrored over every GPU (global batch = GPUs x batch)
  resume                       a deterministic run killed (SIGKILL) after its first epoch and
                               rerun with the same command ends with the weights of an unbroken
                               run (compared array by array, exactly)
  inference/float32, inference/mixed_float16
                               800x1333 images, batch 1 and 8: latency, peak GPU memory
  savedmodel                   the exported SavedModel's serving_default at 800x1333 on the GPU

Training uses coco_r50_fpn (random weights, 3 classes) on synthetic shapes images of 800x800,
padded like every COCO batch to the preset's fixed 1344x1344 canvas, so a step costs what a
COCO step costs. Inference uses score threshold 0, so all 100 detections reach the mask head
(the worst case). Writes OUT/gpu.json and OUT/gpu.md (the table for benchmarks/RESULTS.md).
Without a GPU it stops at once (exit 2) unless --smoke. Exits 1 when a part failed, a loss was
not finite or the resumed weights differ.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import harness  # noqa: E402

TRAIN_VARIANTS = {
    "float32_deterministic": {},
    "mixed_float16": {"mixed_precision": "mixed_float16"},
    "xla": {"jit_compile": True},
    "mirrored": {"strategy": "mirrored"},
}
INFERENCE_POLICIES = ("float32", "mixed_float16")
FULL = {"preset": "coco_r50_fpn", "overrides": {"num_classes": 3, "backbone_weights": None},
        "image_size": 800, "inference_hw": (800, 1333), "inference_batches": (1, 8),
        "warmup": 3, "repeats": 10, "resume_epochs": 2, "resume_steps": 5}
SMOKE = {"preset": "shapes_tiny",
         "overrides": {"image_min_size": 64, "image_max_size": 64},
         "image_size": 64, "inference_hw": (64, 80), "inference_batches": (1, 2),
         "warmup": 1, "repeats": 2, "resume_epochs": 2, "resume_steps": 2}


# -- children --------------------------------------------------------------------------------
def _config(settings):
    from mrcnn_tf.config import get_config  # noqa: PLC0415
    return get_config(settings["preset"], score_threshold=0.0, **settings["overrides"])


def _synthetic_source(config, size, count=64):
    from mrcnn_tf.data.synthetic import synthetic_set_for  # noqa: PLC0415
    from mrcnn_tf.training.input import IndexedSource  # noqa: PLC0415
    images = synthetic_set_for(config)
    return IndexedSource(count, lambda i: images.generate(i, 0, size), "synthetic", 0), images


def child_train(spec):
    """Trains `steps` steps of one variant; returns losses, images/s after warm-up, plan."""
    import keras  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    from mrcnn_tf.labels import LabelMap  # noqa: PLC0415
    from mrcnn_tf.training import trainer  # noqa: PLC0415
    settings, variant = spec["settings"], spec["variant"]
    config = _config(settings)
    source, images = _synthetic_source(config, settings["image_size"])
    replicas = max(1, len(tf.config.list_physical_devices("GPU"))) \
        if variant.get("strategy") == "mirrored" else 1
    batch = spec["batch_per_gpu"] * replicas
    ends = []

    class StepTimes(keras.callbacks.Callback):
        def on_train_batch_end(self, batch_index, logs=None):
            ends.append(time.perf_counter())

    options = trainer.TrainOptions(run_dir=spec["run_dir"], epochs=1,
                                   steps_per_epoch=spec["steps"], batch_size=batch,
                                   tensorboard_images=0, verbose=0, **variant)
    summary = trainer.train(config, source, LabelMap.from_names(images.class_names), options,
                            callbacks=[StepTimes()])
    warm = min(5, len(ends) - 2)  # the first steps trace, compile and autotune
    seconds = (ends[-1] - ends[warm]) / max(1, len(ends) - 1 - warm)
    with open(os.path.join(spec["run_dir"], "run.json")) as f:
        plan = json.load(f)["device_plan"]
    losses = summary["history"]["loss"]
    return {"variant": spec["name"], "replicas": replicas, "global_batch": batch,
            "steps": len(ends), "loss": losses[-1], "finite": bool(np.all(np.isfinite(losses))),
            "step_s": round(seconds, 4), "images_per_s": round(batch / seconds, 2),
            "images_per_s_per_gpu": round(batch / seconds / replicas, 2),
            "peak_gpu_mb": _peak_gpu_mb(), "device_plan": plan}


def _peak_gpu_mb():
    import tensorflow as tf  # noqa: PLC0415
    if not tf.config.list_physical_devices("GPU"):
        return None
    return round(tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2 ** 20, 1)


def _reset_gpu_peak():
    import tensorflow as tf  # noqa: PLC0415
    if tf.config.list_physical_devices("GPU"):
        tf.config.experimental.reset_memory_stats("GPU:0")


def child_inference(spec):
    """Latency of model(images) at the inference size for each batch under one policy."""
    import numpy as np  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    from mrcnn_tf.modeling.mask_rcnn import MaskRCNN  # noqa: PLC0415
    from mrcnn_tf.training import precision  # noqa: PLC0415
    settings = spec["settings"]
    precision.set_precision(spec["policy"])
    model = MaskRCNN(_config(settings))
    model.build()
    run = tf.function(lambda x: model(x)["num_detections"])
    rows = []
    height, width = settings["inference_hw"]
    for batch in settings["inference_batches"]:
        images = tf.constant(np.random.default_rng(0).integers(
            0, 256, (batch, height, width, 3), dtype=np.uint8))
        _reset_gpu_peak()
        stats = harness.time_calls(lambda: run(images).numpy(), settings["warmup"],
                                   settings["repeats"])
        rows.append({"policy": spec["policy"], "batch": batch, "size": f"{height}x{width}",
                     "median_ms": stats["median_ms"], "p90_ms": stats["p90_ms"],
                     "ms_per_image": round(stats["median_ms"] / batch, 2),
                     "peak_gpu_mb": _peak_gpu_mb()})
    return {"rows": rows}


def child_savedmodel(spec):
    """Exports the float32 model and times the loaded serving_default signature, batch 1."""
    import numpy as np  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    from mrcnn_tf.export.saved_model import export_saved_model  # noqa: PLC0415
    from mrcnn_tf.modeling.mask_rcnn import MaskRCNN  # noqa: PLC0415
    settings = spec["settings"]
    model = MaskRCNN(_config(settings))
    path = export_saved_model(model, os.path.join(spec["workdir"], "saved_model"))
    serve = tf.saved_model.load(path).signatures["serving_default"]
    height, width = settings["inference_hw"]
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (1, height, width, 3),
                                                           dtype=np.uint8))
    stats = harness.time_calls(lambda: serve(image_tensor=images)["num_detections"].numpy(),
                               settings["warmup"], settings["repeats"])
    return {"size": f"{height}x{width}", "batch": 1, "median_ms": stats["median_ms"],
            "p90_ms": stats["p90_ms"]}


CHILDREN = {"train": child_train, "inference": child_inference, "savedmodel": child_savedmodel}
PARTS = ([f"train/{name}" for name in TRAIN_VARIANTS] + ["resume"]
         + [f"inference/{policy}" for policy in INFERENCE_POLICIES] + ["savedmodel"])


# -- parent ----------------------------------------------------------------------------------
def run_part(kind, name, spec, workdir, timeout_s):
    """Runs one child; returns its result, or {"error": ...} with the log's tail."""
    spec_path = os.path.join(workdir, f"{name.replace('/', '-')}.spec.json")
    result_path = spec_path.replace(".spec.json", ".result.json")
    log_path = spec_path.replace(".spec.json", ".log")
    harness.write_text_atomic(spec_path, json.dumps(spec))
    command = harness.python_command(os.path.abspath(__file__), "--child", kind, spec_path,
                                     result_path)
    process = harness.run_child(command, timeout_s, log_path,
                                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    if os.path.exists(result_path):
        with open(result_path) as f:
            result = json.load(f)
    else:
        result = {"error": "timed out" if process["timed_out"] else
                  f"exit code {process['returncode']}", "log_tail": harness.log_tail(log_path)}
    result["wall_s"] = process["wall_s"]
    return result


def train_command(settings, run_dir, seed=0):
    """The `mrcnn-tf train` command of the resume check (default flags: deterministic)."""
    overrides = [f"{k}={v}" for k, v in settings["overrides"].items()]
    return ([sys.executable, "-m", "mrcnn_tf.cli", "train", "--config", settings["preset"],
             "--synthetic_train_images", "16", "--epochs", str(settings["resume_epochs"]),
             "--steps_per_epoch", str(settings["resume_steps"]), "--batch_size", "2",
             "--seed", str(seed), "--tensorboard_images", "0", "--run_dir", run_dir]
            + [arg for o in overrides for arg in ("--override", o)])


def backup_arrays(run_dir):
    """{array path: value} of a run's final backup (model and optimizer variables)."""
    import h5py  # noqa: PLC0415
    folder = os.path.join(run_dir, "backup")
    with open(os.path.join(folder, "state.json")) as f:
        state = json.load(f)
    arrays = {}
    with h5py.File(os.path.join(folder, state["weights"]), "r") as f:
        f.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                     if hasattr(item, "shape") else None)
    return state["epoch"], arrays


def resume_check(settings, workdir, timeout_s):
    """Kills a deterministic run after its first epoch, reruns it, compares with an unbroken
    run. Returns {"identical": bool, "arrays": n, "max_abs_difference": x, ...}."""
    import numpy as np  # noqa: PLC0415
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    unbroken, broken = os.path.join(workdir, "unbroken"), os.path.join(workdir, "broken")
    result = subprocess.run(train_command(settings, unbroken), capture_output=True, text=True,
                            env=env, timeout=timeout_s)
    if result.returncode:
        return {"error": "unbroken run failed", "log_tail": result.stderr[-3000:]}
    state_path = os.path.join(broken, "backup", "state.json")
    process = subprocess.Popen(train_command(settings, broken), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + timeout_s
    while not os.path.exists(state_path) and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    with open(state_path) as f:
        killed_after = json.load(f)["epoch"]
    result = subprocess.run(train_command(settings, broken), capture_output=True, text=True,
                            env=env, timeout=timeout_s)
    if result.returncode:
        return {"error": "resumed run failed", "log_tail": result.stderr[-3000:]}
    (epochs_a, want), (epochs_b, got) = backup_arrays(unbroken), backup_arrays(broken)
    same_names = sorted(want) == sorted(got)
    differences = [float(np.max(np.abs(np.asarray(got[k], np.float64) - want[k])))
                   for k in want if k in got and np.asarray(want[k]).dtype.kind == "f"]
    return {"killed_after_epoch": killed_after, "epochs": [epochs_a, epochs_b],
            "arrays": len(want), "same_names": same_names,
            "max_abs_difference": max(differences) if differences else None,
            "identical": same_names and epochs_a == epochs_b and all(
                np.array_equal(got[k], want[k]) for k in want)}


def markdown(results):
    """The table for benchmarks/RESULTS.md."""
    lines = [f"GPU check on {results['device']} ({results['gpus']} GPU(s)), "
             f"`python benchmarks/gpu.py{' --smoke' if results['smoke'] else ''}`:", "",
             "| training run | device plan | loss finite | images/s per GPU | peak GPU MB |",
             "|---|---|---|---|---|"]
    for name, row in results["train"].items():
        if "error" in row:
            lines.append(f"| {name} | error: {row['error']} | | | |")
            continue
        plan = row["device_plan"]
        lines.append(f"| {name} ({row['replicas']} x {row['global_batch'] // row['replicas']} "
                     f"images) | RoIAlign {plan['roi_align_implementation']}, determinism "
                     f"{'on' if plan['op_determinism'] else 'off'}, XLA "
                     f"{'on' if plan['xla'] else 'off'} | {row['finite']} | "
                     f"{row['images_per_s_per_gpu']} | {row['peak_gpu_mb']} |")
    resume = results.get("resume")
    if resume is not None:
        lines += ["", "Kill and resume (deterministic): "
                  + (f"error: {resume['error']}" if "error" in resume else
                     f"weights identical to an unbroken run: {resume['identical']} "
                     f"({resume['arrays']} arrays, max |difference| "
                     f"{resume['max_abs_difference']})")]
    lines += ["", "| inference | batch | median ms | ms per image | peak GPU MB |",
              "|---|---|---|---|---|"]
    for name, part in results["inference"].items():
        for row in part.get("rows", []):
            lines.append(f"| {row['policy']} {row['size']} | {row['batch']} | "
                         f"{row['median_ms']} | {row['ms_per_image']} | {row['peak_gpu_mb']} |")
        if "error" in part:
            lines.append(f"| {name} | error: {part['error']} | | | |")
    saved = results.get("savedmodel")
    if saved is not None:
        lines += ["", "SavedModel serving_default, batch 1: "
                  + (f"error: {saved['error']}" if "error" in saved else
                     f"{saved['median_ms']} ms at {saved['size']}")]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join("benchmarks", "gpu"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch_per_gpu", type=int, default=4)
    parser.add_argument("--timeout_s", type=int, default=900, help="per part")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--parts", default=None,
                        help="comma-separated subset of the parts (default: all): "
                        + ",".join(PARTS))
    parser.add_argument("--child", nargs=3, metavar=("KIND", "SPEC", "RESULT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, spec_path, result_path = args.child
        with open(spec_path) as f:
            spec = json.load(f)
        harness.write_text_atomic(result_path, json.dumps(CHILDREN[kind](spec)))
        return 0
    # Steps after the first two (tracing, autotuning) are the timed ones: at least one.
    for flag, least in (("steps", 3), ("batch_per_gpu", 1), ("timeout_s", 1)):
        if getattr(args, flag) < least:
            parser.error(f"--{flag}={getattr(args, flag)}: expected an integer >= {least}")
    parts = PARTS if args.parts is None else args.parts.split(",")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--parts={args.parts}: unknown parts {unknown}; expected some of {PARTS}")
    import tensorflow as tf  # noqa: PLC0415
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and not args.smoke:
        print("benchmarks/gpu.py: TensorFlow sees no GPU on this machine; run it where "
              "tf.config.list_physical_devices('GPU') lists one (--smoke runs it tiny on any "
              "device)", file=sys.stderr)
        return 2
    settings = SMOKE if args.smoke else FULL
    steps = min(args.steps, 8) if args.smoke else args.steps
    batch_per_gpu = 2 if args.smoke else args.batch_per_gpu
    os.makedirs(args.out, exist_ok=True)
    device = (tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
              if gpus else "CPU")
    results = {"device": device, "gpus": len(gpus), "smoke": args.smoke, "steps": steps,
               "settings": settings, "train": {}, "inference": {}}
    for name, variant in TRAIN_VARIANTS.items():
        if f"train/{name}" in parts:
            spec = {"name": name, "variant": variant, "settings": settings, "steps": steps,
                    "batch_per_gpu": batch_per_gpu,
                    "run_dir": os.path.join(args.out, "runs", name)}
            results["train"][name] = run_part("train", f"train/{name}", spec, args.out,
                                              args.timeout_s)
    if "resume" in parts:
        results["resume"] = resume_check(settings, os.path.join(args.out, "resume"),
                                         args.timeout_s)
    for policy in INFERENCE_POLICIES:
        if f"inference/{policy}" in parts:
            results["inference"][policy] = run_part(
                "inference", f"inference/{policy}", {"settings": settings, "policy": policy},
                args.out, args.timeout_s)
    if "savedmodel" in parts:
        results["savedmodel"] = run_part("savedmodel", "savedmodel",
                                         {"settings": settings, "workdir": args.out},
                                         args.out, args.timeout_s)
    harness.write_text_atomic(os.path.join(args.out, "gpu.json"),
                              json.dumps(results, indent=1))
    table = markdown(results)
    harness.write_text_atomic(os.path.join(args.out, "gpu.md"), table)
    print(table)
    problems = failures(results)
    for problem in problems:
        print(f"benchmarks/gpu.py: {problem}", file=sys.stderr)
    return 1 if problems else 0


def failures(results):
    """What went wrong, one line each: a part that failed, a non-finite loss, a resumed run
    whose weights differ from the unbroken one."""
    problems = []
    for name, row in results["train"].items():
        if "error" in row:
            problems.append(f"train/{name}: {row['error']}")
        elif not row["finite"]:
            problems.append(f"train/{name}: a loss was not finite")
    resume = results.get("resume")
    if resume is not None and ("error" in resume or not resume["identical"]):
        problems.append(f"resume: {resume.get('error') or 'weights differ from the unbroken run'}")
    parts = [(f"inference/{k}", v) for k, v in results["inference"].items()]
    parts += [("savedmodel", results["savedmodel"])] if "savedmodel" in results else []
    problems += [f"{name}: {part['error']}" for name, part in parts if "error" in part]
    return problems


if __name__ == "__main__":
    sys.exit(main())
