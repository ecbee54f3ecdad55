"""A batch as `tune` takes it (a tensor, a tuple or list of positional inputs, a dict of keyword inputs, or a `Call` of
both), and a model run on one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from .modules import model_device

Inputs = tuple[tuple, dict]  # one call's positional and keyword inputs


@dataclass(frozen=True)
class Call:
    """One call's positional and keyword inputs together: a batch for a model called with both (e.g. as a pipeline
    calls it, recorded by a forward pre-hook)."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


def as_inputs(batch) -> Inputs:
    """`batch` as the positional and keyword inputs of one call."""
    if isinstance(batch, Call):
        return tuple(batch.args), dict(batch.kwargs)
    if isinstance(batch, Mapping):
        return (), dict(batch)
    if isinstance(batch, tuple | list):
        return tuple(batch), {}
    return (batch,), {}


def _to(x, device: torch.device):
    return x.to(device) if isinstance(x, torch.Tensor) else x


def run_batch(model: nn.Module, batch) -> object:
    """`model` on one batch, its tensors moved to the model's device."""
    device = model_device(model)
    args, kwargs = as_inputs(batch)
    return model(*(_to(x, device) for x in args), **{k: _to(v, device) for k, v in kwargs.items()})
