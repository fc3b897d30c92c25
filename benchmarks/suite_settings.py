"""The settings of a suite run (`spec`): the mode's defaults (FULL, or SMOKE: a tiny model),
then the flags, checked against the benchmarked config at every size before any process
starts. Every benchmark's `run(spec)` gets the same dict.

Imports no TensorFlow: the suite's parent process never does.
"""

import json
import os
import sys

from benchmarks import configs
from mrcnn_tf.training import cpu_support  # (no TensorFlow in this process)

# The Keras dtype policies of mrcnn_tf.training.precision.POLICIES, spelled out because
# importing that module imports TensorFlow, which this parent process never does.
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
DEFAULT_PRECISIONS = ["float32", "mixed_bfloat16"]
# The benchmarks that give one row per --precisions policy.
PRECISION_BENCHMARKS = ("inference", "stages", "train_step")

# Full size: the R50-FPN settings. Smoke: a shapes_tiny-sized model that exercises the
# same code paths in seconds.
FULL = {
    "model": {"preset": "coco_r50_fpn", "overrides": {}},
    "sizes": [512, 1024], "batches": [1, 4], "warmup": 1, "repeats": 5, "timeout_s": 3600,
    # inference is also timed with about this many detections per image (a photo's 5 to 20).
    "few_detections": 10,
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
    "few_detections": 3,
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


def resolve_spec(args):
    """The settings every benchmark process gets: defaults of the mode, then the flags.

    Raises ValueError (naming the size and its flags) when a size does not fit the config.
    """
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
    spec["precisions"], spec["precisions_left_out"] = _runnable(precisions_per_benchmark(args))
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


def precisions_per_benchmark(args):
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
            print(f"[benchmarks] {policy} left out: {reason}", file=sys.stderr, flush=True)
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
