"""A config applied to the FP32 model: each op at its precision, by the registry's handlers, the rest untouched."""

from __future__ import annotations

import contextlib
import copy
from collections import OrderedDict
from collections.abc import Iterator, Mapping, MutableMapping

import torch
from torch import nn

from ..space import FP32
from .modules import fold_batchnorm, module_bytes
from .precisions import folds, lower
from .qparams import Calibration

Key = tuple[str, str]  # (op name, precision)


class LoweredCache(MutableMapping[Key, nn.Module]):
    """Lowered modules by (op name, precision), least recently used first, within a memory budget.

    Whenever the cache is over `budget` bytes (a module added, or `trim()`), the least recently
    used modules go, except those `pinned` (the modules of the trial running, which it holds while
    it runs even where they alone are over the budget): so the cache never holds more than the
    larger of its budget and one trial's modules, and the modules of a trial that ended go as the
    next one builds its own. `bytes` is what the cache holds now, `peak_bytes` the most it held;
    `hits`, `misses` and `evicted` count lookups and evictions. `budget=None`: no limit.
    """

    def __init__(self, budget: int | None = None):
        self.budget = budget
        self._modules: OrderedDict[Key, nn.Module] = OrderedDict()
        self._sizes: dict[Key, int] = {}
        self.bytes = self.peak_bytes = 0
        self.hits = self.misses = self.evicted = 0
        self.pinned: frozenset[Key] = frozenset()

    def __getitem__(self, key: Key) -> nn.Module:
        module = self._modules[key]
        self._modules.move_to_end(key)
        return module

    def __contains__(self, key: object) -> bool:
        found = key in self._modules
        if found:
            self.hits += 1
        else:
            self.misses += 1
        return found

    def __setitem__(self, key: Key, module: nn.Module) -> None:
        if key in self._modules:
            del self[key]
        self._modules[key] = module
        self._sizes[key] = module_bytes(module)
        self.bytes += self._sizes[key]
        self.trim()
        self.peak_bytes = max(self.peak_bytes, self.bytes)

    def __delitem__(self, key: Key) -> None:
        del self._modules[key]
        self.bytes -= self._sizes.pop(key)

    def __iter__(self) -> Iterator[Key]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)

    def trim(self) -> None:
        """Evict the least recently used modules not `pinned` until the cache is within its budget."""
        if self.budget is None:
            return
        for key in list(self._modules):
            if self.bytes <= self.budget:
                return
            if key not in self.pinned:
                del self[key]
                self.evicted += 1

    @contextlib.contextmanager
    def pin(self, keys: Iterator[Key] | frozenset[Key] | set[Key]):
        """`keys` (the (op, precision) pairs of the trial running) are not evicted in the `with` block; after it, the
        cache is trimmed to its budget."""
        self.pinned = frozenset(keys)
        try:
            yield self
        finally:
            self.pinned = frozenset()
            self.trim()

    def stats(self) -> dict[str, int | None]:
        return {
            "modules": len(self),
            "bytes": self.bytes,
            "peak_bytes": self.peak_bytes,
            "budget": self.budget,
            "hits": self.hits,
            "misses": self.misses,
            "evicted": self.evicted,
        }


LoweredModules = MutableMapping[Key, nn.Module]


def _alias(t: torch.Tensor) -> torch.Tensor:
    alias = t.detach()
    return nn.Parameter(alias, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else alias


def aliased_copy(module: nn.Module) -> nn.Module:
    """A copy of `module` (its submodules, hooks and attributes) whose parameters and buffers are new tensor objects on
    the same memory as the original's: a lowering handler builds new tensors and assigns them (`.to(dtype)`,
    quantization), never writes into the ones it was given, so the op's FP32 weights (at 1B parameters, a few hundred
    MB for an output head) are never copied, only read; the original module is unchanged."""
    memo: dict[int, torch.Tensor] = {}
    for t in (*module.parameters(), *module.buffers()):
        if id(t) not in memo and type(t) in (torch.Tensor, nn.Parameter):
            memo[id(t)] = _alias(t)
    return copy.deepcopy(module, memo)


def lowered_op(model: nn.Module, name: str, precision: str, calibration: Calibration, cache: LoweredModules | None = None) -> nn.Module:
    """Op `name` of the FP32 `model` at `precision`: built from a copy of the op (`aliased_copy`: a weight it shares
    with another module is its own object from then on), with the BatchNorm after it folded in where its handler
    folds one; kept in `cache` and reused."""
    key = (name, precision)
    if cache is not None and key in cache:
        return cache[key]
    module = aliased_copy(model.get_submodule(name))
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


def swaps(
    model: nn.Module, name: str, precision: str, calibration: Calibration, cache: LoweredModules | None = None
) -> dict[str, nn.Module]:
    """The modules that take the place of op `name` and what it absorbs, at `precision`: module name -> replacement."""
    out = {name: lowered_op(model, name, precision, calibration, cache)}
    if (norm := absorbed(model, name, precision, calibration)) is not None:
        out[norm] = nn.Identity()
    return out


def apply_config(model: nn.Module, config: Mapping[str, str], calibration: Calibration, cache: LoweredModules | None = None) -> nn.Module:
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


def replacements(
    model: nn.Module, config: Mapping[str, str], calibration: Calibration, cache: LoweredModules | None = None
) -> dict[str, nn.Module]:
    """Module name -> the module that takes its place in `model` at `config`: each lowered op, and an `nn.Identity` for
    each BatchNorm one absorbs. A module inside another one replaced is left out (the outer one brings its own)."""
    out: dict[str, nn.Module] = {}
    for name, precision in config.items():
        if precision != FP32:
            out.update(swaps(model, name, precision, calibration, cache))
    return {name: module for name, module in out.items() if not any(name.startswith(f"{other}.") for other in out)}


@contextlib.contextmanager
def applied(model: nn.Module, config: Mapping[str, str], calibration: Calibration, cache: LoweredModules | None = None):
    """`model` itself with each op at its precision in `config`, in eval mode, for the `with` block; put back as it was
    after it (its modules, and each module's training flag), however the block ends.

    The same model `apply_config` returns a copy of, without copying it: only the ops whose
    precision is not FP32 are built (or taken from `cache`), and swapped in place of the FP32
    modules, which are kept aside and swapped back.
    """
    swapped = replacements(model, config, calibration, cache)
    if "" in swapped:  # the model is itself the one op lowered: the lowered module is the whole model
        yield swapped[""].eval()
        return
    modes = {module: module.training for module in model.modules()}
    saved = {name: model.get_submodule(name) for name in swapped}
    try:
        for name, module in swapped.items():
            model.set_submodule(name, module)
        yield model.eval()
    finally:
        for name, module in saved.items():
            model.set_submodule(name, module)
        for module, training in modes.items():
            module.training = training
