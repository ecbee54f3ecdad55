"""What `tune` returns: the trials and the tuned model, with what it costs as deployed, and the ways to deploy it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..history.measures import Measure
from ..pytorch.batches import as_inputs
from ..pytorch.costs import Latency, ModelSize
from ..pytorch.deployment import CompiledModel, DeployedAccuracy, check_deployed, compile_model
from ..pytorch.qparams import Calibration
from ..records import TuneResult
from .saved import save


@dataclass(frozen=True)
class ModelTuneResult(TuneResult):
    """A TuneResult with the tuned model.

    `model` has every op at its precision in `config` (the FP32 model's copy when no config met
    the goal); `eval_fn(model) == accuracy`. `calibration` holds the static int8 qparams it was
    built with; `latency` the FP32 and tuned models timed on `example_inputs` (None without it);
    `size` their state_dict sizes; `skipped` the (op type, precision) pairs `skip_slower` left out,
    with why; `sensitivity` how far each op alone moves its own output at each precision
    (the relative squared error of the outputs on a calibration batch, see `pytorch/sensitivity.py`);
    `deployed` (with `example_inputs`) the accuracy of the compiled tuned model, as production
    sees it, beside the eager one and judged against the goal; `check_inputs` the batches
    `compile()` checks the compiled model on (the first calibration batch, `example_inputs`).
    """

    model: nn.Module | None = None
    fp32_model: nn.Module | None = field(default=None, repr=False)
    calibration: Calibration | None = field(default=None, repr=False)
    latency: Latency | None = None
    size: ModelSize | None = None
    skipped: dict[tuple[str, str], str] = field(default_factory=dict)
    sensitivity: dict[tuple[str, str], float] = field(default_factory=dict)
    deployed: DeployedAccuracy | None = None
    check_inputs: tuple = field(default=(), repr=False)

    @property
    def model_dtype(self) -> str:
        """The dtype the model was tuned from, by name ("fp32", "bf16", "fp16"): what "fp32" in `config` and the
        history means, "as the model has it" (also in the history's metadata, "model_dtype")."""
        from ..pytorch.dtypes import model_dtype

        return model_dtype(self.fp32_model) if self.fp32_model is not None else "fp32"

    def compile(self) -> CompiledModel:
        """The tuned model compiled for inference on its device (`torch.compile` with inductor freezing, which int8
        convolutions and linears need to run on oneDNN's int8 kernels), checked before it is returned: called three
        times on each of `check_inputs`, it must leave them as they were, give the same outputs every call, and stay
        within `deployment.EAGER_TOLERANCE` of the eager tuned model; else DeploymentError says what differed. (The
        first call with any other input signature is checked the same way.) Compile the FP32 model with
        `raytune_inc.compile_model` to compare."""
        compiled = compile_model(self.model)
        if self.check_inputs:
            compiled.check(self.check_inputs)
        return compiled

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the tuned model to `directory` without pickle: the per-op config and calibration as JSON, the lowered
        ops' weights as safetensors. `raytune_inc.load(directory, fp32_model)` rebuilds it."""
        return save(directory, self.model, self.fp32_model, self.config or {}, self.calibration or Calibration())

    def export(self, example_inputs: Any):
        """`torch.export.export` of the tuned model on `example_inputs` (a tensor, a tuple of positional inputs or a
        dict of keyword inputs): an ExportedProgram, where torch.export can trace the model; its module is checked on
        `example_inputs` as `compile()` checks the compiled model."""
        import torch

        args, kwargs = as_inputs(example_inputs)
        program = torch.export.export(self.model, args, kwargs)
        check_deployed(program.module(), self.model, [(args, kwargs)])  # as `compile()` checks the compiled model
        return program

    def measures(self) -> list[Measure]:
        """Latency, size and what was skipped, as the rows a checkpoint directory keeps beside its history."""
        out = []
        if self.latency is not None:
            lat = self.latency
            for subject, value in (
                ("fp32 eager", lat.fp32_eager_ms),
                ("tuned eager", lat.tuned_eager_ms),
                ("fp32 compiled", lat.fp32_compiled_ms),
                ("tuned compiled", lat.tuned_compiled_ms),
            ):
                out.append(Measure("latency", subject, value, "ms", note=f"{lat.device}, median of {lat.calls} calls"))
        if (deployed := self.deployed) is not None:
            out.append(Measure("accuracy", "tuned eager", deployed.eager, note="eval_fn on the tuned model"))
            out.append(Measure("accuracy", "tuned compiled", deployed.compiled, note=deployed.verdict))
        if self.size is not None:
            out += [Measure("size", "fp32", self.size.fp32_bytes, "bytes"), Measure("size", "tuned", self.size.tuned_bytes, "bytes")]
        for (op_type, precision), why in self.skipped.items():
            out.append(Measure("skipped", op_type, None, precision=precision, note=why))
        for (op, precision), value in self.sensitivity.items():
            out.append(Measure("sensitivity", op, value, "relative squared error", precision=precision))
        for name, seconds in self.evaluator_startup.items():
            out.append(Measure("startup", name, seconds, "s", note="from its start to its being up"))
        if self.first_trial_time is not None:
            out.append(Measure("first trial", "run", self.first_trial_time, "s", note="from the call to the first trial's start"))
        return out
