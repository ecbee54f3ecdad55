"""Calibration: the FP32 model run once on the calibration data, recording what the int8 handlers need."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from .modules import model_device


@dataclass(frozen=True)
class OpStats:
    """What calibration saw of one op's input: its largest |value| and its number of dimensions."""

    absmax: float
    ndim: int


@dataclass(frozen=True)
class Calibration:
    """The statistics of each calibrated op, by op name (an op calibration never reached has none)."""

    stats: Mapping[str, OpStats] = field(default_factory=dict)


def _to(x, device: torch.device):
    return x.to(device) if isinstance(x, torch.Tensor) else x


def run_batch(model: nn.Module, batch) -> object:
    """`model` on one batch: a tensor, a tuple or list of positional inputs, or a dict of keyword inputs."""
    device = model_device(model)
    if isinstance(batch, Mapping):
        return model(**{k: _to(v, device) for k, v in batch.items()})
    if isinstance(batch, tuple | list):
        return model(*(_to(x, device) for x in batch))
    return model(_to(batch, device))


@torch.no_grad()
def calibrate(model: nn.Module, calib_data: Iterable | None, names: Iterable[str]) -> Calibration:
    """Run the FP32 model on `calib_data` once and record the input range of each module in `names`."""
    modules = dict(model.named_modules())
    absmax: dict[str, float] = {}
    ndim: dict[str, int] = {}
    hooks = []

    def hook(name):
        def record(module, args):
            if args and isinstance(args[0], torch.Tensor) and args[0].is_floating_point():
                absmax[name] = max(absmax.get(name, 0.0), float(args[0].detach().abs().max()))
                ndim[name] = args[0].dim()

        return record

    if calib_data is None:
        raise ValueError("int8 needs calibration data: calib_data is None (give a few input batches, or leave int8 out of precisions)")
    for name in names:
        hooks.append(modules[name].register_forward_pre_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        n = 0
        for batch in calib_data:
            run_batch(model, batch)
            n += 1
        if n == 0:
            raise ValueError("the calibration data is empty: give at least one batch")
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"the FP32 model rejects the calibration data: {type(exc).__name__}: {exc}") from exc
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return Calibration({name: OpStats(absmax[name], ndim[name]) for name in absmax})
