"""GPU check: the documented training recipes run on this machine's GPUs, and how fast.

    python -m benchmarks gpu [--out benchmarks/gpu] [--steps 30] [--batch_per_gpu 4]
    python -m benchmarks gpu --smoke --out DIR    # all of it tiny, on any device
    python -m benchmarks gpu --parts train/xla,resume   # some of it

Each part runs in its own process (benchmarks/tasks/gpu_children.py), since op determinism
and the Keras dtype policy are process-wide, and goes through `training.trainer.train`, the
code `mrcnn-tf train` runs, so the device plan decides each run exactly as it would for a
user:

  train/float32_deterministic  the default flags (op determinism on: static shapes on a GPU)
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

from benchmarks import processes
from benchmarks.flags import int_at_least, subset
from benchmarks.results_files import write_text_atomic
from benchmarks.tasks.gpu_children import CHILDREN

PROG = "python -m benchmarks gpu"
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
PARTS = ([f"train/{name}" for name in TRAIN_VARIANTS] + ["resume"]
         + [f"inference/{policy}" for policy in INFERENCE_POLICIES] + ["savedmodel"])


def add_arguments(parser):
    parser.add_argument("--out", default=os.path.join("benchmarks", "gpu"))
    # Steps after the first two (tracing, autotuning) are the timed ones: at least one.
    parser.add_argument("--steps", type=int_at_least("--steps", 3), default=30)
    parser.add_argument("--batch_per_gpu", type=int_at_least("--batch_per_gpu", 1), default=4)
    parser.add_argument("--timeout_s", type=int_at_least("--timeout_s", 1), default=900,
                        help="per part")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--parts", type=subset("--parts", PARTS, "parts"), default=None,
                        help="comma-separated subset of the parts (default: all): "
                        + ",".join(PARTS))
    parser.add_argument("--child", nargs=3, metavar=("KIND", "SPEC", "RESULT"),
                        help=argparse.SUPPRESS)


def main(args):
    """Runs the parts, writes OUT/gpu.json and OUT/gpu.md, prints the table; the exit status
    (2 without a GPU unless --smoke, 1 when something failed). With --child, runs one child."""
    if args.child:
        return _child(*args.child)
    import tensorflow as tf  # noqa: PLC0415
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and not args.smoke:
        print(f"{PROG}: TensorFlow sees no GPU on this machine; run it where "
              "tf.config.list_physical_devices('GPU') lists one (--smoke runs it tiny on any "
              "device)", file=sys.stderr)
        return 2
    device = (tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
              if gpus else "CPU")
    results = run(args, device, len(gpus))
    write_text_atomic(os.path.join(args.out, "gpu.json"), json.dumps(results, indent=1))
    table = markdown(results)
    write_text_atomic(os.path.join(args.out, "gpu.md"), table)
    print(table)
    problems = failures(results)
    for problem in problems:
        print(f"{PROG}: {problem}", file=sys.stderr)
    return 1 if problems else 0


def run(args, device, gpus):
    """Runs each part of args.parts on `device` (its name; `gpus` of them), each training and
    inference part in its own child process. Returns the results: settings, train, resume,
    inference and savedmodel, each part's numbers or error."""
    parts = args.parts or PARTS
    settings = SMOKE if args.smoke else FULL
    steps = min(args.steps, 8) if args.smoke else args.steps
    batch_per_gpu = 2 if args.smoke else args.batch_per_gpu
    os.makedirs(args.out, exist_ok=True)
    results = {"device": device, "gpus": gpus, "smoke": args.smoke, "steps": steps,
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
    return results


def _child(kind, spec_path, result_path):
    """The child process of one part: runs gpu_children.CHILDREN[kind] on the spec, writes
    its result."""
    with open(spec_path) as f:
        spec = json.load(f)
    write_text_atomic(result_path, json.dumps(CHILDREN[kind](spec)))
    return 0


def run_part(kind, name, spec, workdir, timeout_s):
    """Runs one child; returns its result, or {"error": ...} with the log's tail."""
    spec_path = os.path.join(workdir, f"{name.replace('/', '-')}.spec.json")
    result_path = spec_path.replace(".spec.json", ".result.json")
    log_path = spec_path.replace(".spec.json", ".log")
    write_text_atomic(spec_path, json.dumps(spec))
    command = processes.module_command("gpu", "--child", kind, spec_path, result_path)
    process = processes.run_child(command, timeout_s, log_path,
                                  env=processes.child_env(TF_CPP_MIN_LOG_LEVEL="2"))
    if os.path.exists(result_path):
        with open(result_path) as f:
            result = json.load(f)
    else:
        result = {"error": "timed out" if process["timed_out"] else
                  f"exit code {process['returncode']}", "log_tail": processes.log_tail(log_path)}
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
             f"`{PROG}{' --smoke' if results['smoke'] else ''}`:", "",
             "| training run | device plan | loss finite | images/s per GPU | peak GPU MB |",
             "|---|---|---|---|---|"]
    for name, row in results["train"].items():
        if "error" in row:
            lines.append(f"| {name} | error: {row['error']} | | | |")
            continue
        plan = row["device_plan"]
        shapes = "static" if plan["static_shapes"] else "dynamic"
        lines.append(f"| {name} ({row['replicas']} x {row['global_batch'] // row['replicas']} "
                     f"images) | {shapes} shapes, determinism "
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

