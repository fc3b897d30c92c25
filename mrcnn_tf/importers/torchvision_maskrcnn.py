"""torchvision Mask R-CNN and Keypoint R-CNN weights -> `mrcnn_tf.modeling.mask_rcnn.MaskRCNN`.

    read_state_dict(path)            .pth file -> {key: np.ndarray} (torch needed here only)
    convert(state_dict, arch)        -> a built MaskRCNN with every variable set
    import_weights(checkpoint, out)  -> out/model.keras, out/config.json, out/label_map.json

Supported (`ARCHITECTURES`):

- `maskrcnn_resnet50_fpn` (v1), the model of torchvision's COCO_V1 weights
  (`maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth`) and of anything fine-tuned from it. It becomes
  the preset `torchvision_maskrcnn_r50_fpn` (stride in the 3x3 conv, RoIAlign aligned=False,
  rounded anchors, ImageNet mean / std, torchvision's resize and mask paste).
- `maskrcnn_resnet50_fpn_v2`, the model of `maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth`: the
  preset `torchvision_maskrcnn_r50_fpn_v2`, which adds BatchNorm after every FPN conv (convs
  without bias), a 2-conv RPN head, a 4conv1fc box head with BatchNorm and BatchNorm in the
  mask head. BatchNorm in eval mode is an affine map of its four arrays, so it is imported
  like the frozen BN of the backbone.
- `keypointrcnn_resnet50_fpn`, the model of `keypointrcnn_resnet50_fpn_coco-fc266e95.pth`
  (COCO_V1; BatchNorm eps 0 as for Mask R-CNN v1; the older COCO_LEGACY file
  `keypointrcnn_resnet50_fpn_coco-9f466800.pth` runs with eps 1e-5: pass bn_epsilon=1e-5):
  the preset `torchvision_keypointrcnn_r50_fpn`. The v1 backbone, FPN, RPN and box head with
  2 class slots (background, person), no mask head, and the keypoint head: 8 x (3x3 conv 512
  + ReLU) in `roi_heads.keypoint_head` (nn.Sequential, so the convs are its items 0, 2, ...,
  14) -> our conv_fcn1..8, then `roi_heads.keypoint_predictor.kps_score_lowres`
  (ConvTranspose2d 4x4, stride 2, padding 1) -> score_lowres. The preset decodes heatmaps
  with torchvision's rule (`ops.keypoints.heatmaps_to_keypoints_torchvision`).

Layout conversions (torch -> ours):

- conv kernels [out, in, kh, kw] -> [kh, kw, in, out] (transpose 2, 3, 1, 0);
  transposed-conv kernels [in, out, kh, kw] -> [kh, kw, out, in] (the same transpose);
  linear weights [out, in] -> [in, out].
- The first box-head fully connected layer (v1 `fc6`, v2 `box_head.5`) reads the pooled (v2:
  convolved) [C, 7, 7] features flattened channel first; ours flattens [7, 7, C]: its weight goes [out, C, 7, 7] -> [7, 7, C, out] -> [7*7*C,
  out].
- Box coordinates: torchvision predicts (dx, dy, dw, dh) per anchor / class, we predict
  (dy, dx, dh, dw): the output channels of `rpn.head.bbox_pred` and
  `roi_heads.box_predictor.bbox_pred` are permuted (1, 0, 3, 2) within every group of 4. The
  anchors of a location come in the same order in both (one size per level, ratios 0.5, 1,
  2), so objectness channels are taken as they are. The box weights (10, 10, 5, 5) read the
  same in both orders.
- Class index i of torchvision's 91 outputs is our class id i (0 = background) and COCO
  category id i, so nothing is permuted there; `coco_label_map()` names the 90 ids. Keypoint
  R-CNN's 2 outputs are background and person (COCO category 1): `coco_person_label_map()`.
  Its 17 heatmaps come in COCO's keypoint order, which is ours.
- Frozen BatchNorm keeps its four arrays. torchvision computes (x - mean) * weight /
  sqrt(var + eps_torch) + bias, with eps_torch = 0 for the COCO_V1 weights (torchvision calls
  `overwrite_eps(model, 0.0)` after loading them) and 1e-5 otherwise; our layer adds its own
  epsilon (1e-5). The importer stores var + eps_torch - eps_ours as the moving variance, so
  var + eps is unchanged; a channel where that would be negative stores variance 0 and
  rescales gamma by sqrt(eps_ours / (var + eps_torch)) instead. Both are exact.
- Keys of older torchvision versions (`fpn.inner_blocks.0.weight`, `rpn.head.conv.weight`,
  `mask_head.mask_fcn1.weight`, as in the COCO_V1 file) are renamed to the current ones
  (`inner_blocks.0.0.weight`, ...), a DataParallel `module.` prefix is dropped, and
  `num_batches_tracked` counters are ignored.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from mrcnn_tf.config import Config, get_config

# torchvision's 91 COCO slots (index = class id = COCO category id; "N/A" marks the 11 ids
# COCO does not use, 0 is the background).
COCO_CATEGORY_NAMES = (
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train",
    "truck", "boat", "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter",
    "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra",
    "giraffe", "N/A", "backpack", "umbrella", "N/A", "N/A", "handbag", "tie", "suitcase",
    "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot",
    "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "N/A",
    "dining table", "N/A", "N/A", "toilet", "N/A", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "N/A",
    "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)

INSTALL_HINT = "pip install mrcnn-tf[torch]"
# Keys of the state dict that carry no weights.
IGNORED_KEY_SUFFIXES = ("num_batches_tracked",)
# How many keys of each kind an error message lists.
MAX_LISTED_KEYS = 20

# (dx, dy, dw, dh) -> (dy, dx, dh, dw), and back (the permutation is its own inverse).
_XY_TO_YX = np.array([1, 0, 3, 2])


@dataclasses.dataclass(frozen=True)
class Architecture:
    """What one torchvision builder becomes here.

    Attributes:
      preset: name of our config preset that reproduces its inference.
      bn_epsilon: the epsilon torchvision's frozen BatchNorm uses with its released weights.
      resnet_blocks: bottleneck blocks of stages C2..C5.
      mapping: model -> the `_Entry` list pairing every variable with state-dict keys.
    """

    preset: str
    bn_epsilon: float
    resnet_blocks: Tuple[int, int, int, int]
    mapping: Callable[["object", "Architecture"], List["_Entry"]]
    label_map: Callable[[], "object"]


def coco_label_map():
    """Our `LabelMap` of torchvision's COCO classes: classes 1..90 with dataset ids 1..90 and
    torchvision's names ("N/A" for the 10 ids COCO leaves unused)."""
    from mrcnn_tf.evaluation.coco_eval import LabelMap  # noqa: PLC0415
    return LabelMap(tuple(range(1, len(COCO_CATEGORY_NAMES))), COCO_CATEGORY_NAMES[1:])


def coco_person_label_map():
    """Our `LabelMap` of torchvision's Keypoint R-CNN: class 1, COCO's "person" (id 1)."""
    from mrcnn_tf.evaluation.coco_eval import LabelMap  # noqa: PLC0415
    return LabelMap((1,), ("person",))


# -- reading ---------------------------------------------------------------------------------
def read_state_dict(path: str) -> Dict[str, np.ndarray]:
    """Reads a PyTorch checkpoint without running pickled code.

    Uses `torch.load(path, map_location="cpu", weights_only=True)`, which refuses any object
    but tensors and plain containers. Accepts a state dict, or a dict holding it under "model"
    (torchvision's reference training scripts) or "state_dict".

    Returns:
      {key: float32 (or integer) np.ndarray}.
    Raises:
      ImportError: torch is not installed (the message says how to install it).
      ValueError naming the file: missing, unreadable, or not a state dict.
    """
    try:
        import torch  # noqa: PLC0415
    except ImportError as error:
        raise ImportError(f"reading a PyTorch checkpoint needs torch and torchvision: "
                          f"{INSTALL_HINT}") from error
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file (expected a PyTorch .pth state dict)")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any failure means "not a readable state dict"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(
            f"{path}: torch.load(weights_only=True) cannot read it ({type(error).__name__}: "
            f"{reason[:300]}); expected a file written by torch.save(model.state_dict()), "
            "which holds tensors only") from None
    if isinstance(loaded, Mapping):
        for wrapper in ("model", "state_dict"):
            if isinstance(loaded.get(wrapper), Mapping):
                loaded = loaded[wrapper]
                break
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path}: holds a {type(loaded).__name__}, expected a state dict "
                         "(a dict of tensors, or a dict with one under 'model' or "
                         "'state_dict')")
    not_tensors = sorted(str(k) for k, v in loaded.items() if not isinstance(v, torch.Tensor))
    if not loaded or not_tensors:
        detail = "it is empty" if not loaded else (
            f"{len(not_tensors)} entries are not tensors: {_listing(not_tensors)}")
        raise ValueError(f"{path}: not a state dict ({detail})")
    arrays = {}
    for key, tensor in loaded.items():
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.to(torch.float32)
        arrays[str(key)] = np.array(tensor.numpy(), copy=True)
    return arrays


# -- the mapping -----------------------------------------------------------------------------
@dataclasses.dataclass
class _Entry:
    """Some state-dict tensors -> some model variables.

    `torch_shapes[i]` is the shape `keys[i]` must have; `convert` turns the arrays of `keys`
    (in order) into the values of `variables` (in order).
    """

    keys: Tuple[str, ...]
    variables: Tuple[object, ...]
    torch_shapes: Tuple[Tuple[int, ...], ...]
    convert: Callable[[List[np.ndarray]], List[np.ndarray]]


def _shape(variable) -> Tuple[int, ...]:
    return tuple(int(d) for d in variable.shape)


def _permuted(array: np.ndarray, perm: Optional[np.ndarray]) -> np.ndarray:
    """`array` with its axis 0 (torch's output axis) reordered by `perm` (None: as is)."""
    return array if perm is None else array[perm]


def _box_perm(channels: int) -> np.ndarray:
    """Output-channel order turning groups of (dx, dy, dw, dh) into (dy, dx, dh, dw)."""
    if channels % 4:
        raise ValueError(f"box regression output with {channels} channels: expected 4 per "
                         "anchor or class")
    return (np.arange(channels).reshape(-1, 4)[:, _XY_TO_YX]).reshape(-1)


def _conv(prefix: str, layer, out_perm: Optional[np.ndarray] = None) -> List[_Entry]:
    """torch Conv2d `prefix.weight` (+ `.bias` when the layer has one) -> keras Conv2D."""
    kh, kw, cin, cout = _shape(layer.kernel)
    entries = [_Entry((f"{prefix}.weight",), (layer.kernel,), ((cout, cin, kh, kw),),
                      lambda a: [_permuted(a[0], out_perm).transpose(2, 3, 1, 0)])]
    if getattr(layer, "use_bias", False):
        entries.append(_Entry((f"{prefix}.bias",), (layer.bias,), ((cout,),),
                              lambda a: [_permuted(a[0], out_perm)]))
    return entries


def _conv_transpose(prefix: str, layer) -> List[_Entry]:
    """torch ConvTranspose2d [in, out, kh, kw] -> keras Conv2DTranspose [kh, kw, out, in]."""
    kh, kw, cout, cin = _shape(layer.kernel)
    return [
        _Entry((f"{prefix}.weight",), (layer.kernel,), ((cin, cout, kh, kw),),
               lambda a: [a[0].transpose(2, 3, 1, 0)]),
        _Entry((f"{prefix}.bias",), (layer.bias,), ((cout,),), lambda a: [a[0]]),
    ]


def _linear(prefix: str, layer, out_perm: Optional[np.ndarray] = None,
            input_chw: Optional[Tuple[int, int, int]] = None) -> List[_Entry]:
    """torch Linear [out, in] -> keras Dense [in, out].

    input_chw: (C, H, W) when the input is a flattened feature map: torch flattens it
      channel first, we flatten [H, W, C].
    """
    fan_in, out = _shape(layer.kernel)

    def weight(arrays):
        w = _permuted(arrays[0], out_perm)
        if input_chw is not None:
            c, h, wd = input_chw
            w = w.reshape(out, c, h, wd).transpose(2, 3, 1, 0).reshape(h * wd * c, out)
            return [w]
        return [w.T]

    return [
        _Entry((f"{prefix}.weight",), (layer.kernel,), ((out, fan_in),), weight),
        _Entry((f"{prefix}.bias",), (layer.bias,), ((out,),),
               lambda a: [_permuted(a[0], out_perm)]),
    ]


def _batch_norm(prefix: str, layer, torch_epsilon: float) -> List[_Entry]:
    """torch (Frozen)BatchNorm2d -> our FrozenBatchNormalization / BatchNormalization, with
    the epsilon difference moved into the variance (module docstring)."""
    channels = _shape(layer.gamma)[0]
    our_epsilon = float(layer.epsilon)
    keys = tuple(f"{prefix}.{n}" for n in ("weight", "bias", "running_mean", "running_var"))

    def convert(arrays):
        gamma, beta, mean, var = (a.astype(np.float64) for a in arrays)
        total = var + torch_epsilon  # what torchvision takes the square root of
        bad = np.flatnonzero(~(total > 0))
        if bad.size:
            raise ValueError(f"{prefix}.running_var + eps (eps = {torch_epsilon}) is not "
                             f"positive in channels {bad[:10].tolist()}: torchvision itself "
                             "would output inf / NaN there")
        variance = total - our_epsilon
        negative = variance < 0
        gamma = np.where(negative, gamma * np.sqrt(our_epsilon / total), gamma)
        variance = np.where(negative, 0.0, variance)
        return [a.astype(np.float32) for a in (gamma, beta, mean, variance)]

    return [_Entry(keys, (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance),
                   ((channels,),) * 4, convert)]


def _resnet_fpn_mapping(model, arch: Architecture) -> List[_Entry]:
    """Entries of torchvision's Mask R-CNN, v1 or v2, or Keypoint R-CNN (read off our model's
    config): ResNet body, FPN (+ BatchNorm in v2), RPN head (1 or 2 convs), box head (v1
    TwoMLPHead `fc6`, `fc7`; v2 FastRCNNConvFCHead: 4 conv + BN blocks, a Flatten at index 4,
    then Linear at 5) + FastRCNNPredictor; then the model's other heads: MaskRCNNHeads (+ BN in
    v2) + MaskRCNNPredictor when config.mask_on, KeypointRCNNHeads + KeypointRCNNPredictor
    when config.num_keypoints."""
    entries = _body_entries(model, arch) + _box_head_entries(model, arch)
    if model.config.mask_on:
        entries += _mask_head_entries(model, arch)
    if model.config.num_keypoints:
        entries += _keypoint_head_entries(model)
    return entries


def _body_entries(model, arch: Architecture) -> List[_Entry]:
    """ResNet body, FPN and RPN head."""
    eps = arch.bn_epsilon
    backbone = model.backbone
    entries = _conv("backbone.body.conv1", backbone.get_layer("conv1_conv"))
    entries += _batch_norm("backbone.body.bn1", backbone.get_layer("conv1_bn"), eps)
    for stage, blocks in enumerate(arch.resnet_blocks, start=2):
        for block in range(1, blocks + 1):
            torch_block = f"backbone.body.layer{stage - 1}.{block - 1}"
            ours = f"conv{stage}_block{block}"
            for i in (1, 2, 3):
                entries += _conv(f"{torch_block}.conv{i}", backbone.get_layer(f"{ours}_{i}_conv"))
                entries += _batch_norm(f"{torch_block}.bn{i}",
                                       backbone.get_layer(f"{ours}_{i}_bn"), eps)
            if block == 1:
                entries += _conv(f"{torch_block}.downsample.0",
                                 backbone.get_layer(f"{ours}_0_conv"))
                entries += _batch_norm(f"{torch_block}.downsample.1",
                                       backbone.get_layer(f"{ours}_0_bn"), eps)

    fpn = model.fpn
    for i, (lateral, lateral_norm, output, output_norm) in enumerate(zip(
            fpn.lateral_convs, fpn.lateral_norms, fpn.output_convs, fpn.output_norms)):
        for blocks, conv, norm in (("inner_blocks", lateral, lateral_norm),
                                   ("layer_blocks", output, output_norm)):
            entries += _conv(f"backbone.fpn.{blocks}.{i}.0", conv)
            if norm is not None:
                entries += _batch_norm(f"backbone.fpn.{blocks}.{i}.1", norm, eps)

    rpn = model.rpn_head
    for i, conv in enumerate(rpn.hidden_convs):
        entries += _conv(f"rpn.head.conv.{i}.0", conv)
    entries += _conv("rpn.head.cls_logits", rpn.objectness)
    entries += _conv("rpn.head.bbox_pred", rpn.deltas,
                     out_perm=_box_perm(_shape(rpn.deltas.kernel)[-1]))
    return entries


def _box_head_entries(model, arch: Architecture) -> List[_Entry]:
    """Box head (TwoMLPHead or FastRCNNConvFCHead) and FastRCNNPredictor."""
    eps = arch.bn_epsilon
    config = model.config
    entries = []
    box = model.box_head
    pool = config.box_pool_size
    if box.num_convs == 0 and box.num_fcs == 2:  # v1's TwoMLPHead
        entries += _linear("roi_heads.box_head.fc6", box.fc1,
                           input_chw=(config.fpn_channels, pool, pool))
        entries += _linear("roi_heads.box_head.fc7", box.fc2)
    else:  # FastRCNNConvFCHead: Sequential(conv blocks..., Flatten, (Linear, ReLU)...)
        for i in range(1, box.num_convs + 1):
            entries += _conv(f"roi_heads.box_head.{i - 1}.0", getattr(box, f"conv{i}"))
            norm = getattr(box, f"conv{i}_norm", None)
            if norm is not None:
                entries += _batch_norm(f"roi_heads.box_head.{i - 1}.1", norm, eps)
        channels = box.conv_dim if box.num_convs else config.fpn_channels
        for j in range(1, box.num_fcs + 1):
            index = box.num_convs + 1 + 2 * (j - 1)
            entries += _linear(f"roi_heads.box_head.{index}", getattr(box, f"fc{j}"),
                               input_chw=(channels, pool, pool) if j == 1 else None)
    entries += _linear("roi_heads.box_predictor.cls_score", box.class_logits)
    entries += _linear("roi_heads.box_predictor.bbox_pred", box.box_deltas,
                       out_perm=_box_perm(_shape(box.box_deltas.kernel)[-1]))
    return entries


def _mask_head_entries(model, arch: Architecture) -> List[_Entry]:
    """MaskRCNNHeads (conv [+ BN] blocks) and MaskRCNNPredictor."""
    entries = []
    mask = model.mask_head
    for i, (conv, norm) in enumerate(zip(mask.convs, mask.norm_layers())):
        entries += _conv(f"roi_heads.mask_head.{i}.0", conv)
        if norm is not None:
            entries += _batch_norm(f"roi_heads.mask_head.{i}.1", norm, arch.bn_epsilon)
    entries += _conv_transpose("roi_heads.mask_predictor.conv5_mask", mask.upsample)
    entries += _conv("roi_heads.mask_predictor.mask_fcn_logits", mask.predictor)
    return entries


def _keypoint_head_entries(model) -> List[_Entry]:
    """KeypointRCNNHeads, an nn.Sequential of (Conv2d, ReLU) pairs (conv i at item 2i), and
    KeypointRCNNPredictor's transposed conv (its 2x bilinear upsample has no weights)."""
    head = model.keypoint_head
    entries = []
    for i, conv in enumerate(head.convs):
        entries += _conv(f"roi_heads.keypoint_head.{2 * i}", conv)
    entries += _conv_transpose("roi_heads.keypoint_predictor.kps_score_lowres",
                               head.score_lowres)
    return entries


ARCHITECTURES: Dict[str, Architecture] = {
    # torchvision's COCO_V1 weights run with eps 0 (models/detection/mask_rcnn.py calls
    # overwrite_eps(model, 0.0) after loading them).
    "maskrcnn_resnet50_fpn": Architecture(
        preset="torchvision_maskrcnn_r50_fpn", bn_epsilon=0.0, resnet_blocks=(3, 4, 6, 3),
        mapping=_resnet_fpn_mapping, label_map=coco_label_map),
    # v2: every BatchNorm (backbone, FPN, box and mask heads) is nn.BatchNorm2d, eps 1e-5.
    "maskrcnn_resnet50_fpn_v2": Architecture(
        preset="torchvision_maskrcnn_r50_fpn_v2", bn_epsilon=1e-5, resnet_blocks=(3, 4, 6, 3),
        mapping=_resnet_fpn_mapping, label_map=coco_label_map),
    # COCO_V1 weights run with eps 0 too (models/detection/keypoint_rcnn.py); the
    # COCO_LEGACY ones keep FrozenBatchNorm2d's 1e-5.
    "keypointrcnn_resnet50_fpn": Architecture(
        preset="torchvision_keypointrcnn_r50_fpn", bn_epsilon=0.0, resnet_blocks=(3, 4, 6, 3),
        mapping=_resnet_fpn_mapping, label_map=coco_person_label_map),
}
# State-dict tensors whose shape tells a count that the config must match: (key, axis,
# config field, slots beyond the count). Used to hint at the right config in errors.
_COUNTED_KEYS = (
    ("roi_heads.box_predictor.cls_score.weight", 0, "num_classes", 1),  # + background
    ("roi_heads.keypoint_predictor.kps_score_lowres.weight", 1, "num_keypoints", 0),
)
# Config fields beyond training.weights.ARCHITECTURE_FIELDS that decide which heads exist and
# what their layers are; a config must match the architecture's preset in these too.
_HEAD_FIELDS = ("mask_on", "keypoint_pool_size", "keypoint_head_conv_dim",
                "keypoint_head_num_convs")


# -- key names -------------------------------------------------------------------------------
_LEGACY_RENAMES = (
    # torchvision < 0.13 (and its released v1 weights) had no Conv2dNormActivation wrappers.
    (re.compile(r"^backbone\.fpn\.(inner_blocks|layer_blocks)\.(\d+)\.(weight|bias)$"),
     lambda m: f"backbone.fpn.{m.group(1)}.{m.group(2)}.0.{m.group(3)}"),
    (re.compile(r"^rpn\.head\.conv\.(weight|bias)$"),
     lambda m: f"rpn.head.conv.0.0.{m.group(1)}"),
    (re.compile(r"^roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)$"),
     lambda m: f"roi_heads.mask_head.{int(m.group(1)) - 1}.0.{m.group(2)}"),
)


def canonical_keys(keys: Sequence[str]) -> Dict[str, str]:
    """{current torchvision key: key as given}, ignored keys (num_batches_tracked) left out.

    Drops a `module.` prefix that every key has (DataParallel) and renames keys of older
    torchvision versions. A legacy key whose new name is also present keeps its own name (and
    is then reported as unexpected).
    """
    keys = [str(k) for k in keys]
    strip = bool(keys) and all(k.startswith("module.") for k in keys)
    result: Dict[str, str] = {}
    legacy = []
    for key in keys:
        name = key[len("module."):] if strip else key
        if name.endswith(IGNORED_KEY_SUFFIXES):
            continue
        for pattern, rename in _LEGACY_RENAMES:
            match = pattern.match(name)
            if match:
                legacy.append((rename(match), name, key))
                break
        else:
            result[name] = key
    for new, old, key in legacy:
        result[old if new in result else new] = key
    return result


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED_KEYS])
    more = len(items) - MAX_LISTED_KEYS
    return f"[{shown}{f', ... and {more} more' if more > 0 else ''}]"


# -- conversion ------------------------------------------------------------------------------
def convert(state_dict: Mapping[str, np.ndarray], arch: str = "maskrcnn_resnet50_fpn", *,
            bn_epsilon: Optional[float] = None, config: Optional[Config] = None,
            source: str = "state dict"):
    """Builds our MaskRCNN and sets every variable from a torchvision state dict.

    Args:
      state_dict: {key: array} (np.ndarray or anything np.asarray takes, e.g. CPU tensors),
        as `read_state_dict` returns.
      arch: a key of `ARCHITECTURES`.
      bn_epsilon: the epsilon torchvision's BatchNorm ran with for these weights; default the
        architecture's (0.0 for the v1 COCO weights). 1e-5 for a model built without
        `weights=` (nn.BatchNorm2d / FrozenBatchNorm2d defaults) and then trained.
      config: our config (default: the architecture's preset; with the preset's class count
        the model carries the architecture's label map: COCO's 90 classes, or person).
      source: names the state dict in error messages (e.g. the file).

    Returns:
      The built MaskRCNN.
    Raises:
      ValueError: unknown arch; or, before any variable is set, the state dict lacks tensors
        the model needs, has tensors it does not use, or has tensors of the wrong shape (every
        one of them listed, sorted, with counts).
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch={arch!r}: expected one of {sorted(ARCHITECTURES)}")
    spec = ARCHITECTURES[arch]
    config = config if config is not None else get_config(spec.preset)
    torch_epsilon = spec.bn_epsilon if bn_epsilon is None else float(bn_epsilon)
    if torch_epsilon < 0:
        raise ValueError(f"bn_epsilon={bn_epsilon}: expected >= 0")
    spec = dataclasses.replace(spec, bn_epsilon=torch_epsilon)
    _check_architecture(config, arch, spec.preset)

    from mrcnn_tf.modeling.mask_rcnn import MaskRCNN  # noqa: PLC0415 (loads TensorFlow)
    labels = {}
    label_map = spec.label_map()
    if config.num_classes == label_map.num_classes:
        labels = {"class_names": list(label_map.names),
                  "category_ids": list(label_map.dataset_ids)}
    model = MaskRCNN(config, **labels)
    model.build()
    entries = spec.mapping(model, spec)
    _check_coverage(model, entries)

    keys = canonical_keys(list(state_dict))
    expected = {key: shape for e in entries for key, shape in zip(e.keys, e.torch_shapes)}
    missing = sorted(set(expected) - set(keys))
    unexpected = sorted(keys[k] for k in set(keys) - set(expected))
    wrong = sorted(
        f"{keys[k]} {tuple(np.shape(state_dict[keys[k]]))} (expected {expected[k]})"
        for k in set(expected) & set(keys)
        if tuple(np.shape(state_dict[keys[k]])) != expected[k])
    if missing or unexpected or wrong:
        parts = [f"{len(items)} {what}: {_listing(items)}"
                 for what, items in (("missing", missing), ("unexpected", unexpected),
                                     ("wrongly shaped", wrong)) if items]
        raise ValueError(f"{source}: not a torchvision {arch} state dict for config "
                         f"{config.name!r} ({config.num_classes + 1} class slots): "
                         + "; ".join(parts) + _count_hint(state_dict, keys, config, spec.preset))

    values = []
    for entry in entries:
        arrays = [np.asarray(state_dict[keys[k]], np.float32) for k in entry.keys]
        converted = entry.convert(arrays)
        for variable, value in zip(entry.variables, converted):
            if tuple(value.shape) != _shape(variable):  # a bug in a mapping, not user error
                raise RuntimeError(f"{entry.keys}: converted to {value.shape}, variable "
                                   f"{variable.path} is {_shape(variable)}")
            values.append((variable, value))
    for variable, value in values:
        variable.assign(value)
    return model


def _count_hint(state_dict: Mapping[str, np.ndarray], keys: Mapping[str, str], config: Config,
                preset: str) -> str:
    """The end of a refusal, " (the checkpoint has ...: pass config=...)", when the shapes of
    `_COUNTED_KEYS` show other class or keypoint counts than `config`'s; "" otherwise."""
    counts = []
    for key, axis, field, extra in _COUNTED_KEYS:
        if key in keys and np.ndim(state_dict[keys[key]]) > axis:
            count = int(np.shape(state_dict[keys[key]])[axis]) - extra
            if count != getattr(config, field):
                counts.append((field, count))
    if not counts:
        return ""
    told = ", ".join(f"{field}={count}" for field, count in counts)
    also = (" and that many keypoint_names, keypoint_skeleton and keypoint_oks_sigmas"
            if any(field == "num_keypoints" for field, _ in counts) else "")
    return f" (the checkpoint has {told}: pass config=get_config({preset!r}, {told}){also})"


def _check_architecture(config: Config, arch: str, preset: str) -> None:
    """Refuses a `config` whose layers differ from `arch`'s (its preset's), the class and
    keypoint counts aside: the mapping follows the model, so a v2 config under arch v1 would
    otherwise be filled with v1's BatchNorm epsilon, and a config without the keypoint head
    (or with a mask head) would not describe Keypoint R-CNN."""
    from mrcnn_tf.training.weights import ARCHITECTURE_FIELDS  # noqa: PLC0415
    reference = get_config(preset)
    differences = [f"{name}={getattr(config, name)!r} (the preset has "
                   f"{getattr(reference, name)!r})"
                   for name in ARCHITECTURE_FIELDS + _HEAD_FIELDS
                   if name != "num_classes" and getattr(config, name) != getattr(reference, name)]
    if bool(config.num_keypoints) != bool(reference.num_keypoints):
        differences.append(f"num_keypoints={config.num_keypoints} (the preset has "
                           f"{reference.num_keypoints}: {arch} has "
                           f"{'a' if reference.num_keypoints else 'no'} keypoint head)")
    if differences:
        raise ValueError(f"config {config.name!r} does not describe torchvision's {arch} (preset "
                         f"{preset!r}): {'; '.join(differences)}")


def _check_coverage(model, entries: Sequence[_Entry]) -> None:
    """Every model variable is the target of exactly one tensor (a mapping invariant)."""
    targets: Dict[int, int] = {}
    for entry in entries:
        for variable in entry.variables:
            targets[id(variable)] = targets.get(id(variable), 0) + 1
    weights = {id(v): v for v in model.weights}
    unset = sorted(v.path for i, v in weights.items() if i not in targets)
    twice = sorted(weights[i].path for i, n in targets.items() if n > 1 and i in weights)
    foreign = [i for i in targets if i not in weights]
    if unset or twice or foreign:
        raise RuntimeError(f"importer mapping is incomplete: {len(unset)} variables unset "
                           f"{_listing(unset)}, {len(twice)} set twice {_listing(twice)}, "
                           f"{len(foreign)} targets outside the model")


# -- files -----------------------------------------------------------------------------------
def import_weights(checkpoint: str, out_dir: str, arch: str = "maskrcnn_resnet50_fpn", *,
                   bn_epsilon: Optional[float] = None) -> str:
    """Converts a torchvision checkpoint into a model folder.

    Writes `out_dir/model.keras` (atomically; it carries the architecture's label map, COCO's
    classes or person, as class_names and category_ids), `out_dir/config.json` and
    `out_dir/label_map.json`.

    Returns:
      The path of model.keras.
    Raises:
      ImportError: torch is missing. ValueError: see `read_state_dict` and `convert`; an
      unwritable `out_dir`.
    """
    from mrcnn_tf.io_utils import check_writable_folder, write_json_atomic  # noqa: PLC0415
    from mrcnn_tf.training.checkpoints import save_model_atomic  # noqa: PLC0415
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch={arch!r}: expected one of {sorted(ARCHITECTURES)}")
    check_writable_folder(out_dir, "--out")
    state_dict = read_state_dict(checkpoint)
    model = convert(state_dict, arch, bn_epsilon=bn_epsilon, source=os.fspath(checkpoint))
    path = os.path.join(os.fspath(out_dir), "model.keras")
    save_model_atomic(model, path)
    write_json_atomic(os.path.join(out_dir, "config.json"), model.config.to_dict(), indent=2)
    write_json_atomic(os.path.join(out_dir, "label_map.json"), model.label_map.to_dict(),
                      indent=2)
    return path
