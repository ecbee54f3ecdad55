"""`tune(model, eval_fn, calib_data, ...)`: the model-level entry point, on the PyTorch backend."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..criterion import AccuracyCriterion
from ..records import TuneResult
from ..run import TuningRun
from ..space import check_precisions
from ..strategies import Strategy
from ..tuner import execute
from ..versions import package_version
from ..workers import WorkersSpec, worker_groups
from .digest import model_digest
from .evaluation import ModelEvaluation
from .modules import model_device
from .ops import discover_ops
from .precisions import torchao_config


@dataclass(frozen=True)
class ModelTuneResult(TuneResult):
    """A TuneResult with the tuned model: `model` has every op at its precision in `config`
    (the FP32 model when no config met the goal); `torchao_config` is the torchao FqnToConfig of
    its int8 Linear ops."""

    model: nn.Module | None = None
    torchao_config: Any = None


def check_model(model: nn.Module) -> None:
    """Refuse, naming the cause and the fix, a model that `tune` cannot take apart and lower."""
    if isinstance(model, torch.jit.ScriptModule):
        raise TypeError(
            f"model is a TorchScript module ({type(model).__name__}, from torch.jit.script or torch.jit.trace): its ops "
            "cannot be replaced one by one; pass the Python nn.Module it was made from"
        )
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for name, tensor in (*model.named_parameters(), *model.named_buffers()):
        if tensor.device.type == "meta":
            raise ValueError(
                f"model has tensors on the meta device ({name!r}): they hold no values to evaluate; load the weights first "
                "(e.g. from_pretrained, or model.to_empty(device=...) then load_state_dict)"
            )
    for name, p in model.named_parameters():
        if p.is_floating_point() and p.dtype != torch.float32:
            raise ValueError(
                f"model is not FP32: parameter {name!r} is {p.dtype}; tune takes the FP32 model and finds what can go "
                "lower, so pass it in FP32 (e.g. model.float())"
            )


def tune(
    model: nn.Module,
    eval_fn: Callable[[nn.Module], float],
    calib_data: Iterable | None,
    strategy: str | Strategy = "conservative",
    accuracy: AccuracyCriterion | None = None,
    precisions: Sequence[str] = ("bf16", "fp16", "int8"),
    max_trials: int = 100,
    timeout: float = 0,
    workers: WorkersSpec = 4,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    op_name_dict: Mapping[str, Sequence[str]] | None = None,
    op_type_dict: Mapping[str, Sequence[str]] | None = None,
) -> ModelTuneResult:
    """Find the most lowered version of the FP32 `model` whose `eval_fn(model)` meets the goal.

    `calib_data` is an iterable of inputs (a tensor, a tuple of positional inputs or a dict
    of keyword inputs per batch), run once through the FP32 model to calibrate the int8
    activation scales; without int8 in `precisions` it is not used and may be None. The
    model, `eval_fn` and `calib_data` go to each evaluator once.
    Everything else is as in `tune_space`; `op_name_dict` / `op_type_dict` restrict the
    precisions of ops by name or module type (regex -> allowed precisions).
    """
    check_model(model)
    space = discover_ops(model, op_name_dict, op_type_dict)
    if not callable(eval_fn):
        raise TypeError(f"eval_fn must be callable (model -> accuracy), got {type(eval_fn).__name__}")
    evaluation = ModelEvaluation(model, eval_fn, calib_data, space, check_precisions(precisions, "precisions"))
    evaluation.calibration  # noqa: B018 - calibrate here: bad calibration data fails before any Ray work
    if worker_groups(workers):
        from ray import cloudpickle

        try:
            cloudpickle.dumps(evaluation)
        except Exception as exc:
            raise TypeError(
                f"the model, eval_fn and calib_data must be picklable to go to the evaluators: {type(exc).__name__}: {exc}"
            ) from exc
    run = TuningRun(space, evaluation, strategy, accuracy, precisions, max_trials, timeout, None)
    run.fingerprint.update(model=model_digest(model), torch=package_version("torch"), torchao=package_version("torchao"))

    def baseline_here(run: TuningRun) -> None:
        # The FP32 evaluation runs in this process first: an eval_fn that fails on the FP32
        # model stops the run before any evaluator starts. A resumed run has it recorded.
        if run.baseline is None:
            run.evaluate_baseline(device=str(model_device(model)))

    res = execute(run, workers, checkpoint, resume, prepare=baseline_here)
    config = res.config if res.config is not None else dict.fromkeys(space.names, "fp32")
    tuned = evaluation.build(config)
    return ModelTuneResult(
        **{f.name: getattr(res, f.name) for f in fields(TuneResult)},
        model=tuned,
        torchao_config=torchao_config(config, evaluation.calibration, model),
    )
