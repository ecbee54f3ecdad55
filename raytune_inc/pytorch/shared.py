"""A model pickled as its structure plus its tensors as numpy buffers: one copy of the weights per node, shared.

`SharedModel(model)` pickles (protocol 5) as a skeleton of the model, every parameter and buffer
on the meta device, and one numpy array per distinct tensor, each a byte view of the tensor's
memory, which pickle hands out of band. Ray's object store keeps such buffers once, in shared
memory, and each process on a node that unpickles the object gets zero-copy views of that one
copy (on another node, Ray pulls the object there once). Unpickled, `SharedModel.model` is the
model again, its tensors those views: read-only by contract (numpy marks them non-writable; torch
does not, and a write into one would change every evaluator's copy on the node), never written by
lowering (a lowered op is built from a copy of its module) nor by a model in eval mode. Tied
weights stay tied (one array, one Parameter), and a tensor subclass or a non-CPU tensor stays in
the skeleton, pickled as torch pickles it.

The caller's model is never changed: the arrays are views of its tensors while pickling, and the
skeleton is a copy of its modules without their tensors (kilobytes).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class _Place:
    """Where a tensor sits in the model: each (module path, attribute) holding it, and how to rebuild it."""

    holders: tuple[tuple[str, str], ...]
    parameter: bool
    requires_grad: bool
    dtype: torch.dtype
    shape: tuple[int, ...]


def _shareable(t: torch.Tensor) -> bool:
    return type(t) in (torch.Tensor, nn.Parameter) and t.device.type == "cpu" and t.layout == torch.strided and not t.is_quantized


def _tensors(model: nn.Module) -> dict[int, tuple[torch.Tensor, bool, list[tuple[str, str]]]]:
    """id(tensor) -> (tensor, is a parameter, [(module path, attribute)]): each distinct shareable tensor once."""
    found: dict[int, tuple[torch.Tensor, bool, list[tuple[str, str]]]] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        for kind, tensors in ((True, module._parameters), (False, module._buffers)):
            for attr, t in tensors.items():
                if t is not None and _shareable(t):
                    found.setdefault(id(t), (t, kind, []))[2].append((path, attr))
    return found


def _bytes(t: torch.Tensor) -> np.ndarray:
    """The tensor's memory as a flat uint8 array: a view where it is contiguous (numpy has no bf16: bytes for all)."""
    flat = t.detach().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy() if flat.numel() else np.zeros(0, np.uint8)


def _meta(t: torch.Tensor) -> torch.Tensor:
    meta = torch.empty(t.shape, dtype=t.dtype, device="meta")
    return nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else meta


class SharedModel:
    """A model that pickles its weights as out-of-band buffers (see the module's docstring); `.model` is the model."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __getstate__(self):
        found = _tensors(self.model)
        memo = {key: _meta(t) for key, (t, _, _) in found.items()}
        skeleton = copy.deepcopy(self.model, memo)
        places = [_Place(tuple(holders), parameter, t.requires_grad, t.dtype, tuple(t.shape)) for t, parameter, holders in found.values()]
        return {"skeleton": skeleton, "places": places, "arrays": [_bytes(t) for t, _, _ in found.values()]}

    def __setstate__(self, state):
        model: nn.Module = state["skeleton"]
        modules = dict(model.named_modules(remove_duplicate=False))
        with warnings.catch_warnings():  # "the given NumPy array is not writable": read-only by contract
            warnings.simplefilter("ignore", UserWarning)
            for place, array in zip(state["places"], state["arrays"], strict=True):
                t = torch.from_numpy(array).view(place.dtype).reshape(place.shape)
                if place.parameter:
                    t = nn.Parameter(t, requires_grad=place.requires_grad)
                for path, attr in place.holders:
                    holder = modules[path]
                    (holder._parameters if place.parameter else holder._buffers)[attr] = t
        self.model = model


def shared_bytes(model: nn.Module) -> int:
    """The bytes of the model's tensors that a `SharedModel` shares (each distinct tensor once)."""
    return sum(t.numel() * t.element_size() for t, _, _ in _tensors(model).values())
