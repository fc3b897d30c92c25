"""The device plan: one decision per run of RoIAlign, op determinism, XLA and precision, from
the strategy, the device type and the flags; and the refusals that end a run before any model
is built."""

import json
import os
import subprocess
import sys

import keras
import pytest
from tensorflow.python.framework import config as tf_config

from mrcnn_tf.config import get_config
from mrcnn_tf.training import device_plan

CONFIG = get_config("shapes_tiny", image_min_size=64, image_max_size=64)
KEYPOINTS = get_config("torchvision_keypointrcnn_r50_fpn")


def decide(strategy="default", device="CPU", deterministic=True, jit=False,
           policy="float32", config=CONFIG):
    return device_plan.decide(strategy, device, deterministic, jit, policy, config)


# (strategy, device, --deterministic, --jit_compile) -> (static shapes, op determinism, XLA)
RULES = [
    (("default", "CPU", True, False), (False, True, False)),
    (("mirrored", "CPU", False, False), (False, False, False)),
    (("default", "GPU", True, False), (True, True, False)),
    (("mirrored", "GPU", True, False), (True, True, False)),
    (("multi_worker", "GPU", True, False), (True, True, False)),
    (("mirrored", "GPU", False, False), (False, False, False)),
    (("default", "CPU", True, True), (True, False, True)),
    (("mirrored", "GPU", True, True), (True, False, True)),
    (("tpu", "TPU", True, False), (True, False, True)),
    (("tpu", "TPU", False, True), (True, False, True)),
]


@pytest.mark.parametrize("flags, expected", RULES)
def test_plan_follows_the_rules(flags, expected):
    strategy, device, deterministic, jit = flags
    plan = decide(strategy, device, deterministic, jit)
    assert (plan.static_shapes, plan.op_determinism, plan.xla) == expected
    assert plan.model_config(CONFIG).static_shapes == expected[0]
    # Whatever the plan changed says why, one note per change.
    if plan.static_shapes != CONFIG.static_shapes:
        assert any(n.startswith("static shapes (gather-only RoIAlign)") for n in plan.notes)
    if deterministic and not plan.op_determinism:
        assert any("op determinism off" in n for n in plan.notes)


def test_plan_keeps_a_config_that_asked_for_static_shapes():
    config = CONFIG.replace(static_shapes=True, batch_padding="buckets")
    for flags, _ in RULES:
        strategy, device, deterministic, jit = flags
        plan = decide(strategy, device, deterministic, jit, config=config)
        assert plan.static_shapes
        assert plan.model_config(config) is config
        assert not any(n.startswith("RoIAlign") for n in plan.notes)


def test_xla_pads_batches_to_buckets_unless_the_config_chose_fixed_ones():
    assert decide().batch_padding == "batch"
    xla = decide(jit=True)
    assert xla.batch_padding == "buckets"
    assert xla.model_config(CONFIG).batch_padding == "buckets"
    assert any("XLA compiles the step once per shape" in n for n in xla.notes)
    assert "batches padded by buckets" in xla.describe()
    for fixed in ("buckets", "square"):
        config = CONFIG.replace(batch_padding=fixed)
        plan = decide("tpu", "TPU", config=config)
        assert plan.model_config(config).batch_padding == fixed
        assert not any("buckets" in n for n in plan.notes)


def test_xla_decodes_torchvision_keypoints_the_static_way():
    assert decide(device="GPU", config=KEYPOINTS).keypoint_decode_rule == "torchvision"
    xla = decide(jit=True, config=KEYPOINTS)
    assert xla.keypoint_decode_rule == "detectron2"
    assert xla.model_config(KEYPOINTS).keypoint_decode_rule == "detectron2"
    assert any("keypoints decoded the Detectron2 way" in n for n in xla.notes)
    # A model without keypoints keeps its (unused) rule.
    assert decide(jit=True).model_config(CONFIG).keypoint_decode_rule == \
        CONFIG.keypoint_decode_rule


@pytest.mark.parametrize("policy, scaling", [("float32", False), ("mixed_float16", True),
                                             ("mixed_bfloat16", False)])
def test_precision_and_loss_scaling(policy, scaling):
    plan = decide(device="GPU", policy=policy)
    assert plan.precision == policy and plan.loss_scaling is scaling


@pytest.mark.parametrize("args, message", [
    (dict(strategy="tpu", device="TPU", policy="mixed_float16"),
     "--mixed_precision=mixed_float16 with --strategy=tpu: TPUs compute in bfloat16, not "
     "float16; use --mixed_precision=mixed_bfloat16"),
    (dict(strategy="tpu", device="GPU"), "--strategy=tpu on a GPU"),
    (dict(strategy="mirrored", device="TPU"), "--strategy=mirrored on a TPU"),
    (dict(strategy="parameter_server"), "--strategy='parameter_server': expected one of"),
    (dict(policy="float16"), "--mixed_precision='float16': expected one of"),
])
def test_impossible_combinations_name_the_flags(args, message):
    with pytest.raises(ValueError) as error:
        decide(**args)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_plan_is_recorded_as_json_and_described_in_one_line():
    plan = decide("mirrored", "GPU", True, False, "mixed_float16")
    recorded = json.loads(json.dumps(plan.to_dict()))
    assert device_plan.DevicePlan(**{**recorded, "notes": tuple(recorded["notes"])}) == plan
    line = plan.describe()
    assert "\n" not in line
    for part in ("GPU", "--strategy=mirrored", "mixed_float16 with loss scaling",
                 "static shapes", "op determinism on", "XLA off", "batches padded by batch"):
        assert part in line


def test_this_machine_is_planned_as_a_cpu():
    assert device_plan.local_device_type("default") == "CPU"
    assert device_plan.local_device_type("mirrored") == "CPU"
    assert device_plan.local_device_type("tpu") == "TPU"


def test_plan_run_applies_determinism_and_the_policy():
    assert not tf_config.is_op_determinism_enabled()
    try:
        plan = device_plan.plan_run("default", True, False, "mixed_bfloat16", CONFIG)
        assert plan.device_type == "CPU" and plan.op_determinism
        assert tf_config.is_op_determinism_enabled()
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    finally:
        tf_config.disable_op_determinism()
        keras.mixed_precision.set_global_policy("float32")
    with pytest.raises(ValueError, match="--strategy=tpu"):
        device_plan.plan_run("tpu", True, False, "mixed_float16", CONFIG)
    # Refused before anything changed.
    assert not tf_config.is_op_determinism_enabled()
    assert keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.parametrize("flags, message", [
    (["--strategy", "tpu", "--mixed_precision", "mixed_float16"],
     "--mixed_precision=mixed_float16 with --strategy=tpu"),
    (["--strategy", "tpu"], "--strategy=tpu: no TPU found"),
])
def test_a_run_that_cannot_work_ends_in_one_line_before_any_model(tmp_path, flags, message):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "mrcnn_tf.cli", "train", "--config", "shapes_tiny",
               "--override", "image_min_size=64", "--override", "image_max_size=64",
               "--synthetic_train_images", "2", "--run_dir", str(run_dir), *flags]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines()
              if line.startswith("mrcnn-tf train: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert not run_dir.exists()
