"""torch layer tensors -> our Keras layer variables, one layer kind at a time.

Each function returns `Entry`s: which state-dict keys fill which variables, the shapes torch
gives those keys, and the layout conversion:

- conv kernels [out, in, kh, kw] -> [kh, kw, in, out] (transpose 2, 3, 1, 0);
  transposed-conv kernels [in, out, kh, kw] -> [kh, kw, out, in] (the same transpose);
  linear weights [out, in] -> [in, out].
- A fully connected layer that reads a flattened [C, H, W] feature map (torch flattens
  channel first, we flatten [H, W, C]): its weight goes [out, C, H, W] -> [H, W, C, out] ->
  [H*W*C, out].
- Box coordinates: torchvision predicts (dx, dy, dw, dh) per anchor / class, we predict
  (dy, dx, dh, dw): `box_output_perm` permutes the output channels (1, 0, 3, 2) within every
  group of 4. The box weights (10, 10, 5, 5) read the same in both orders.
- Frozen BatchNorm keeps its four arrays. torchvision computes (x - mean) * weight /
  sqrt(var + eps_torch) + bias, with eps_torch = 0 for the COCO_V1 weights (torchvision calls
  `overwrite_eps(model, 0.0)` after loading them) and 1e-5 otherwise; our layer adds its own
  epsilon (1e-5). The importer stores var + eps_torch - eps_ours as the moving variance, so
  var + eps is unchanged; a channel where that would be negative stores variance 0 and
  rescales gamma by sqrt(eps_ours / (var + eps_torch)) instead. Both are exact. BatchNorm in
  eval mode (nn.BatchNorm2d) is the same affine map, so it is imported the same way.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, List, Optional, Tuple

import numpy as np

# (dx, dy, dw, dh) -> (dy, dx, dh, dw), and back (the permutation is its own inverse).
_XY_TO_YX = np.array([1, 0, 3, 2])


@dataclasses.dataclass
class Entry:
    """Some state-dict tensors -> some model variables.

    `torch_shapes[i]` is the shape `keys[i]` must have; `convert` turns the arrays of `keys`
    (in order) into the values of `variables` (in order).
    """

    keys: Tuple[str, ...]
    variables: Tuple[object, ...]
    torch_shapes: Tuple[Tuple[int, ...], ...]
    convert: Callable[[List[np.ndarray]], List[np.ndarray]]


def variable_shape(variable) -> Tuple[int, ...]:
    """The shape of a Keras variable as a tuple of ints."""
    return tuple(int(d) for d in variable.shape)


def _permuted(array: np.ndarray, perm: Optional[np.ndarray]) -> np.ndarray:
    """`array` with its axis 0 (torch's output axis) reordered by `perm` (None: as is)."""
    return array if perm is None else array[perm]


def box_output_perm(channels: int) -> np.ndarray:
    """Output-channel order turning groups of (dx, dy, dw, dh) into (dy, dx, dh, dw)."""
    if channels % 4:
        raise ValueError(f"box regression output with {channels} channels: expected 4 per "
                         "anchor or class")
    return (np.arange(channels).reshape(-1, 4)[:, _XY_TO_YX]).reshape(-1)


def conv_entries(prefix: str, layer, out_perm: Optional[np.ndarray] = None) -> List[Entry]:
    """torch Conv2d `prefix.weight` (+ `.bias` when the layer has one) -> keras Conv2D."""
    kh, kw, cin, cout = variable_shape(layer.kernel)
    entries = [Entry((f"{prefix}.weight",), (layer.kernel,), ((cout, cin, kh, kw),),
                     lambda a: [_permuted(a[0], out_perm).transpose(2, 3, 1, 0)])]
    if getattr(layer, "use_bias", False):
        entries.append(Entry((f"{prefix}.bias",), (layer.bias,), ((cout,),),
                             lambda a: [_permuted(a[0], out_perm)]))
    return entries


def conv_transpose_entries(prefix: str, layer) -> List[Entry]:
    """torch ConvTranspose2d [in, out, kh, kw] -> keras Conv2DTranspose [kh, kw, out, in]."""
    kh, kw, cout, cin = variable_shape(layer.kernel)
    return [
        Entry((f"{prefix}.weight",), (layer.kernel,), ((cin, cout, kh, kw),),
              lambda a: [a[0].transpose(2, 3, 1, 0)]),
        Entry((f"{prefix}.bias",), (layer.bias,), ((cout,),), lambda a: [a[0]]),
    ]


def linear_entries(prefix: str, layer, out_perm: Optional[np.ndarray] = None,
                   input_chw: Optional[Tuple[int, int, int]] = None) -> List[Entry]:
    """torch Linear [out, in] -> keras Dense [in, out].

    input_chw: (C, H, W) when the input is a flattened feature map: torch flattens it
      channel first, we flatten [H, W, C].
    """
    fan_in, out = variable_shape(layer.kernel)

    def weight(arrays):
        w = _permuted(arrays[0], out_perm)
        if input_chw is not None:
            c, h, wd = input_chw
            w = w.reshape(out, c, h, wd).transpose(2, 3, 1, 0).reshape(h * wd * c, out)
            return [w]
        return [w.T]

    return [
        Entry((f"{prefix}.weight",), (layer.kernel,), ((out, fan_in),), weight),
        Entry((f"{prefix}.bias",), (layer.bias,), ((out,),),
              lambda a: [_permuted(a[0], out_perm)]),
    ]


def batch_norm_entries(prefix: str, layer, torch_epsilon: float) -> List[Entry]:
    """torch (Frozen)BatchNorm2d -> our FrozenBatchNormalization / BatchNormalization, with
    the epsilon difference moved into the variance (module docstring)."""
    channels = variable_shape(layer.gamma)[0]
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

    return [Entry(keys, (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance),
                  ((channels,),) * 4, convert)]
