"""`tune(model, eval_fn, calib_data, ...)`: the model-level entry point, on the PyTorch backend."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..criterion import AccuracyCriterion
from ..history.measures import write_measures
from ..records import TuneResult
from ..run import TuningRun
from ..space import FP32, Op, TuningSpace, check_precisions
from ..strategies import Strategy
from ..tuner import execute
from ..versions import package_version
from ..workers import WorkersSpec, worker_groups
from .calibration import Calibration, calibrate, run_batch
from .digest import model_digest
from .evaluation import ModelEvaluation
from .measure import ModelSize, measure_latency, state_dict_bytes
from .modules import model_device
from .ops import discover_ops
from .precisions import handler
from .result import ModelTuneResult
from .sensitivity import Sensitivity
from .speed import without_slower


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
    example_inputs: Any = None,
    skip_slower: bool = False,
    sensitivity: bool = True,
) -> ModelTuneResult:
    """Find the most lowered version of the FP32 `model` whose `eval_fn(model)` meets the goal.

    `calib_data` is an iterable of inputs (a tensor, a tuple of positional inputs or a dict
    of keyword inputs per batch), run once through the FP32 model to calibrate static int8
    activations; without int8 in `precisions` it is not used and may be None. The model,
    `eval_fn`, `calib_data` and the calibration go to each evaluator once.
    `op_name_dict` / `op_type_dict` restrict the precisions of ops by name or module type
    (regex -> allowed precisions). `example_inputs` (one batch, as in `calib_data`): at the end,
    the FP32 and the tuned model are timed on it, eager and compiled (`res.latency`); without
    it nothing is timed. `skip_slower=True` (ours, not Neural Compressor's) first times each
    (op type, precision) pair, compiled, on an op's own input shape, and leaves out of the run
    the pairs slower than FP32 there (`res.skipped`). `sensitivity=True` (with `calib_data`)
    measures how far each op alone moves the model's output at each precision of the run
    (`res.sensitivity`, and the report draws it); with Ray evaluators it is measured in this
    process while they start and run, and guides the speculation as soon as it is ready (never
    the result). Everything else is as in `tune_space`.
    """
    called = time.monotonic()
    check_model(model)
    space = discover_ops(model, op_name_dict, op_type_dict)
    if not callable(eval_fn):
        raise TypeError(f"eval_fn must be callable (model -> accuracy), got {type(eval_fn).__name__}")
    precisions = check_precisions(precisions, "precisions")
    device = model_device(model)
    if example_inputs is not None:
        check_example_inputs(model, example_inputs)
    evaluation = ModelEvaluation(model, eval_fn, calib_data, space, precisions)
    calibration = evaluation.calibration  # here: bad calibration data fails before any Ray work
    space = reachable(model, space, calibration, evaluation.calibrated)
    skipped: dict[tuple[str, str], str] = {}
    if skip_slower:
        if calib_data is None:
            raise ValueError("skip_slower needs calib_data: the calibration batches give each op the input shape it is timed on")
        shapes = calibration.shapes or calibrate(model, calib_data, [], space.names).shapes
        space, skipped = without_slower(model, space, calibration, shapes, precisions, device)
    if worker_groups(workers):
        from ray import cloudpickle

        try:
            cloudpickle.dumps(evaluation)
        except Exception as exc:
            raise TypeError(
                f"the model, eval_fn and calib_data must be picklable to go to the evaluators: {type(exc).__name__}: {exc}"
            ) from exc
    run = TuningRun(space, evaluation, strategy, accuracy, precisions, max_trials, timeout, None)
    run.started = called  # its times (the first trial's start, the timeout) count from this call
    run.fingerprint.update(model=model_digest(model), torch=package_version("torch"), torchao=package_version("torchao"))
    measuring = Sensitivity(model, space, calibration, calib_data, precisions) if sensitivity and calib_data is not None else None
    parallel = bool(worker_groups(workers))

    def prepare(run: TuningRun) -> None:
        # In this process, while the evaluators start: the FP32 evaluation (the baseline; a resumed run has
        # it recorded), then the sensitivity, in a thread, for the speculation to take when it is ready.
        if run.baseline is None:
            run.evaluate_baseline(device=str(device))
        if measuring is not None and parallel:
            run.prior_future = measuring.start()

    try:
        res = execute(run, workers, checkpoint, resume, prepare=prepare)
    except BaseException:
        if measuring is not None:
            measuring.stop(abort=True)
        raise
    if measuring is not None:
        measuring.stop()
    table = measuring.result() if measuring is not None else {}
    config = res.config if res.config is not None else dict.fromkeys(space.names, FP32)
    tuned = evaluation.build(config)
    latency = measure_latency(model, tuned, example_inputs, device) if example_inputs is not None else None
    size = ModelSize(state_dict_bytes(model), state_dict_bytes(tuned))
    result = ModelTuneResult(
        **{f.name: getattr(res, f.name) for f in fields(TuneResult)},
        model=tuned,
        fp32_model=model,
        calibration=calibration,
        latency=latency,
        size=size,
        skipped=skipped,
        sensitivity=table,
    )
    if checkpoint is not None:
        write_measures(checkpoint, result.measures())
    return result


def check_example_inputs(model: nn.Module, example_inputs: Any) -> None:
    """Refuse `example_inputs` the FP32 model cannot run, naming the cause, before any work."""
    try:
        with torch.no_grad():
            run_batch(model.eval(), example_inputs)
    except Exception as exc:
        raise ValueError(f"example_inputs: the FP32 model rejects them: {type(exc).__name__}: {exc}") from exc


def reachable(model: nn.Module, space: TuningSpace, calibration: Calibration, calibrated: Sequence[str]) -> TuningSpace:
    """`space` without the calibrated precisions (static int8) of the ops the calibration data never reached."""
    unreached = {name for name in calibrated if name not in calibration.stats}
    if not unreached:
        return space
    ops = []
    for op in space:
        if op.name in unreached:
            module = model.get_submodule(op.name)
            keep = tuple(p for p in op.precisions if not handler(p, module).calibrated)
            if not keep:
                continue
            op = Op(op.name, op.type, keep)
        ops.append(op)
    if not ops:
        raise ValueError(f"the calibration data reaches none of the ops {sorted(unreached)[:5]}: no op is left to tune")
    return TuningSpace(ops)
