"""A config applied to the FP32 model: each op at its precision, by the registry's handlers, the rest untouched."""

from __future__ import annotations

import copy
from collections.abc import Mapping, MutableMapping

from torch import nn

from ..space import FP32
from .modules import fold_batchnorm
from .precisions import folds, lower
from .qparams import Calibration

LoweredCache = MutableMapping[tuple[str, str], nn.Module]


def lowered_op(model: nn.Module, name: str, precision: str, calibration: Calibration, cache: LoweredCache | None = None) -> nn.Module:
    """Op `name` of the FP32 `model` at `precision`: built from a copy of the op (so a weight it shares with another
    module is its own from then on), with the BatchNorm after it folded in where its handler folds one; kept in
    `cache` and reused."""
    key = (name, precision)
    if cache is not None and key in cache:
        return cache[key]
    module = copy.deepcopy(model.get_submodule(name))
    if (norm := absorbed(model, name, precision, calibration)) is not None:
        module = fold_batchnorm(module, model.get_submodule(norm))
    lowered = lower(module, precision, calibration.stats.get(name))
    if cache is not None:
        cache[key] = lowered
    return lowered


def absorbed(model: nn.Module, name: str, precision: str, calibration: Calibration) -> str | None:
    """The BatchNorm op `name` absorbs at `precision` (its handler folds, and calibration found one after it), or None."""
    norm = calibration.folded.get(name)
    return norm if norm is not None and folds(model.get_submodule(name), precision) else None


def swaps(model: nn.Module, name: str, precision: str, calibration: Calibration, cache: LoweredCache | None = None) -> dict[str, nn.Module]:
    """The modules that take the place of op `name` and what it absorbs, at `precision`: module name -> replacement."""
    out = {name: lowered_op(model, name, precision, calibration, cache)}
    if (norm := absorbed(model, name, precision, calibration)) is not None:
        out[norm] = nn.Identity()
    return out


def apply_config(model: nn.Module, config: Mapping[str, str], calibration: Calibration, cache: LoweredCache | None = None) -> nn.Module:
    """A copy of the FP32 `model` with each op at its precision in `config` (op name -> precision), in eval mode.

    Module names stay those of the FP32 model. Lowering an op never changes another module: a
    weight it shares with one (tied weights) is copied for the lowered op, and the others keep the
    FP32 tensor. A BatchNorm folded into the op before it becomes an `nn.Identity`.
    """
    memo: dict[int, object] = {}
    for name, precision in config.items():
        if precision == FP32:
            continue
        for replaced, module in swaps(model, name, precision, calibration, cache).items():
            memo[id(model.get_submodule(replaced))] = module
    return copy.deepcopy(model, memo).eval()
