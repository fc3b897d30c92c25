"""FLOPs of one MaskRCNN inference, per stage, counted analytically from the layer shapes.

Convention: the multiply-adds of convolutions, transposed convolutions and dense layers,
1 multiply-add = 2 FLOP (as the usual "GFLOPs" of detection papers). Biases, norms,
activations, RoIAlign, NMS, box decoding and the mask paste are not counted: together they
are well under 1% of the total for R50-FPN. The heads run on padded, fixed-size batches, so
every one of the `rpn_post_nms_topk_test` proposals goes through the box head and every one of
the `detections_per_image` slots through the mask head: the count is exact, not an estimate.

    from benchmarks.flops import inference_flops
    inference_flops(model, 512, 512)   # {"backbone": 4.3e10, "fpn": ..., "total": ...}
"""

import functools

import keras

from mrcnn_tf.modeling.backbones import build_backbone

STAGES = ("backbone", "fpn", "rpn", "box_head", "mask_head")
# The timed stages of benchmarks/stages.py and the counted stages each contains.
TIMED_STAGE_FLOPS = {"backbone_fpn": ("backbone", "fpn"), "rpn_proposals": ("rpn",),
                     "box_detection": ("box_head",), "mask_paste": ("mask_head",)}
# Reference GFLOP for R50-FPN (80 classes, 1000 proposals, 100 masks) on a square image, from
# the benchmark issue; a model of that shape should land within REFERENCE_TOLERANCE of them.
REFERENCE_GFLOP = {
    512: {"backbone": 43.0, "fpn": 30.0, "rpn": 26.0, "box_head": 28.0, "mask_head": 106.0,
          "total": 232.0},
    1024: {"backbone": 171.0, "fpn": 119.0, "rpn": 104.0, "total": 527.0},
}
REFERENCE_TOLERANCE = 0.10


def conv_flops(out_h, out_w, kernel_shape):
    """FLOPs of a (non-grouped) convolution.

    Args: out_h, out_w: output spatial size; kernel_shape: Keras Conv2D kernel
      [kh, kw, in_channels, out_channels].
    Returns: 2 * out_h * out_w * kh * kw * in * out.
    """
    kh, kw, cin, cout = (int(d) for d in kernel_shape)
    return 2 * int(out_h) * int(out_w) * kh * kw * cin * cout


def transposed_conv_flops(in_h, in_w, kernel_shape):
    """FLOPs of a transposed convolution: every input pixel meets the whole kernel once.

    Args: in_h, in_w: input spatial size; kernel_shape: Keras Conv2DTranspose kernel
      [kh, kw, out_channels, in_channels].
    """
    kh, kw, cout, cin = (int(d) for d in kernel_shape)
    return 2 * int(in_h) * int(in_w) * kh * kw * cin * cout


def dense_flops(rows, kernel_shape):
    """FLOPs of a dense layer on `rows` inputs; kernel_shape [in, out]."""
    fan_in, fan_out = (int(d) for d in kernel_shape)
    return 2 * int(rows) * fan_in * fan_out


@functools.lru_cache(maxsize=16)
def _backbone_flops_cached(config, height, width):
    # A weightless copy of the backbone built for this static input size: its layers then
    # know their output shapes (the model's own backbone has dynamic H and W).
    backbone = build_backbone(config.replace(backbone_weights=None),
                              input_shape=(height, width, 3))
    total = 0
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, out_h, out_w, _ = layer.output.shape
            groups = int(getattr(layer, "groups", 1) or 1)
            total += conv_flops(out_h, out_w, layer.kernel.shape) // groups
    return total


def backbone_flops(config, height, width):
    """FLOPs of `config`'s backbone on one padded [height, width] image."""
    return _backbone_flops_cached(config, int(height), int(width))


def level_sizes(height, width):
    """Spatial sizes of P2..P6 for a padded [height, width] input (multiples of 32).

    Returns list of 5 (h, w): strides 4, 8, 16, 32, and P6 = ceil(P5 / 2) (stride-2 pool).
    """
    sizes = [(height // s, width // s) for s in (4, 8, 16, 32)]
    p5_h, p5_w = sizes[-1]
    sizes.append(((p5_h + 1) // 2, (p5_w + 1) // 2))
    return sizes


def sublayers(layer):
    """Every layer inside `layer`, depth first in creation order (Keras' own walk)."""
    return list(layer._flatten_layers(include_self=False, recursive=True))


def _conv_out(size, layer):
    """Output side of a 'same'-padded conv of `layer`'s stride on a `size` input."""
    return -(-int(size) // int(layer.strides[0]))


def fpn_flops(model, height, width):
    """FLOPs of the FPN's lateral 1x1 and output 3x3 convs on P2..P5 (P6 is a pool)."""
    total = 0
    for (h, w), lateral, output in zip(level_sizes(height, width)[:4], model.fpn.lateral_convs,
                                       model.fpn.output_convs):
        total += conv_flops(h, w, lateral.kernel.shape) + conv_flops(h, w, output.kernel.shape)
    return total


def rpn_flops(model, height, width):
    """FLOPs of the RPN head: every conv of it (shared convs, objectness and delta 1x1s) on
    each of P2..P6."""
    convs = [layer for layer in sublayers(model.rpn_head)
             if isinstance(layer, keras.layers.Conv2D)]
    return sum(conv_flops(_conv_out(h, c), _conv_out(w, c), c.kernel.shape)
               for h, w in level_sizes(height, width) for c in convs)


def box_head_flops(model, num_rois):
    """FLOPs of the box head on `num_rois` RoIs: its convs at box_pool_size (if any), its
    fully connected layers and the class and box predictors."""
    pool, total = model.config.box_pool_size, 0
    for layer in sublayers(model.box_head):
        if isinstance(layer, keras.layers.Conv2D):
            total += conv_flops(pool, pool, layer.kernel.shape)
        elif isinstance(layer, keras.layers.Dense):
            total += dense_flops(1, layer.kernel.shape)
    return num_rois * total


def mask_head_flops(model, num_masks):
    """FLOPs of the mask head on `num_masks` RoIs pooled at mask_pool_size: convs before the
    2x transposed conv at that size, the transposed conv, the predictor after it at 2x."""
    size, total = model.config.mask_pool_size, 0
    for layer in sublayers(model.mask_head):
        if isinstance(layer, keras.layers.Conv2DTranspose):  # check first: a conv subclass
            total += transposed_conv_flops(size, size, layer.kernel.shape)
            size *= int(layer.strides[0])
        elif isinstance(layer, keras.layers.Conv2D):
            total += conv_flops(size, size, layer.kernel.shape)
    return num_masks * total


def shape_built_model(config):
    """A MaskRCNN of `config` with every counted layer built from shapes alone: no forward
    pass, so counting needs no compute and no working inference path."""
    from mrcnn_tf.modeling.backbones import backbone_channels  # noqa: PLC0415
    from mrcnn_tf.modeling.mask_rcnn import MaskRCNN  # noqa: PLC0415
    model = MaskRCNN(config.replace(backbone_weights=None))
    channels = config.fpn_channels
    model.fpn.build([(None, None, None, c) for c in backbone_channels(config)])
    model.rpn_head.build([(None, None, None, channels)] * 5)
    box, mask = config.box_pool_size, config.mask_pool_size
    model.box_head.build((None, None, box, box, channels))
    model.mask_head.build((None, None, mask, mask, channels))
    return model


def padded_size(config, height, width):
    """The (Hp, Wp) the network sees for an input image of [height, width]: resized as the
    model resizes (shorter side to image_min_size, longer at most image_max_size), padded to
    a multiple of size_divisibility."""
    from mrcnn_tf.ops.resize import resize_shape_static  # noqa: PLC0415
    new_h, new_w = resize_shape_static(int(height), int(width), config)
    d = config.size_divisibility
    return -(-new_h // d) * d, -(-new_w // d) * d


def inference_flops(model, height, width, batch=1, masks=None):
    """FLOPs of `model`'s inference on a batch of [height, width] images, per stage.

    Args:
      model: a MaskRCNN whose heads and FPN are built (`model.build()` or
        `shape_built_model`).
      height, width: the input image size (resized and padded as the model does).
      batch: images per batch; everything scales linearly with it.
      masks: detection rows the mask head runs on per image (default
        config.detections_per_image, every slot: score threshold 0).
    Returns:
      dict with STAGES, "total", the timed-stage groups of TIMED_STAGE_FLOPS, and
      "padded_size" [Hp, Wp], "proposals" and "masks" per image. FLOPs as ints.
    """
    config = model.config
    masks = config.detections_per_image if masks is None else int(masks)
    hp, wp = padded_size(config, height, width)
    counts = {
        "backbone": backbone_flops(config, hp, wp),
        "fpn": fpn_flops(model, hp, wp),
        "rpn": rpn_flops(model, hp, wp),
        "box_head": box_head_flops(model, config.rpn_post_nms_topk_test),
        "mask_head": mask_head_flops(model, masks),
    }
    counts = {k: v * int(batch) for k, v in counts.items()}
    counts["total"] = sum(counts[k] for k in STAGES)
    for group, parts in TIMED_STAGE_FLOPS.items():
        counts[group] = sum(counts[p] for p in parts)
    counts.update({"padded_size": [hp, wp], "proposals": config.rpn_post_nms_topk_test,
                   "masks": masks, "batch": int(batch)})
    return counts


def reference_check(counts, size):
    """Compares per-image counts of a square `size` image with REFERENCE_GFLOP.

    Returns None when there is no reference for `size`, else a dict per stage: ours_gflop,
    reference_gflop, ratio, within_tolerance.
    """
    reference = REFERENCE_GFLOP.get(int(size))
    if reference is None:
        return None
    batch = counts.get("batch", 1)
    check = {}
    for stage, expected in reference.items():
        ours = counts[stage] / batch / 1e9
        check[stage] = {"ours_gflop": round(ours, 2), "reference_gflop": expected,
                        "ratio": round(ours / expected, 3),
                        "within_tolerance": abs(ours / expected - 1) <= REFERENCE_TOLERANCE}
    return check


def is_reference_shaped(config):
    """True when `config` is R50-FPN with the reference's head sizes (80 classes, 1000
    proposals, 100 masks): only then should its counts match REFERENCE_GFLOP."""
    return (config.backbone == "resnet50" and config.num_classes == 80
            and config.rpn_post_nms_topk_test == 1000 and config.detections_per_image == 100
            and config.fpn_channels == 256 and config.box_head_fc_dim == 1024
            and config.mask_head_conv_dim == 256 and config.mask_head_num_convs == 4)


def gflop(counts):
    """The per-stage counts in GFLOP (floats, 3 decimals), dropping the bookkeeping keys."""
    keys = STAGES + ("total",) + tuple(TIMED_STAGE_FLOPS)
    return {k: round(counts[k] / 1e9, 3) for k in keys}
