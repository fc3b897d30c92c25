"""The tasks of `python -m benchmarks` (their modules in benchmarks/tasks/), in the order
`--list` shows them.

A task has a name, a one-line description and a module, in one of two shapes:

- `Benchmark`, one of the suite: `benchmarks.tasks.<name>.run(spec)` measures, in a process
  of its own (benchmarks/worker.py imports `framework` first: TensorFlow with its threads
  pinned), and returns a JSON-ready dict of its rows. `spec` is the suite's resolved settings
  (benchmarks/suite_settings.py), so its arguments are the suite's (benchmarks/suite_flags.py)
  and its results go into results.json and RESULTS.md: `python -m benchmarks all` runs every
  benchmark, `python -m benchmarks NAME` one alone (benchmarks/suite.py).
- `Task`, a task of its own: its module's `add_arguments(parser)` declares its arguments and
  `main(args)` runs it (its `run(...)` returns the numbers), writes or prints them, and
  returns the exit status.

Nothing here imports a task's module, so listing the tasks imports no framework.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """A benchmark of the suite (module docstring)."""
    name: str
    description: str
    framework: str = "tensorflow"  # what its process imports first; None: nothing

    @property
    def module(self):
        return f"benchmarks.tasks.{self.name}"


@dataclasses.dataclass(frozen=True)
class Task:
    """A task of its own (module docstring)."""
    name: str
    description: str
    module: str


SUITE = (
    Benchmark("ceilings", "this machine's float32 and bfloat16 GFLOP/s on the R50-FPN's own "
                          "conv and matmul shapes, the bound each row is stated against"),
    Benchmark("flops", "per-stage FLOPs (analytic), checked against the R50-FPN reference "
                       "numbers"),
    Benchmark("inference", "model(images) + mask paste: median/p90 latency, GFLOP/s per "
                           "--precisions; mixed precision's detections against float32's"),
    Benchmark("stages", "backbone+FPN, RPN+proposals, box head+detection, mask head+paste, "
                        "per --precisions"),
    Benchmark("train_step", "one SGD step, batch 2, 3 objects per image, per --precisions"),
    Benchmark("input_pipeline", "tf.data images/s from a COCO-format folder and from "
                                "TFRecords"),
    Benchmark("export", "SavedModel and TFLite (float32, float16, int8 dynamic-range), each "
                        "timed in its own process"),
    Benchmark("scaling_size", "inference time against image size"),
    Benchmark("scaling_batch", "inference time against batch size"),
    Benchmark("scaling_instances", "training step time against objects per image"),
    Benchmark("scaling_proposals", "inference time against RPN proposals per image"),
    Benchmark("torchvision", "torchvision's maskrcnn_resnet50_fpn, same settings (skipped "
                             "without torch)", framework="torch"),
)
SUITE_NAMES = tuple(benchmark.name for benchmark in SUITE)

TASKS = (
    Task("all", "every benchmark of the suite below, into results.json and RESULTS.md "
                "(--only NAME,... for some)",
         "benchmarks.tasks.all_benchmarks"),
    *SUITE,
    Task("keypoints", "Keypoint R-CNN against torchvision's keypointrcnn_resnet50_fpn: "
                      "latency, keypoint branch share, FLOPs, memory",
         "benchmarks.tasks.keypoints"),
    Task("gpu", "GPU check: the training recipes run on this machine's GPUs, and how fast",
         "benchmarks.tasks.gpu"),
    Task("precision", "mixed precision and XLA: step times of one model per variant, timed "
                      "interleaved (small or r50)", "benchmarks.tasks.precision"),
    Task("op_profile", "where inference time goes: one traced call's op times by op type and "
                       "by model part", "benchmarks.tasks.op_profile"),
    Task("precision_agreement", "bfloat16 against float32 on a trained model: COCO APs, "
                                "detection agreement, latency at a realistic threshold",
         "benchmarks.tasks.precision_agreement"),
    Task("tflite_accuracy", "a trained model's TFLite files (float32, int8_dynamic, full-integer "
                            "int8): COCO APs against Keras, file size, latency",
         "benchmarks.tasks.tflite_accuracy"),
    Task("int8_sensitivity", "which layers cost full-integer int8 its AP: one calibration, "
                             "int8 files with chosen nodes kept float32, each scored",
         "benchmarks.tasks.int8_sensitivity"),
    Task("input_vs_step", "input pipeline images/s against the training step it feeds",
         "benchmarks.tasks.input_vs_step"),
    Task("coco_scale", "COCO-scale data path: padding per batch_padding, training images/s, "
                       "TFRecord bytes, batched predict, evaluate memory (--part)",
         "benchmarks.tasks.coco_scale"),
    Task("coco_eval_backends", "COCOeval backends, pycocotools against faster-coco-eval: "
                               "seconds and agreement on synthetic COCO-val-like data",
         "benchmarks.tasks.coco_eval_backends"),
)
NAMES = tuple(task.name for task in TASKS)


class UsageError(Exception):
    """Arguments of a task that argparse alone cannot judge (a size that does not fit the
    model, say): the command line reports the message as a usage error and exits 2."""


def find(name):
    """The task called `name`, or None."""
    return next((task for task in TASKS if task.name == name), None)
