"""A config applied to a copy of the FP32 model, and the evaluation `tune` gives the strategy."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, MutableMapping

import torch
from torch import nn

from ..space import FP32, TuningSpace
from .calibration import Calibration, calibrate, run_batch
from .modules import fold_batchnorm
from .precisions import lower, needs_calibration

LoweredCache = MutableMapping[tuple[str, str], nn.Module]


def lowered_op(model: nn.Module, name: str, precision: str, calibration: Calibration, cache: LoweredCache | None = None) -> nn.Module:
    """Op `name` of the FP32 `model` at `precision`: built from a copy of the op (so a weight it shares with another
    module is its own from then on), with the BatchNorm after it folded in at int8; kept in `cache` and reused."""
    key = (name, precision)
    if cache is not None and key in cache:
        return cache[key]
    module = copy.deepcopy(model.get_submodule(name))
    if precision == "int8" and name in calibration.folded:
        module = fold_batchnorm(module, model.get_submodule(calibration.folded[name]))
    lowered = lower(module, precision, calibration.stats.get(name))
    if cache is not None:
        cache[key] = lowered
    return lowered


def apply_config(model: nn.Module, config: Mapping[str, str], calibration: Calibration, cache: LoweredCache | None = None) -> nn.Module:
    """A copy of the FP32 `model` with each op at its precision in `config` (op name -> precision), in eval mode.

    Module names stay those of the FP32 model. Lowering an op never changes another module: a
    weight it shares with one (tied weights) is copied for the lowered op, and the others keep the
    FP32 tensor. A BatchNorm folded into an int8 convolution becomes an `nn.Identity`.
    """
    memo: dict[int, object] = {}
    for name, precision in config.items():
        if precision == FP32:
            continue
        memo[id(model.get_submodule(name))] = lowered_op(model, name, precision, calibration, cache)
        if precision == "int8" and name in calibration.folded:
            memo[id(model.get_submodule(calibration.folded[name]))] = nn.Identity()
    return copy.deepcopy(model, memo).eval()


class ModelEvaluation:
    """The evaluation function `tune` gives the strategy: config -> eval_fn(model with that config).

    Picklable; the model, eval function, calibration data and the driver's calibration travel with
    it to each evaluator once. The evaluator calls `prepare` once with its device and CPU count;
    `eval_fn` gets the model on that device. Each op's lowered module is built once per process and
    reused by every trial that asks for it.
    """

    def __init__(
        self,
        model: nn.Module,
        eval_fn: Callable[[nn.Module], float],
        calib_data: Iterable | None,
        space: TuningSpace,
        precisions: tuple[str, ...],
    ):
        """Ops whose handlers at one of `precisions` need it are calibrated; without any, `calib_data` may be None."""
        self.model = model
        self.eval_fn = eval_fn
        self.calib_data = calib_data
        modules = dict(model.named_modules())
        self.calibrated = [name for name in space.names if needs_calibration(modules[name], precisions)]
        self.names = space.names
        self._calibration: Calibration | None = None
        self._lowered: dict[tuple[str, str], nn.Module] = {}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_lowered"] = {}  # built again where it runs
        return state

    def prepare(self, device: str, num_threads: int) -> None:
        """Run on `device` with `num_threads` torch threads: called once by the evaluator that holds this evaluation,
        when it starts. The model goes to `device`, and one calibration batch through it, so that the first trial
        does not pay for torch's first kernels."""
        torch.set_num_threads(num_threads)
        self.model = self.model.to(device)
        self._lowered = {}
        batch = next(iter(self.calib_data), None) if self.calib_data is not None else None
        if batch is not None:
            with torch.no_grad():
                try:
                    run_batch(self.model.eval(), batch)
                except Exception:  # a warm-up only: the trials say what is wrong, if anything is
                    pass

    @property
    def calibration(self) -> Calibration:
        """Calibrated on first use (in the driver, before the evaluators start; they receive it with the evaluation)."""
        if self._calibration is None:
            if self.calibrated:
                self._calibration = calibrate(self.model, self.calib_data, self.calibrated, self.names)
            else:
                self._calibration = Calibration()
        return self._calibration

    def build(self, config: Mapping[str, str]) -> nn.Module:
        return apply_config(self.model, config, self.calibration, self._lowered)

    def __call__(self, config: Mapping[str, str]) -> float:
        with torch.no_grad():
            return self.eval_fn(self.build(config))
