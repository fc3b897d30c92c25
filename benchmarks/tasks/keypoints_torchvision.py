"""Job keypoints_torchvision, a child of the keypoints task: torchvision's
keypointrcnn_resnet50_fpn at one size in a process of its own, each part of
benchmarks/tasks/keypoints_results.py's PARTS timed as keypoints_mrcnn_tf times ours: the whole
model, the model with its keypoint predictor switched off, and the keypoint branch alone on
the recorded features and post-NMS boxes. Skipped, saying why, without torch.
"""

import contextlib

from benchmarks import threads
from benchmarks.tasks.keypoints_results import size_result, time_parts
from benchmarks.torchvision_models import build_model, require_torch, torch, torchvision


def run(spec):
    """torchvision's keypointrcnn_resnet50_fpn at each of spec["sizes"], as
    keypoints_mrcnn_tf measures ours: {"rows": [...], "versions": ...}."""
    require_torch()
    threads.pin_torch_threads(spec["threads"])
    settings = spec["torchvision"]
    rows = []
    with torch.inference_mode():
        for size in spec["sizes"]:
            model = build_model(size, settings, constructor="keypointrcnn_resnet50_fpn")
            images = [torch.rand(3, size, size, generator=torch.Generator().manual_seed(0))]
            calls, facts = _timed_calls(model, images)
            parts = time_parts(calls, spec, size)
            total, keypoint = _flops(model, images)  # after timing: its own peak
            rows.append(size_result(
                "torchvision", size, parts,
                {"min_detections": min(facts["min_detections"]),
                 "keypoint_rows": facts["keypoint_rows"],
                 "detections_per_image": model.roi_heads.detections_per_img},
                _head_shape(model),
                {"counted": keypoint, "source": "torch.utils.flop_counter.FlopCounterMode"},
                keypoints_shape=facts["keypoints_shape"], total_flops=total,
                threads=torch.get_num_threads(),
                model="torchvision.models.detection.keypointrcnn_resnet50_fpn(weights=None, "
                      "weights_backbone=None), eval, box_score_thresh=0, min_size=max_size="
                      f"size, {settings.get('kwargs', {})}"))
            del model
    return {"rows": rows,
            "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__}}


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


def _timed_calls(model, images):
    """The three timed callables of keypoints_results.PARTS for torchvision's KeypointRCNN on
    `images` (a list of one float [3, S, S] tensor in 0..1), and what they saw (as
    keypoints_mrcnn_tf's)."""
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


def _head_shape(model):
    """`keypoint_head_flops` arguments read off torchvision's keypoint head and predictor
    (torch weights: conv [out, in, 3, 3], transposed conv [in, K, k, k])."""
    heads = model.roi_heads
    convs = [m for m in heads.keypoint_head.modules() if isinstance(m, torch.nn.Conv2d)]
    deconv = heads.keypoint_predictor.kps_score_lowres.weight.shape
    pool = heads.keypoint_roi_pool.output_size
    return {"pool_size": int(pool[0] if isinstance(pool, (tuple, list)) else pool),
            "in_channels": int(convs[0].in_channels if convs else deconv[0]),
            "conv_dim": int(convs[0].out_channels if convs else deconv[0]),
            "num_convs": len(convs), "num_keypoints": int(deconv[1]),
            "deconv_kernel": int(deconv[2])}


def _flops(model, images):
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

