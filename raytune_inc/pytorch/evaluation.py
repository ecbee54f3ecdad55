"""A config applied to a copy of the FP32 model, and the evaluation `tune` gives the strategy."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

from ..space import FP32, TuningSpace
from .calibration import Calibration, calibrate
from .precisions import lower, needs_calibration


def untie(model: nn.Module, names: Iterable[str]) -> None:
    """Give each module of `names` its own copy of every parameter it shares with another module (tied
    weights), in place, so that lowering it leaves the other modules as they were."""
    holders: dict[int, set[int]] = {}
    for module in model.modules():
        for p in module._parameters.values():
            if p is not None:
                holders.setdefault(id(p), set()).add(id(module))
    for name in names:
        module = model.get_submodule(name)
        for key, p in list(module._parameters.items()):
            if p is not None and len(holders[id(p)]) > 1:
                holders[id(p)].discard(id(module))
                setattr(module, key, nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad))


def apply_config(model: nn.Module, config: Mapping[str, str], calibration: Calibration) -> nn.Module:
    """A copy of the FP32 `model` with each op at its precision in `config` (op name -> precision), in eval mode.

    Module names and state_dict keys stay those of the FP32 model; a tied weight is untied for the ops
    that are lowered (see `untie`).
    """
    model = copy.deepcopy(model)
    lowered = [name for name, precision in config.items() if precision != FP32]
    untie(model, lowered)
    for name in lowered:
        module = model.get_submodule(name)
        replacement = lower(module, config[name], calibration.stats.get(name))
        if replacement is not module:
            model.set_submodule(name, replacement)
    return model.eval()


class ModelEvaluation:
    """The evaluation function `tune` gives the strategy: config -> eval_fn(model with that config).

    Picklable; the model, eval function and calibration data travel with it to each evaluator
    once, and calibration runs once per process, on first use. The evaluator calls `prepare`
    once with its device and CPU count; `eval_fn` gets the model on that device.
    """

    def __init__(
        self,
        model: nn.Module,
        eval_fn: Callable[[nn.Module], float],
        calib_data: Iterable | None,
        space: TuningSpace,
        precisions: tuple[str, ...],
    ):
        """Only ops whose handlers at one of `precisions` need it are calibrated; without any, `calib_data`
        may be None or empty."""
        self.model = model
        self.eval_fn = eval_fn
        self.calib_data = calib_data
        modules = dict(model.named_modules())
        self.calibrated = [name for name in space.names if needs_calibration(modules[name], precisions)]
        self._calibration: Calibration | None = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_calibration"] = None  # recomputed once where it runs
        return state

    def prepare(self, device: str, num_threads: int) -> None:
        """Run on `device` with `num_threads` torch threads: called once by the evaluator that holds this evaluation."""
        torch.set_num_threads(num_threads)
        self.model = self.model.to(device)
        self._calibration = None

    @property
    def calibration(self) -> Calibration:
        if self._calibration is None:
            self._calibration = calibrate(self.model, self.calib_data, self.calibrated) if self.calibrated else Calibration()
        return self._calibration

    def build(self, config: Mapping[str, str]) -> nn.Module:
        return apply_config(self.model, config, self.calibration)

    def __call__(self, config: Mapping[str, str]) -> float:
        with torch.no_grad():
            return self.eval_fn(self.build(config))
