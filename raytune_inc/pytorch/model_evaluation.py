"""The evaluation `tune` gives the strategy: a config -> the user's eval_fn on the FP32 model with that config."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from .batches import run_batch
from .lowering import apply_config
from .qparams import Calibration


class ModelEvaluation:
    """config -> eval_fn(the model with that config), with the calibration chosen before the run.

    Picklable: the model, the eval function and the calibration travel with it to each evaluator
    once. The evaluator calls `prepare` once with its device and CPU count; `eval_fn` gets the
    model on that device. Each op's lowered module is built once per process and reused by every
    trial that asks for it. `warmup`: one input batch the evaluator runs through the FP32 model
    when it is prepared, so that the first trial does not pay for torch's first kernels.
    """

    def __init__(self, model: nn.Module, eval_fn: Callable[[nn.Module], float], calibration: Calibration, warmup=None):
        self.model = model
        self.eval_fn = eval_fn
        self.calibration = calibration
        self.warmup = warmup
        self._lowered: dict[tuple[str, str], nn.Module] = {}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_lowered"] = {}  # built again where it runs
        return state

    def prepare(self, device: str, num_threads: int) -> None:
        """Run on `device` with `num_threads` torch threads: called once by the evaluator that holds this evaluation,
        when it starts."""
        torch.set_num_threads(num_threads)
        self.model = self.model.to(device)
        self._lowered = {}
        if self.warmup is not None:
            with torch.no_grad():
                try:
                    run_batch(self.model.eval(), self.warmup)
                except Exception:  # a warm-up only: the trials say what is wrong, if anything is
                    pass

    def build(self, config: Mapping[str, str]) -> nn.Module:
        return apply_config(self.model, config, self.calibration, self._lowered)

    def __call__(self, config: Mapping[str, str]) -> float:
        with torch.no_grad():
            return self.eval_fn(self.build(config))
