"""How a training run uses its devices, decided in one place (`--strategy`, the machine,
`--deterministic`, `--jit_compile`, `--mixed_precision`).

Which op implementations a run may use depends on where it runs, and no user should need to know
which TensorFlow kernel exists where. The rules, each for a reason in TensorFlow 2.21:

| run | shapes (`Config.static_shapes`) | op determinism | XLA |
|---|---|---|---|
| CPU, one or several replicas | as configured (dynamic: crop_and_resize, fastest there) | as `--deterministic` | no |
| GPU(s), `--nodeterministic` | as configured (dynamic: crop_and_resize, fastest there) | off | no |
| GPU(s), `--deterministic` (the default) | static (gather-only RoIAlign) | on | no |
| `--jit_compile` (CPU or GPU) | static | off | yes |
| TPU | static | off | yes, always |

- On a GPU under op determinism TensorFlow refuses the gradient of crop_and_resize
  (`CropAndResizeGradImage`, `CropAndResizeGradBoxes`: "Deterministic GPU implementation ...
  not available"), so the default GPU run would stop at its first step. The static-shape,
  gather-only RoIAlign computes the same numbers (tests/ops/test_roi_align.py) with gathers, whose gradients TF
  computes deterministically. `training.op_audit` lists every op TF refuses and the test suite
  checks that no plan's training step contains one.
- XLA has no CropAndResize kernel; TPUs run everything through XLA.
- XLA compiles the step once per input shape, so under XLA batches padded each to its own
  size (`Config.batch_padding="batch"`) are padded to the fixed buckets instead
  (`ops.canvas.padding_buckets`: landscape, portrait and the square, so at most three
  compilations). A TPU needs every shape known when it compiles; the buckets path is tested
  under XLA on a CPU here, and "square" (one shape) stays the choice for a TPU that refuses
  unknown spatial sizes.
- Keras turns `jit_compile` off while op determinism is on, so `--jit_compile` wins over
  `--deterministic` (a resumed XLA run matches an unbroken one to float rounding only).
- TPUs compute in bfloat16: `--mixed_precision=mixed_float16` is refused there.
- Keypoints decoded the torchvision way resize each RoI's heatmaps to its own box size, a
  dynamic shape XLA cannot compile: under XLA the model decodes the Detectron2 way (the same
  point to within half a heatmap bin), as the TFLite export does.

`plan_run` applies a plan; `DevicePlan.to_dict()` is what `run.json` records under
"device_plan".
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import tensorflow as tf

from mrcnn_tf.config import Config
from mrcnn_tf.ops import keypoints as keypoint_ops
from mrcnn_tf.training import precision as precision_policy
from mrcnn_tf.training.distribute import STRATEGIES
from mrcnn_tf.training.precision import POLICIES

DEVICE_TYPES = ("CPU", "GPU", "TPU")


@dataclasses.dataclass(frozen=True)
class DevicePlan:
    """What a run does on its devices (see the module docstring for the rules).

    Fields:
      strategy: `--strategy`.
      device_type: "CPU", "GPU" or "TPU": where the model's ops run.
      precision: the Keras dtype policy.
      loss_scaling: dynamic loss scaling (mixed_float16).
      xla: the training step is compiled with XLA (`--jit_compile`, or a TPU).
      jit_compile: what `model.compile(jit_compile=...)` gets: `--jit_compile` itself (a TPU
        strategy compiles every step whatever Keras is told).
      op_determinism: `tf.config.experimental.enable_op_determinism()` is called.
      static_shapes: the shape policy of the model trained (`Config.static_shapes`).
      keypoint_decode_rule: how the trained model decodes keypoints (see `model_config`).
      batch_padding: how training batches are padded (`Config.batch_padding`): "buckets"
        instead of "batch" under XLA, which compiles the step once per shape.
      notes: one line per decision that differs from what the flags or config asked for.
    """

    strategy: str
    device_type: str
    precision: str
    loss_scaling: bool
    xla: bool
    jit_compile: bool
    op_determinism: bool
    static_shapes: bool
    keypoint_decode_rule: str
    batch_padding: str = "batch"
    notes: Tuple[str, ...] = ()

    def model_config(self, config: Config) -> Config:
        """`config` with this plan's shape policy, keypoint decoding and batch padding."""
        changes = {field: getattr(self, field) for field in (
            "static_shapes", "keypoint_decode_rule", "batch_padding")
            if getattr(config, field) != getattr(self, field)}
        return config.replace(**changes) if changes else config

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["notes"] = list(self.notes)
        return values

    def describe(self) -> str:
        """One line for the log."""
        return (f"device plan: {self.device_type} (--strategy={self.strategy}), "
                f"{self.precision}{' with loss scaling' if self.loss_scaling else ''}, "
                f"{'static' if self.static_shapes else 'dynamic'} shapes, "
                f"op determinism {'on' if self.op_determinism else 'off'}, "
                f"XLA {'on' if self.xla else 'off'}, batches padded by {self.batch_padding}")


def decide(strategy: str, device_type: str, deterministic: bool, jit_compile: bool,
           precision: str, config: Config) -> DevicePlan:
    """The plan for these flags on a machine whose model runs on `device_type`.

    Pure: reads no device and changes nothing. Raises ValueError, naming the flags and what to use instead, for a
    combination that cannot work.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"--strategy={strategy!r}: expected one of {STRATEGIES}")
    if device_type not in DEVICE_TYPES:
        raise ValueError(f"device type {device_type!r}: expected one of {DEVICE_TYPES}")
    if precision not in POLICIES:
        raise ValueError(f"--mixed_precision={precision!r}: expected one of {POLICIES}")
    if (strategy == "tpu") != (device_type == "TPU"):
        raise ValueError(f"--strategy={strategy} on a {device_type}: TPUs run only with "
                         "--strategy=tpu, and --strategy=tpu only on a TPU")
    notes = []
    tpu = device_type == "TPU"
    if tpu and precision == "mixed_float16":
        raise ValueError("--mixed_precision=mixed_float16 with --strategy=tpu: TPUs compute in "
                         "bfloat16, not float16; use --mixed_precision=mixed_bfloat16 (or "
                         "float32)")
    xla = bool(jit_compile) or tpu
    if tpu and not jit_compile:
        notes.append("XLA: a TPU compiles every step")
    op_determinism = bool(deterministic) and not xla
    if deterministic and not op_determinism:
        notes.append("op determinism off under XLA (Keras does not compile while it is on, "
                     "and a TPU's XLA programs are deterministic by themselves); a resumed "
                     "run matches an unbroken one to float rounding")
    static_shapes = config.static_shapes
    if not static_shapes:
        if xla:
            static_shapes = True
            notes.append("static shapes (gather-only RoIAlign): XLA has no CropAndResize "
                         "kernel")
        elif device_type == "GPU" and op_determinism:
            static_shapes = True
            notes.append("static shapes (gather-only RoIAlign): TensorFlow refuses "
                         "crop_and_resize's gradient on a GPU under op determinism "
                         "(--nodeterministic keeps crop_and_resize)")
    decode_rule = config.keypoint_decode_rule
    if (config.num_keypoints and xla
            and not keypoint_ops.KEYPOINT_DECODE_RULES[decode_rule].static_shapes):
        decode_rule = "detectron2"
        notes.append(f"keypoints decoded the Detectron2 way: the {config.keypoint_decode_rule} "
                     "decoding resizes each RoI to its own size, which XLA cannot compile")
    batch_padding = config.batch_padding
    if xla and batch_padding == "batch":
        batch_padding = "buckets"
        notes.append("batches padded to buckets (ops.canvas.padding_buckets: at most 3 "
                     "shapes), not each to its own size: XLA compiles the step once per shape")
    return DevicePlan(strategy=strategy, device_type=device_type, precision=precision,
                      loss_scaling=precision == "mixed_float16", xla=xla,
                      jit_compile=bool(jit_compile), op_determinism=op_determinism,
                      static_shapes=static_shapes,
                      keypoint_decode_rule=decode_rule, batch_padding=batch_padding,
                      notes=tuple(notes))


def local_device_type(strategy: str) -> str:
    """Where the model's ops run under `--strategy` on this machine: "TPU" for the TPU
    strategy, else "GPU" when TensorFlow sees a GPU, else "CPU"."""
    if strategy == "tpu":
        return "TPU"
    return "GPU" if tf.config.list_physical_devices("GPU") else "CPU"


def plan_run(strategy: str, deterministic: bool, jit_compile: bool, precision: str,
             config: Config, device_type: Optional[str] = None) -> DevicePlan:
    """Decides the plan for this machine (or `device_type`) and applies its process-wide
    parts: op determinism and the Keras dtype policy. Call before any model is built.

    Raises ValueError naming the flags for a combination that cannot work, before anything
    changed.
    """
    plan = decide(strategy, device_type or local_device_type(strategy), deterministic,
                  jit_compile, precision, config)
    precision_policy.set_precision(plan.precision)
    if plan.op_determinism:
        tf.config.experimental.enable_op_determinism()
    return plan
