"""Benchmark `torchvision`: the same measurements for torchvision's Mask R-CNN, on the same
machine and threads.

`torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)` in
eval mode with the settings of our benchmarks (benchmarks/torchvision_models.py): random
weights, box score threshold 0 (every detection slot reaches the mask head), the image resized
to exactly the benchmark size (min_size = max_size = size), torch pinned to spec["threads"]
threads. Its stages are timed with its own submodules, fed the previous stage's real outputs:

  backbone_fpn    transform (normalize, resize, batch) + backbone (ResNet-50 + FPN)
  rpn_proposals   rpn (head, anchors, decode, top-k, NMS)
  box_detection   box RoIAlign + box head + predictor + postprocess_detections (NMS)
  mask_paste      mask RoIAlign + mask head + predictor + maskrcnn_inference + paste
                  (transform.postprocess: float masks [N, 1, H, W], as torchvision returns)

FLOPs come from torch.utils.flop_counter.FlopCounterMode (counts every matmul and conv of a
real forward pass), an independent check of benchmarks/flops.py's analytic counts.
Skipped, saying why, without torch.
"""

from benchmarks import threads, timing
from benchmarks.torchvision_models import build_model, require_torch, torch, torchvision

STAGE_NAMES = ("backbone_fpn", "rpn_proposals", "box_detection", "mask_paste")
# FlopCounterMode module names -> our FLOP stages.
FLOP_MODULES = {
    "backbone": ("MaskRCNN.backbone.body",),
    "fpn": ("MaskRCNN.backbone.fpn",),
    "rpn": ("MaskRCNN.rpn",),
    "box_head": ("MaskRCNN.roi_heads.box_head", "MaskRCNN.roi_heads.box_predictor"),
    "mask_head": ("MaskRCNN.roi_heads.mask_head", "MaskRCNN.roi_heads.mask_predictor"),
}


def run(spec):
    """End-to-end and per-stage latency, FLOPs and memory of torchvision's Mask R-CNN:
    {"inference": rows per (size, batch), "stages": rows per stage, "flops": per size,
    "model", "versions", "threads"}."""
    require_torch()
    threads.pin_torch_threads(spec["threads"])
    settings = spec["torchvision"]
    inference_rows, stage_rows, flop_rows = [], [], []
    with torch.inference_mode():
        for size in spec["sizes"]:
            model = build_model(size, settings)
            generator = torch.Generator().manual_seed(0)
            for batch in spec["batches"]:
                images = [torch.rand(3, size, size, generator=generator) for _ in range(batch)]
                counts = count_flops(model, images)
                detections = []

                def run_once():
                    detections.append(min(len(d["boxes"]) for d in model(images)))

                row = timing.timed_row(run_once, spec, size=size, batch=batch)
                row["images_per_s"] = round(batch / (row["median_ms"] / 1000.0), 3)
                row["min_detections"] = min(detections)
                row["gflop"] = round(counts["total"] / 1e9, 3)
                row["achieved_gflops"] = round(counts["total"] / 1e6 / row["median_ms"], 2)
                inference_rows.append(row)
                if batch == 1:
                    flop_rows.append({"size": size, "gflop": {
                        k: round(v / 1e9, 3) for k, v in counts.items()}})
                calls, _ = stage_calls(model, images)
                for name in STAGE_NAMES:
                    stage_row = timing.timed_row(calls[name], spec, size=size, batch=batch,
                                                 stage=name)
                    stage_row["gflop"] = round(counts[name] / 1e9, 3)
                    stage_row["achieved_gflops"] = round(
                        counts[name] / 1e6 / stage_row["median_ms"], 2)
                    stage_rows.append(stage_row)
    return {"inference": inference_rows, "stages": stage_rows, "flops": flop_rows,
            "model": "torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, "
                     "weights_backbone=None), eval, box_score_thresh=0, min_size=max_size=size"
                     + (f", {settings['kwargs']}" if settings.get("kwargs") else ""),
            "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__},
            "threads": torch.get_num_threads()}


def stage_calls(model, images):
    """Runs torchvision's inference stage by stage once and returns a zero-argument callable
    per stage that repeats it on the recorded inputs.

    Args: model in eval mode; images list of B float tensors [3, H, W] in 0..1.
    Returns: dict name -> callable, and the final detections (list of dicts).
    """
    from torchvision.models.detection.roi_heads import maskrcnn_inference  # noqa: PLC0415
    original_sizes = [tuple(image.shape[-2:]) for image in images]
    heads = model.roi_heads

    def backbone_fpn():
        batch, _ = model.transform(images)
        return batch, model.backbone(batch.tensors)

    batch, features = backbone_fpn()

    def rpn_proposals():
        return model.rpn(batch, features)[0]

    proposals = rpn_proposals()

    def box_detection():
        pooled = heads.box_roi_pool(features, proposals, batch.image_sizes)
        class_logits, box_regression = heads.box_predictor(heads.box_head(pooled))
        return heads.postprocess_detections(class_logits, box_regression, proposals,
                                            batch.image_sizes)

    boxes, scores, labels = box_detection()

    def mask_paste():
        pooled = heads.mask_roi_pool(features, boxes, batch.image_sizes)
        mask_logits = heads.mask_predictor(heads.mask_head(pooled))
        masks = maskrcnn_inference(mask_logits, labels)
        detections = [{"boxes": b, "scores": s, "labels": lab, "masks": m}
                      for b, s, lab, m in zip(boxes, scores, labels, masks)]
        return model.transform.postprocess(detections, batch.image_sizes, original_sizes)

    detections = mask_paste()
    calls = {"backbone_fpn": backbone_fpn, "rpn_proposals": rpn_proposals,
             "box_detection": box_detection, "mask_paste": mask_paste}
    return calls, detections


def count_flops(model, images):
    """FLOPs of one forward pass per stage of FLOP_MODULES, and "total", via FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode  # noqa: PLC0415
    counter = FlopCounterMode(display=False)
    with counter:
        model(images)
    per_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    counts = {stage: sum(per_module.get(m, 0) for m in modules)
              for stage, modules in FLOP_MODULES.items()}
    counts["total"] = counter.get_total_flops()
    counts["backbone_fpn"] = counts["backbone"] + counts["fpn"]
    counts["rpn_proposals"] = counts["rpn"]
    counts["box_detection"] = counts["box_head"]
    counts["mask_paste"] = counts["mask_head"]
    return counts
