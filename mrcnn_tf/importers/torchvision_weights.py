"""torchvision Mask R-CNN and Keypoint R-CNN weights -> `mrcnn_tf.modeling.mask_rcnn.MaskRCNN`.

    convert(state_dict, arch)        -> a built MaskRCNN with every variable set
    import_weights(checkpoint, out)  -> out/model.keras, out/config.json, out/label_map.json

`ARCHITECTURES` holds every supported torchvision builder: `maskrcnn_resnet50_fpn` (v1) and
`maskrcnn_resnet50_fpn_v2` (`torchvision_maskrcnn`), `keypointrcnn_resnet50_fpn`
(`torchvision_keypointrcnn`). The state dict is read by `torch_checkpoint.read_state_dict`
(older torchvision key names accepted) and each layer converted as `torch_layers` describes.
Nothing is set unless every tensor the model needs is there, none is left over and all have
the right shapes.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from mrcnn_tf.config import Config, get_config
from mrcnn_tf.importers.torch_checkpoint import canonical_keys, listing, read_state_dict
from mrcnn_tf.importers.torch_layers import Entry, variable_shape
from mrcnn_tf.importers.torchvision_keypointrcnn import KEYPOINTRCNN_ARCHITECTURES
from mrcnn_tf.importers.torchvision_maskrcnn import MASKRCNN_ARCHITECTURES, Architecture

ARCHITECTURES: Dict[str, Architecture] = {**MASKRCNN_ARCHITECTURES,
                                          **KEYPOINTRCNN_ARCHITECTURES}
# State-dict tensors whose shape tells a count that the config must match: (key, axis,
# config field, slots beyond the count). Used to hint at the right config in errors.
_COUNTED_KEYS = (
    ("roi_heads.box_predictor.cls_score.weight", 0, "num_classes", 1),  # + background
    ("roi_heads.keypoint_predictor.kps_score_lowres.weight", 1, "num_keypoints", 0),
)
# Config fields beyond modeling.weights.ARCHITECTURE_FIELDS that decide which heads exist and
# what their layers are; a config must match the architecture's preset in these too.
_HEAD_FIELDS = ("mask_on", "mask_loss", "keypoint_pool_size", "keypoint_head_conv_dim",
                "keypoint_head_num_convs")


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
        parts = [f"{len(items)} {what}: {listing(items)}"
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
            if tuple(value.shape) != variable_shape(variable):  # a mapping bug, not user error
                raise RuntimeError(f"{entry.keys}: converted to {value.shape}, variable "
                                   f"{variable.path} is {variable_shape(variable)}")
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
    from mrcnn_tf.modeling.weights import ARCHITECTURE_FIELDS  # noqa: PLC0415
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


def _check_coverage(model, entries: Sequence[Entry]) -> None:
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
                           f"{listing(unset)}, {len(twice)} set twice {listing(twice)}, "
                           f"{len(foreign)} targets outside the model")


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
