"""Pieces several test modules share: the small model config, box IoU, TF Serving's REST
JSON decoding rules, and runs of the `mrcnn-tf` command line (in a fresh process or in this
one). Test modules import them as `from helpers import ...`."""

import base64
import os
import subprocess
import sys

import numpy as np

from mrcnn_tf.config import get_config


def small_model_config(size=64, **overrides):
    """A `shapes_tiny` model small enough to export and run in seconds; score threshold 0 so
    an untrained model still answers with detections to compare."""
    values = dict(image_min_size=size, image_max_size=size, score_threshold=0.0,
                  detections_per_image=10, fpn_channels=32, box_head_fc_dim=64,
                  mask_head_conv_dim=32)
    values.update(overrides)
    return get_config("shapes_tiny", **values)


def save_small_model(path, size=64, seed=0):
    """Saves an untrained `small_model_config(size)` model (random weights from `seed`) as
    the .keras file `path`; returns the path as a string."""
    import keras  # noqa: PLC0415

    from mrcnn_tf.modeling.mask_rcnn import MaskRCNN  # noqa: PLC0415
    keras.utils.set_random_seed(seed)
    model = MaskRCNN(small_model_config(size))
    model.build()
    model.save(str(path))
    return str(path)


def box_iou(a, b):
    """IoU of (y1, x1, y2, x2) boxes, elementwise over leading dimensions ([4] or [N, 4])."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    inter_h = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0,
                      None)
    inter_w = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0,
                      None)
    inter = inter_h * inter_w
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def rest_body_inputs(body):
    """The values of a single-input signature from a TF Serving REST predict body.

    TF Serving's JSON rules: row format, "instances": [...], one entry per batch element,
    each either the bare value or {input_name: value}; columnar format, "inputs": value or
    {input_name: value}. A {"b64": "..."} object is the base64 of a DT_STRING element's bytes.
    """
    def value(v):
        if isinstance(v, dict) and set(v) == {"b64"}:
            return base64.b64decode(v["b64"])
        if isinstance(v, dict) and len(v) == 1:
            (v,) = v.values()  # {input_name: value}
            return value(v)
        if isinstance(v, dict):
            raise ValueError(f"cannot decode instance {str(v)[:80]}")
        return v

    if "instances" in body:
        return [value(inst) for inst in body["instances"]]
    inputs = body["inputs"]
    if isinstance(inputs, dict) and "b64" not in inputs:
        (inputs,) = inputs.values()
    return [value(v) for v in inputs]


def two_image_training_set(config, size, seed=11):
    """Two synthetic images with 1-2 shapes each, and the unshuffled, unaugmented training
    dataset over them (batch 2): (examples, dataset), for overfitting checks."""
    import tensorflow as tf  # noqa: PLC0415

    from mrcnn_tf.data import pipeline, shapes  # noqa: PLC0415
    examples = shapes.make_shapes_arrays(2, seed=seed, image_size=size, min_shapes=1,
                                         max_shapes=2)
    raw = tf.data.Dataset.from_generator(
        lambda: iter(examples), output_signature=shapes.shapes_output_signature(size))
    data = pipeline.make_training_dataset(raw.cache(), config, 2, shuffle=False,
                                          augment=False, seed=0)
    return examples, data


def skip_unless_cpu_runs(policy):
    """Skips the calling test where this process's CPU kernels cannot compute in `policy`'s
    dtype (oneDNN capped by ONEDNN_MAX_CPU_ISA below what TensorFlow routes to it: bfloat16 and
    float16 under AVX2, float16 under AVX512_CORE on an AMX Xeon), after checking that
    `set_precision` refuses the policy with one line naming the flag and the cap. Elsewhere,
    including every uncapped CPU, it does nothing."""
    import re  # noqa: PLC0415

    import pytest  # noqa: PLC0415

    from mrcnn_tf.training import cpu_support, precision  # noqa: PLC0415
    reason = cpu_support.unsupported_reason(policy)
    if reason is None:
        return
    with pytest.raises(ValueError, match=re.escape(f"--mixed_precision={policy}: ")
                       + ".*" + re.escape(cpu_support.isa_cap())):
        precision.set_precision(policy)  # refused: the global policy is left as it was
    pytest.skip(f"{policy} cannot run here: {reason}")


def fit_until(model, data, check, *, first_check, check_every, max_steps):
    """Fits `model` on `data` until `check(model)` passes: a stopping criterion rather than a
    fixed step count, so a test of what training reaches does not depend on how fast one CPU's
    kernels (oneDNN's AMX, AVX-512 and AVX2 paths round differently) happen to get there.

    `check(model)` returns (passed, detail). It runs after `first_check` steps, then every
    `check_every` steps; the test fails after `max_steps` with the last detail. Returns the
    number of steps taken.
    """
    import pytest  # noqa: PLC0415
    steps = 0
    while True:
        chunk = min(first_check if steps == 0 else check_every, max_steps - steps)
        model.fit(data, steps_per_epoch=chunk, epochs=1, verbose=0)
        steps += chunk
        passed, detail = check(model)
        if passed:
            return steps
        if steps >= max_steps:
            pytest.fail(f"training did not reach the criterion in {steps} steps: {detail}")


# Dataset category ids of the small labelled model: any integers, 0 included.
CATEGORY_IDS = [5, 0, 9]


def small_labelled_model(**overrides):
    """A MaskRCNN of `small_model_config(**overrides)` with shapes class names and
    CATEGORY_IDS, seed 0."""
    import keras  # noqa: PLC0415

    from mrcnn_tf.modeling.mask_rcnn import MaskRCNN  # noqa: PLC0415
    keras.utils.set_random_seed(0)
    return MaskRCNN(small_model_config(**overrides), class_names=["square", "circle", "triangle"],
                    category_ids=CATEGORY_IDS)


def import_torch_or_skip(purpose, allow_module_level=False):
    """(torch, torchvision), or skips the test (or module) saying what needed them."""
    import pytest  # noqa: PLC0415
    try:
        import torch  # noqa: PLC0415
        import torchvision  # noqa: PLC0415
    except ImportError:
        pytest.skip(f"torch / torchvision are not installed ({purpose}); they come with the "
                    "optional extra: pip install mrcnn-tf[torch]",
                    allow_module_level=allow_module_level)
    return torch, torchvision


# Every preset family the device-plan audits cover (tests/training/test_op_audit_*.py):
# {label: (preset, changes)}. The ResNet-50 backbone is audited once (coco_r50_fpn); the other
# families use the tiny backbone with the preset's own norm, since the backbone's depth adds no
# op type and a deeper one only makes tracing slower.
AUDIT_FAMILIES = {
    "mask: coco_r50_fpn": ("coco_r50_fpn", {}),
    "keypoint: keypoint_rcnn_r50_fpn": ("keypoint_rcnn_r50_fpn", {"backbone": "tiny"}),
    "mask + keypoint": ("keypoint_rcnn_r50_fpn", {"backbone": "tiny", "mask_on": True}),
    "torchvision mask v1": ("torchvision_maskrcnn_r50_fpn", {"backbone": "tiny"}),
    "torchvision mask v2": ("torchvision_maskrcnn_r50_fpn_v2", {"backbone": "tiny"}),
    "torchvision keypoint": ("torchvision_keypointrcnn_r50_fpn", {"backbone": "tiny"}),
    "shapes_tiny (bn)": ("shapes_tiny", {}),
    "shapes_keypoints_tiny (bn)": ("shapes_keypoints_tiny", {}),
}


def build_under_policy(config, policy, weights=None):
    """A built MaskRCNN of `config` whose layers compute under the Keras dtype `policy`
    (the global policy is float32 again on return), with `weights` if given."""
    from mrcnn_tf.modeling.mask_rcnn import MaskRCNN  # noqa: PLC0415
    from mrcnn_tf.training import precision  # noqa: PLC0415
    with precision.global_policy(policy):
        model = MaskRCNN(config)
        model.build()
    if weights is not None:
        model.set_weights(weights)
    return model


def audit_config(label, size=128):
    """The config of AUDIT_FAMILIES[label] at `size` px with no downloaded weights, and few
    proposals, RoIs and detections (counts change no op type, and building the model runs
    inference eagerly on every detection)."""
    preset, changes = AUDIT_FAMILIES[label]
    return get_config(preset, image_min_size=size, image_max_size=size, train_min_sizes=(),
                      backbone_weights=None, rpn_pre_nms_topk_train=100,
                      rpn_post_nms_topk_train=50, rpn_pre_nms_topk_test=100,
                      rpn_post_nms_topk_test=50, roi_batch_size_per_image=32, max_instances=4,
                      detections_per_image=8, **changes)


def run_cli(*args):
    """Runs `python -m mrcnn_tf.cli ARGS` in a fresh process; returns its CompletedProcess."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "mrcnn_tf.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def run_inprocess(capsys, *args):
    """Runs `mrcnn-tf ARGS` here; returns (exit code, stdout, stderr)."""
    from absl import flags  # noqa: PLC0415

    from mrcnn_tf.cli import main as cli_main  # noqa: PLC0415
    flags.FLAGS.unparse_flags()
    code = 0
    try:
        cli_main.run(["mrcnn-tf", *args])
    except SystemExit as exit_:
        code = exit_.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, *needles):
    """A user error: exit code 2 and one `mrcnn-tf ...` line on stderr holding every needle,
    no traceback."""
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith("mrcnn-tf")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
