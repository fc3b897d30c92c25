"""Speed and memory of Keypoint R-CNN (R50-FPN), against torchvision's keypointrcnn_resnet50_fpn
on the same machine, image size, threads, score threshold and detection count.

    python benchmarks/keypoints.py                          # 512 and 800 px, 3 timed runs
    python benchmarks/keypoints.py --sizes 512 --repeats 1 --out /tmp/keypoints.json
    python benchmarks/keypoints.py --smoke                  # tiny preset at 64 px, < 60 s

What is measured, per framework and image size (batch 1, float32), each (framework, size) in
its own process (benchmarks/worker.py) so that its peak RSS is its own:

  end_to_end         the whole model on one uint8 / float image: latency median and p90 over
                     --repeats timed runs after --warmup untimed ones, peak RSS of those runs
  without_keypoints  the same model without its keypoint branch: mrcnn_tf's backbone_fpn,
                     rpn_proposals and box_detection stage functions (benchmarks/stages.py)
                     chained; torchvision's model with its keypoint predictor switched off
  keypoint_branch    keypoint RoIAlign + keypoint head + heatmap decode alone, fed the real
                     features and detections of that image (recorded once)

The keypoint share is keypoint_branch / end_to_end (and, as a cross-check that is noisier,
(end_to_end - without_keypoints) / end_to_end). The keypoint head's FLOPs per RoI are analytic
(`keypoint_head_flops`: its 3x3 convs at the RoIAlign size and the stride-2 transposed conv;
1 multiply-add = 2 FLOP, as benchmarks/flops.py), checked against benchmarks/flops.py's layer
counts for mrcnn_tf and torch's FlopCounterMode for torchvision; GFLOP/s of the branch is that
count times the RoIs the head ran on, over the branch's median latency.

Weights are random, made numerically sane as the other benchmarks' (benchmarks/random_init.py;
torchvision's likewise) and the box score threshold is 0, so that every one of the D = 100
detection slots is a real detection and reaches the keypoint head (mrcnn_tf's crop_and_resize
RoIAlign runs the head on the real detections only, `MaskRCNN.head_rows`; torchvision's head
runs on its post-NMS detections): the output says how many ran. `--smoke` runs the
shapes_keypoints_tiny preset with 10 detections (torchvision's R50 with 2) at 64 px, one timed
run, to check this script in the test suite; its numbers mean nothing.

Prints a markdown table and writes the JSON to --out (default: a temporary folder, printed).
Nothing here imports TensorFlow or torch at module level: each child imports only its own.
"""

import argparse
import contextlib
import copy
import json
import os
import shlex
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import harness, report  # noqa: E402
from benchmarks import run as suite  # noqa: E402 (imports neither TF nor torch)

FRAMEWORKS = ("mrcnn_tf", "torchvision")
WORKER_NAMES = {framework: f"keypoints_{framework}" for framework in FRAMEWORKS}
PARTS = ("end_to_end", "without_keypoints", "keypoint_branch")
# The transposed conv of both heads (KeypointHead.score_lowres, KeypointRCNNPredictor): 4 x 4,
# stride 2, so 14 x 14 pooled features give 28 x 28 maps, bilinearly upsampled to 56 x 56.
DECONV_KERNEL = 4

FULL = {
    "model": {"preset": "keypoint_rcnn_r50_fpn", "overrides": {}},
    "sizes": [512, 800], "warmup": 1, "repeats": 3, "timeout_s": 3600,
    # num_classes=2: background + person, the one class of keypoint_rcnn_r50_fpn.
    "torchvision": {"kwargs": {"num_classes": 2}},
}
SMOKE = {
    "model": {"preset": "shapes_keypoints_tiny", "overrides": {
        "detections_per_image": 10, "rpn_pre_nms_topk_test": 100,
        "rpn_post_nms_topk_test": 50}},
    "sizes": [64], "warmup": 1, "repeats": 1, "timeout_s": 300,
    # torchvision's model is always R50-FPN: run.py's few proposals and detections keep it
    # quick at 64 px (2 RoIs through the 8 x 512 head are still ~14 GFLOP).
    "torchvision": {"kwargs": dict(suite.SMOKE["torchvision"]["kwargs"], num_classes=2)},
}


# -- FLOPs -----------------------------------------------------------------------------------
def keypoint_head_flops(pool_size, in_channels, conv_dim, num_convs, num_keypoints,
                        deconv_kernel=DECONV_KERNEL):
    """Analytic FLOPs of one RoI through a Keypoint R-CNN head (1 multiply-add = 2 FLOP).

    `num_convs` 3x3 "same" convs at pool_size x pool_size, the first in_channels -> conv_dim
    and the others conv_dim -> conv_dim, then the deconv_kernel x deconv_kernel stride-2
    transposed conv to `num_keypoints` maps, each of whose pool_size^2 input pixels meets the
    whole kernel once. Biases, ReLUs and the 2x bilinear upsample are not counted (under 0.1%).

    R50-FPN (14, 256, 512, 8, 17): 2 * 196 * 9 * (256 * 512 + 7 * 512^2) + 2 * 196 * 16 * 512
    * 17 = 6.99 GFLOP per RoI (the first conv reads the FPN's 256 channels, not 512).

    Returns dict of ints: convs, transposed_conv, per_roi (their sum).
    """
    area = int(pool_size) ** 2
    widths = [int(in_channels)] + [int(conv_dim)] * int(num_convs)  # each conv's input width
    convs = sum(2 * area * 9 * cin * int(conv_dim) for cin in widths[:-1])
    transposed = 2 * area * int(deconv_kernel) ** 2 * widths[-1] * int(num_keypoints)
    return {"convs": convs, "transposed_conv": transposed, "per_roi": convs + transposed}


# -- what both children share ----------------------------------------------------------------
def time_parts(calls, spec, size):
    """harness.timed_row of each of PARTS (calls: name -> zero-argument callable that blocks
    until done): {name: row}, each with its latency statistics and the peak RSS of its runs."""
    return {name: harness.timed_row(calls[name], spec, size=size, batch=1, part=name)
            for name in PARTS}


def size_result(framework, size, parts, detections, head_shape, flop_check, **extra):
    """The JSON of one framework at one size.

    Args:
      parts: `time_parts`' rows; detections: dict min_detections (fewest detections of the
        end-to-end runs), keypoint_rows (RoIs the keypoint head ran on), detections_per_image.
      head_shape: `keypoint_head_flops` keyword arguments read off the built head.
      flop_check: the keypoint branch's FLOPs counted another way ({"counted", "source"}).
      extra: added as they are (model, threads, keypoints_shape, ...); total_flops (one
        inference) also gives total_gflop and achieved_gflops.
    """
    flops = keypoint_head_flops(**head_shape)
    branch_flops = flops["per_roi"] * detections["keypoint_rows"]
    end_ms = parts["end_to_end"]["median_ms"]
    branch_ms = parts["keypoint_branch"]["median_ms"]
    result = {"framework": framework, "size": int(size), "batch": 1, "precision": "float32",
              "parts": parts, **detections,
              "keypoint_head": {"shape": head_shape, "flops_per_roi": flops},
              "keypoint_flops": branch_flops,
              "keypoint_flop_check": dict(flop_check, analytic=branch_flops),
              "keypoint_gflop": round(branch_flops / 1e9, 3),
              "keypoint_achieved_gflops": round(branch_flops / 1e6 / branch_ms, 2),
              "keypoint_share": round(branch_ms / end_ms, 4),
              "keypoint_share_by_difference": round(
                  (end_ms - parts["without_keypoints"]["median_ms"]) / end_ms, 4)}
    result.update(extra)
    if result.get("total_flops"):
        result["total_gflop"] = round(result["total_flops"] / 1e9, 3)
        result["achieved_gflops"] = round(result["total_flops"] / 1e6 / end_ms, 2)
    return result


# -- mrcnn_tf (child process) ----------------------------------------------------------------
def _mrcnn_tf_calls(model, size):
    """The three timed callables of PARTS for a keypoint MaskRCNN on one noise image, and what
    they saw: (calls, facts) with facts min_detections (a list, one per end-to-end run),
    keypoint_rows and keypoints_shape [1, D, K, 3]."""
    import tensorflow as tf  # noqa: PLC0415 (TF only in the child that times it)

    from benchmarks import stages, synthetic  # noqa: PLC0415
    from mrcnn_tf.modeling import branches  # noqa: PLC0415

    images = tf.constant(synthetic.random_images(1, size))
    inference = tf.function(lambda x: model(x, training=False),
                            input_signature=stages.image_signature(size))
    # Only the first three stage functions are called (so traced): there is no mask head.
    functions = stages.make_stage_functions(model, size)

    def before_keypoints():
        s1 = functions["backbone_fpn"](images)
        s2 = functions["rpn_proposals"](s1["features"], s1["image_shape"], s1["padded_hw"])
        return s1, functions["box_detection"](s1["features"], s2["proposals"], s2["valid"],
                                              s1["image_shape"])

    @tf.function(reduce_retracing=True)
    def keypoint_branch(features, boxes, scores, num_detections):
        # The model's own branch (RoIAlign on the real rows, head, decode, padding), exactly
        # what MaskRCNN.detect runs after the detection layer.
        detections = {"boxes": boxes, "scores": scores, "num_detections": num_detections}
        return branches.KEYPOINT.infer(model, features, detections, False)["keypoints"]

    s1, detections = before_keypoints()
    used = model.head_rows(detections)  # None: the builtin RoIAlign runs all D rows
    facts = {"min_detections": [], "keypoint_rows": int(
        model.config.detections_per_image if used is None else used)}

    def end_to_end():
        outputs = inference(images)
        facts["min_detections"].append(int(outputs["num_detections"].numpy().min()))
        facts["keypoints_shape"] = list(outputs["keypoints"].shape)

    def branch():
        return keypoint_branch(s1["features"], detections["boxes"], detections["scores"],
                               detections["num_detections"])[:, :, 0, 0].numpy()

    calls = {"end_to_end": end_to_end,
             "without_keypoints": lambda: before_keypoints()[1]["num_detections"].numpy(),
             "keypoint_branch": branch}
    return calls, facts


def _mrcnn_tf_flops(model, size):
    """(FLOPs of one inference but the keypoint head, the keypoint head's FLOPs per RoI) from
    benchmarks/flops.py: its stage counts, and its conv_flops / transposed_conv_flops on the
    built KeypointHead's kernels (an independent count of `keypoint_head_flops`)."""
    from benchmarks import flops as flop_count  # noqa: PLC0415 (imports Keras)
    config, head = model.config, model.keypoint_head
    pool = config.keypoint_pool_size
    per_roi = (sum(flop_count.conv_flops(pool, pool, conv.kernel.shape) for conv in head.convs)
               + flop_count.transposed_conv_flops(pool, pool, head.score_lowres.kernel.shape))
    hp, wp = flop_count.padded_size(config, size, size)
    rest = (flop_count.backbone_flops(config, hp, wp) + flop_count.fpn_flops(model, hp, wp)
            + flop_count.rpn_flops(model, hp, wp)
            + flop_count.box_head_flops(model, config.rpn_post_nms_topk_test))
    return rest, per_roi


def _mrcnn_tf_head_shape(model):
    """`keypoint_head_flops` arguments read off a built KeypointHead (Keras kernels: conv
    [3, 3, in, out], transposed conv [k, k, K, in])."""
    head = model.keypoint_head
    deconv = [int(d) for d in head.score_lowres.kernel.shape]
    first = [int(d) for d in head.convs[0].kernel.shape] if head.convs else [0, 0, deconv[3],
                                                                            deconv[3]]
    return {"pool_size": model.config.keypoint_pool_size, "in_channels": first[2],
            "conv_dim": first[3], "num_convs": len(head.convs), "num_keypoints": deconv[2],
            "deconv_kernel": deconv[0]}


def bench_keypoints_mrcnn_tf(spec):
    """mrcnn_tf's Keypoint R-CNN at each of spec["sizes"]: {"rows": [size_result, ...]}."""
    from benchmarks.configs import model_config  # noqa: PLC0415
    from benchmarks.tasks import build_model  # noqa: PLC0415 (imports TF)
    rows = []
    for size in spec["sizes"]:
        config = model_config(spec, size)
        if not config.num_keypoints:
            raise ValueError(f"preset {config.name} has no keypoint head (num_keypoints = 0)")
        model = build_model(config)
        calls, facts = _mrcnn_tf_calls(model, size)
        parts = time_parts(calls, spec, size)
        head_shape = _mrcnn_tf_head_shape(model)
        rows_run = facts["keypoint_rows"]
        rest, per_roi = _mrcnn_tf_flops(model, size)  # after timing: the rows' own peak RSS
        rows.append(size_result(
            "mrcnn_tf", size, parts,
            {"min_detections": min(facts["min_detections"]),
             "keypoint_rows": rows_run,
             "detections_per_image": config.detections_per_image},
            head_shape,
            {"counted": per_roi * rows_run,
             "source": "benchmarks/flops.py conv_flops + transposed_conv_flops of the built "
                       "KeypointHead's kernels"},
            keypoints_shape=facts["keypoints_shape"], threads=spec["threads"],
            total_flops=rest + keypoint_head_flops(**head_shape)["per_roi"] * rows_run,
            model=f"mrcnn_tf MaskRCNN({config.name}), {config.roi_align_implementation} "
                  f"RoIAlign, {config.keypoint_decode_rule} keypoint decode, "
                  f"{config.rpn_post_nms_topk_test} proposals"))
        del model
    return {"rows": rows}


# -- torchvision (child process) -------------------------------------------------------------
@contextlib.contextmanager
def _keypoints_off(model):
    """torchvision's RoIHeads skips its keypoint branch while `keypoint_predictor` is None
    (RoIHeads.has_keypoint): the model without that branch, nothing else changed."""
    heads = model.roi_heads
    predictor, heads.keypoint_predictor = heads.keypoint_predictor, None
    try:
        yield model
    finally:
        heads.keypoint_predictor = predictor


def _torchvision_calls(model, images):
    """The three timed callables of PARTS for torchvision's KeypointRCNN on `images` (a list
    of one float [3, S, S] tensor in 0..1), and what they saw (as `_mrcnn_tf_calls`)."""
    from torchvision.models.detection.roi_heads import keypointrcnn_inference  # noqa: PLC0415
    heads = model.roi_heads
    # The branch's inputs, recorded once: features, and the post-NMS boxes that
    # RoIHeads.forward hands to its keypoint branch (in the transformed frame).
    batch, _ = model.transform(images)
    features = model.backbone(batch.tensors)
    with _keypoints_off(model):
        detections, _ = heads(features, model.rpn(batch, features)[0], batch.image_sizes)
    boxes = [d["boxes"] for d in detections]
    facts = {"min_detections": [], "keypoint_rows": min(len(b) for b in boxes)}

    def end_to_end():
        outputs = model(images)
        facts["min_detections"].append(min(len(d["keypoints"]) for d in outputs))
        facts["keypoints_shape"] = [1] + list(outputs[0]["keypoints"].shape)

    def without_keypoints():
        with _keypoints_off(model):
            return model(images)

    def branch():
        # RoIHeads.forward's keypoint branch at inference, line for line.
        pooled = heads.keypoint_roi_pool(features, boxes, batch.image_sizes)
        logits = heads.keypoint_predictor(heads.keypoint_head(pooled))
        return keypointrcnn_inference(logits, boxes)

    return {"end_to_end": end_to_end, "without_keypoints": without_keypoints,
            "keypoint_branch": branch}, facts


def _torchvision_head_shape(model):
    """`keypoint_head_flops` arguments read off torchvision's keypoint head and predictor
    (torch weights: conv [out, in, 3, 3], transposed conv [in, K, k, k])."""
    import torch  # noqa: PLC0415
    heads = model.roi_heads
    convs = [m for m in heads.keypoint_head.modules() if isinstance(m, torch.nn.Conv2d)]
    deconv = heads.keypoint_predictor.kps_score_lowres.weight.shape
    pool = heads.keypoint_roi_pool.output_size
    return {"pool_size": int(pool[0] if isinstance(pool, (tuple, list)) else pool),
            "in_channels": int(convs[0].in_channels if convs else deconv[0]),
            "conv_dim": int(convs[0].out_channels if convs else deconv[0]),
            "num_convs": len(convs), "num_keypoints": int(deconv[1]),
            "deconv_kernel": int(deconv[2])}


def _torchvision_flops(model, images):
    """(total FLOPs of one forward pass, FLOPs of the keypoint head + predictor) from torch's
    FlopCounterMode, an independent count of `keypoint_head_flops`."""
    from torch.utils.flop_counter import FlopCounterMode  # noqa: PLC0415
    counter = FlopCounterMode(display=False)
    with counter:
        model(images)
    counts = counter.get_flop_counts()
    name = type(model).__name__ + ".roi_heads.keypoint_"
    keypoint = sum(sum(counts.get(name + part, {}).values()) for part in ("head", "predictor"))
    return counter.get_total_flops(), keypoint


def bench_keypoints_torchvision(spec):
    """torchvision's keypointrcnn_resnet50_fpn at each of spec["sizes"], as
    `bench_keypoints_mrcnn_tf` measures ours: {"rows": [...], "versions": ...}."""
    from benchmarks import torchvision_benchmark as tv  # noqa: PLC0415 (imports torch)
    tv.require_torch()
    torch = tv.torch
    harness.pin_torch_threads(spec["threads"])
    settings = spec["torchvision"]
    rows = []
    with torch.inference_mode():
        for size in spec["sizes"]:
            model = tv.build_model(size, settings, constructor="keypointrcnn_resnet50_fpn")
            images = [torch.rand(3, size, size, generator=torch.Generator().manual_seed(0))]
            calls, facts = _torchvision_calls(model, images)
            parts = time_parts(calls, spec, size)
            total, keypoint = _torchvision_flops(model, images)  # after timing: its own peak
            rows.append(size_result(
                "torchvision", size, parts,
                {"min_detections": min(facts["min_detections"]),
                 "keypoint_rows": facts["keypoint_rows"],
                 "detections_per_image": model.roi_heads.detections_per_img},
                _torchvision_head_shape(model),
                {"counted": keypoint, "source": "torch.utils.flop_counter.FlopCounterMode"},
                keypoints_shape=facts["keypoints_shape"], total_flops=total,
                threads=torch.get_num_threads(),
                model="torchvision.models.detection.keypointrcnn_resnet50_fpn(weights=None, "
                      "weights_backbone=None), eval, box_score_thresh=0, min_size=max_size="
                      f"size, {settings.get('kwargs', {})}"))
            del model
    return {"rows": rows,
            "versions": {"torch": torch.__version__, "torchvision": tv.torchvision.__version__}}


# -- the parent: flags, one process per (framework, size), the report -------------------------
def _int_at_least(flag, lowest):
    """argparse type: an integer >= `lowest`, naming `flag` when it is not."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < lowest:
            raise argparse.ArgumentTypeError(f"{flag}={text!r}: expected an integer >= {lowest}")
        return value
    return parse


def _frameworks(text):
    """argparse type of --frameworks: a subset of FRAMEWORKS, in FRAMEWORKS order."""
    names = {name.strip() for name in text.split(",") if name.strip()}
    if not names or names - set(FRAMEWORKS):
        raise argparse.ArgumentTypeError(f"--frameworks={text!r}: expected a comma-separated "
                                         f"subset of {', '.join(FRAMEWORKS)}")
    return [name for name in FRAMEWORKS if name in names]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=suite._int_list("--sizes"), default=None,
                        help="square image sizes (default 512,800; smoke 64)")
    parser.add_argument("--repeats", type=_int_at_least("--repeats", 1), default=None,
                        help="timed runs per part (default 3; smoke 1)")
    parser.add_argument("--warmup", type=_int_at_least("--warmup", 0), default=None,
                        help="untimed runs first, tracing included (default 1)")
    parser.add_argument("--threads", type=_int_at_least("--threads", 1), default=2,
                        help="TF intra/inter-op and torch threads (default 2)")
    parser.add_argument("--frameworks", type=_frameworks, default=list(FRAMEWORKS),
                        help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default both)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny preset at 64 px, 1 timed run: checks the script, < 60 s")
    parser.add_argument("--out", default=None,
                        help="results JSON (default: a new temporary folder, printed)")
    parser.add_argument("--omp_wait_policy", choices=("PASSIVE", "ACTIVE", "default"),
                        default=None,
                        help="OMP_WAIT_POLICY of the processes (see harness.thread_env; default "
                             "PASSIVE with --smoke, else the environment's)")
    parser.add_argument("--timeout", type=_int_at_least("--timeout", 1), default=None,
                        help="seconds before a process is killed (default 3600; smoke 300)")
    parser.add_argument("--logs", default=None,
                        help="keep each process's spec, result and log here (default: a "
                             "temporary folder, deleted)")
    return parser.parse_args(argv)


def resolve_spec(args):
    """The settings each child gets (with one of its sizes): the mode's defaults, the flags."""
    spec = copy.deepcopy(SMOKE if args.smoke else FULL)
    given = {"sizes": args.sizes, "repeats": args.repeats, "warmup": args.warmup,
             "timeout_s": args.timeout}
    spec.update({key: value for key, value in given.items() if value is not None})
    # Spinning OpenMP threads fight other work for the cores (harness.thread_env): a smoke run
    # in the test suite shares the CPU, so it sleeps them; "default" leaves the environment's.
    policy = args.omp_wait_policy or ("PASSIVE" if args.smoke else "default")
    spec.update(smoke=bool(args.smoke), threads=args.threads,
                omp_wait_policy=None if policy == "default" else policy,
                init="random weights (seed 0) made numerically sane by benchmarks/"
                     "random_init.py (zero_init_residual, calibrated stem norm), "
                     "torchvision's by the same treatment")
    return spec


@contextlib.contextmanager
def _logs_folder(path):
    """Yields `path` (created) or, when it is None, a temporary folder deleted afterwards."""
    if path:
        os.makedirs(path, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="mrcnn-keypoints-logs-") as folder:
        yield folder


def run_all(spec, frameworks, workdir):
    """Runs each (framework, size) in its own process, one at a time (parallel runs would
    share the CPU and skew each other's timings). Returns the list of run entries."""
    runs, skipped = [], {}
    for size in spec["sizes"]:
        for framework in frameworks:
            if framework in skipped:  # torch absent: no point in asking at every size
                runs.append({"framework": framework, "size": size, "status": "skipped",
                             "reason": skipped[framework]})
                continue
            folder = os.path.join(workdir, f"{framework}_{size}")
            os.makedirs(folder, exist_ok=True)
            entry = harness.run_worker(WORKER_NAMES[framework], dict(spec, sizes=[size]),
                                       folder, spec["timeout_s"])
            entry.update(framework=framework, size=size)
            print(f"[keypoints.py] {framework} {size}px ({entry['process']['wall_s']} s, "
                  f"process peak RSS {entry.get('process_peak_rss_mb')} MB): "
                  f"{report._status_cell(entry)}", flush=True)
            if entry["status"] == "skipped":
                skipped[framework] = entry["reason"]
            runs.append(entry)
    return runs


def table_rows(runs):
    """One flat row per measured (framework, size): the numbers of the markdown table, the
    child's process peak RSS included."""
    rows = []
    for entry in runs:
        for result in (entry.get("results") or {}).get("rows", []):
            parts = result["parts"]
            rows.append({
                "framework": result["framework"], "size": result["size"],
                "min_detections": result["min_detections"],
                "keypoint_rows": result["keypoint_rows"],
                "detections_per_image": result["detections_per_image"],
                **{f"{part}_{stat}": parts[part][stat] for part in PARTS
                   for stat in ("median_ms", "p90_ms")},
                "keypoint_share": result["keypoint_share"],
                "keypoint_share_by_difference": result["keypoint_share_by_difference"],
                "keypoint_gflop": result["keypoint_gflop"],
                "keypoint_achieved_gflops": result["keypoint_achieved_gflops"],
                "total_gflop": result.get("total_gflop"),
                "achieved_gflops": result.get("achieved_gflops"),
                "peak_rss_mb": parts["end_to_end"]["peak_rss_mb"],
                "process_peak_rss_mb": entry.get("process_peak_rss_mb")})
    return rows


def _ratio_lines(rows):
    """'- SIZEpx: mrcnn_tf / torchvision end to end R, keypoint branch R' for each size
    measured by both (none: no lines, not even the blank one before them)."""
    theirs = {r["size"]: r for r in rows if r["framework"] == "torchvision"}
    lines = []
    for ours in rows:
        other = theirs.get(ours["size"]) if ours["framework"] == "mrcnn_tf" else None
        if other:
            ratio = {part: ours[f"{part}_median_ms"] / other[f"{part}_median_ms"]
                     for part in ("end_to_end", "keypoint_branch")}
            lines.append(f"- {ours['size']}px: mrcnn_tf / torchvision end to end "
                         f"{ratio['end_to_end']:.2f}, keypoint branch "
                         f"{ratio['keypoint_branch']:.2f} (> 1: mrcnn_tf slower)")
    return [""] + lines if lines else []


def render(results):
    """The markdown: settings, one table row per (framework, size), the mrcnn_tf /
    torchvision ratios, and what was skipped or failed."""
    settings = results["settings"]
    lines = ["### Keypoint R-CNN: mrcnn_tf against torchvision", "",
             f"`{settings['model']['preset']}` vs keypointrcnn_resnet50_fpn, batch 1, float32, "
             f"{settings['init']}; box score threshold 0; {settings['threads']} threads; "
             f"{settings['warmup']} warm-up + {settings['repeats']} timed runs, median and "
             "p90. Keypoint branch = keypoint RoIAlign + head + decode timed alone on the real "
             "detections; share = branch / end to end (by difference: (end to end - without "
             "keypoints) / end to end). Peak RSS: the end-to-end runs' (process: the whole "
             "child process's)." + (" SMOKE RUN: tiny model, numbers mean nothing."
                                    if results["smoke"] else ""), ""]
    body = [[r["framework"], r["size"],
             f"{r['min_detections']} / {r['keypoint_rows']} of {r['detections_per_image']}",
             r["end_to_end_median_ms"], r["end_to_end_p90_ms"], r["without_keypoints_median_ms"],
             r["keypoint_branch_median_ms"], r["keypoint_branch_p90_ms"],
             f"{100 * r['keypoint_share']:.1f}%",
             f"{100 * r['keypoint_share_by_difference']:.1f}%", r["keypoint_gflop"],
             r["keypoint_achieved_gflops"], r["total_gflop"], r["achieved_gflops"],
             r["peak_rss_mb"], r["process_peak_rss_mb"]] for r in results["rows"]]
    lines += report._table(
        ["framework", "size", "detections / head RoIs", "median ms", "p90 ms",
         "without keypoints ms", "keypoint branch ms", "branch p90 ms", "branch share",
         "share by difference", "keypoint GFLOP", "keypoint GFLOP/s", "total GFLOP",
         "GFLOP/s", "peak RSS MB", "process peak RSS MB"], body)
    lines += _ratio_lines(results["rows"])
    lines += [f"- {entry['framework']} {entry['size']}px: {report._status_cell(entry)}"
              for entry in results["runs"] if entry["status"] != "ok"]
    return "\n".join(lines) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    spec = resolve_spec(args)
    out = args.out or os.path.join(tempfile.mkdtemp(prefix="mrcnn-keypoints-"), "keypoints.json")
    results = {"schema": 1, "benchmark": "keypoints", "generated_at": suite._now(),
               "command": "python benchmarks/keypoints.py " + shlex.join(argv),
               "smoke": spec["smoke"], "settings": spec,
               "machine": dict(harness.cpu_description(),
                               load_average_before=harness.load_average()),
               "versions": harness.package_versions()}
    start = time.perf_counter()
    with _logs_folder(args.logs) as workdir:
        results["runs"] = run_all(spec, args.frameworks, workdir)
    results["wall_s"] = round(time.perf_counter() - start, 1)
    results["machine"]["load_average_after"] = harness.load_average()
    results["rows"] = table_rows(results["runs"])
    harness.write_text_atomic(out, json.dumps(results, indent=1) + "\n")
    print(render(results))
    print(f"[keypoints.py] results {out}", flush=True)
    errors = [entry for entry in results["runs"] if entry["status"] == "error"]
    for entry in errors:  # the child's traceback, which the table shortens to one line
        print(entry.get("log_tail", ""), file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
