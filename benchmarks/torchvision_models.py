"""torchvision's R50-FPN detectors as our benchmarks run them: random weights made numerically
sane as ours are (benchmarks/random_init.py), eval mode, box score threshold 0, the image
resized to exactly the benchmark size. torch and torchvision are optional: `require_torch`
says what is missing.

Used by the `torchvision` benchmark (maskrcnn_resnet50_fpn) and the keypoints task
(keypointrcnn_resnet50_fpn).
"""

from benchmarks.worker import Skipped

try:  # at import time, so the worker's "RSS before run" includes torch, as it includes TF
    import torch
    import torchvision
except ImportError as _error:  # optional: the benchmark then reports itself skipped
    torch = torchvision = None
    _IMPORT_ERROR = _error


def require_torch():
    """Raises worker.Skipped, saying what is missing, when torch or torchvision is absent."""
    if torch is None or torchvision is None:
        raise Skipped(f"torch / torchvision are not installed ({_IMPORT_ERROR}); install them "
                      "with pip install mrcnn-tf[torch] to run the comparison")


def build_model(size, settings, constructor="maskrcnn_resnet50_fpn"):
    """torchvision.models.detection.`constructor` (an R50-FPN detector: maskrcnn_resnet50_fpn,
    keypointrcnn_resnet50_fpn, ...) with random weights, eval mode, at `size` and spec
    settings, made numerically sane as our model is (`sane_random_init`)."""
    torch.manual_seed(0)
    kwargs = dict(weights=None, weights_backbone=None, box_score_thresh=0.0,
                  min_size=int(size), max_size=int(size))
    kwargs.update(settings.get("kwargs", {}))
    model = getattr(torchvision.models.detection, constructor)(**kwargs).eval()
    sane_random_init(model, size)
    return model


def sane_random_init(model, size):
    """The treatment of benchmarks/random_init.py, on torchvision's ResNet: each bottleneck's
    bn3 scale set to 0 (torchvision's own zero_init_residual), and the stem's bn1 running
    statistics set from the stem conv's output on one [3, size, size] noise image."""
    body = model.backbone.body
    with torch.no_grad():
        for block in body.modules():
            if isinstance(block, torchvision.models.resnet.Bottleneck):
                block.bn3.weight.zero_()
        noise = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
        batch, _ = model.transform(list(noise))
        stem = body.conv1(batch.tensors)  # [1, 64, size / 2, size / 2]
        body.bn1.running_mean.copy_(stem.mean(dim=(0, 2, 3)))
        body.bn1.running_var.copy_(stem.var(dim=(0, 2, 3), unbiased=False))
