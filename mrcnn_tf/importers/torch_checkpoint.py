"""Reading a PyTorch checkpoint and naming its tensors the current torchvision way.

    read_state_dict(path)   .pth file -> {key: np.ndarray} (torch needed here only)
    canonical_keys(keys)    {current torchvision key: key as given}

Keys of older torchvision versions (`fpn.inner_blocks.0.weight`, `rpn.head.conv.weight`,
`mask_head.mask_fcn1.weight`, as in the COCO_V1 Mask R-CNN file) are renamed to the current
ones (`inner_blocks.0.0.weight`, ...), a DataParallel `module.` prefix is dropped, and
`num_batches_tracked` counters are ignored.
"""

from __future__ import annotations

import os
import re
from typing import Dict, Mapping, Sequence

import numpy as np

INSTALL_HINT = "pip install mrcnn-tf[torch]"
# Keys of the state dict that carry no weights.
IGNORED_KEY_SUFFIXES = ("num_batches_tracked",)
# How many keys of each kind an error message lists.
MAX_LISTED_KEYS = 20


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
            f"{len(not_tensors)} entries are not tensors: {listing(not_tensors)}")
        raise ValueError(f"{path}: not a state dict ({detail})")
    arrays = {}
    for key, tensor in loaded.items():
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.to(torch.float32)
        arrays[str(key)] = np.array(tensor.numpy(), copy=True)
    return arrays


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


def listing(items: Sequence[str]) -> str:
    """`items` as "[a, b, ... and N more]" (at most MAX_LISTED_KEYS shown), for errors."""
    shown = ", ".join(items[:MAX_LISTED_KEYS])
    more = len(items) - MAX_LISTED_KEYS
    return f"[{shown}{f', ... and {more} more' if more > 0 else ''}]"
