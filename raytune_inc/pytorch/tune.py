"""`tune(model, eval_fn, calib_data, ...)`: the model-level entry point, on the PyTorch backend."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..criterion import AccuracyCriterion
from ..history.measures import write_measures
from ..records import TuneResult
from ..run import Executor, TuningRun
from ..settings import RunSettings
from ..space import FP32, Op, TuningSpace, check_precisions
from ..strategies import Strategy, get_strategy
from ..tuner import execute, make_executor
from ..versions import package_version
from ..workers import WorkersSpec
from .calibration import Calibration, calibrate, rejected, run_batch
from .deployment import checked, compile_model, deployed_accuracy
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
    eval_timeout: float | None = None,
) -> ModelTuneResult:
    """Find the most lowered version of the FP32 `model` whose `eval_fn(model)` meets the goal.

    `calib_data` is an iterable of inputs (a tensor, a tuple of positional inputs or a dict
    of keyword inputs per batch), run once through the FP32 model to calibrate static int8
    activations; without int8 in `precisions` it is not used and may be None. The model,
    `eval_fn`, `calib_data` and the calibration go to each evaluator once; with Ray evaluators
    (and no resume) they start at once, while this process calibrates and evaluates the baseline.
    `op_name_dict` / `op_type_dict` restrict the precisions of ops by name or module type
    (regex -> allowed precisions). `example_inputs` (one batch, as in `calib_data`): at the end,
    the FP32 and the tuned model are timed on it, eager and compiled (`res.latency`); without
    it nothing is timed. `skip_slower=True` (ours, not Neural Compressor's) first times each
    (op type, precision) pair, compiled, on an op's own input shape, and leaves out of the run
    the pairs slower than FP32 there (`res.skipped`). `sensitivity=True` (with `calib_data`)
    measures how far each op alone moves the model's output at each precision of the run
    (`res.sensitivity`, and the report draws it); with Ray evaluators it is measured in this
    process while they start and run, and guides the speculation as soon as it is ready (never
    the result). `eval_timeout` (seconds; None or 0: no limit) applies to each `eval_fn` call,
    the baseline's in this process included: one that takes longer is an errored trial (a baseline
    that takes longer stops the run). Everything else is as in `tune_space`.
    """
    called = time.monotonic()
    check_model(model)
    space = discover_ops(model, op_name_dict, op_type_dict)
    if not callable(eval_fn):
        raise TypeError(f"eval_fn must be callable (model -> accuracy), got {type(eval_fn).__name__}")
    precisions = check_precisions(precisions, "precisions")
    RunSettings.checked(space, strategy, accuracy, precisions, max_trials, timeout, None, eval_timeout)  # again once the space is final
    if example_inputs is not None:
        check_example_inputs(model, example_inputs)
    evaluation = ModelEvaluation(model, eval_fn, calib_data, space, precisions)
    check_calibration_data(model, calib_data, needed=bool(evaluation.calibrated))
    executor = make_executor(workers)
    run_id = uuid.uuid4().hex
    if _on_ray(executor):
        check_picklable(model, eval_fn, calib_data)  # what the evaluation holds besides the calibration, before any Ray work
    early = _on_ray(executor) and not resume
    if early:
        # The evaluators start now, while this process calibrates and evaluates the baseline: they import torch,
        # the backend and the model's own code, then wait for the evaluation.
        executor.warm = warm_modules(model, eval_fn)
        executor.launch(f"raytune-inc {get_strategy(strategy).name} {run_id[:8]}", f"raytune-inc-{run_id[:8]}")
    try:
        tuning = _Tuning(model, eval_fn, calib_data, space, precisions, evaluation, example_inputs, skip_slower, sensitivity)
        run = tuning.make_run(strategy, accuracy, max_trials, timeout, eval_timeout, run_id, called)
        return tuning.finish(run, tuning.execute(run, executor, checkpoint, resume), checkpoint)
    finally:
        if early:
            executor.close()


class _Tuning:
    """One `tune` call once its inputs are checked: calibration, the run and its measures, the result."""

    def __init__(self, model, eval_fn, calib_data, space, precisions, evaluation, example_inputs, skip_slower, sensitivity):
        self.model, self.eval_fn, self.calib_data = model, eval_fn, calib_data
        self.precisions, self.evaluation, self.example_inputs = precisions, evaluation, example_inputs
        self.device = model_device(model)
        self.calibration = evaluation.calibration
        self.first_batch = next(iter(calib_data), None) if calib_data is not None else None  # checks the compiled model
        self.space = reachable(model, space, self.calibration, evaluation.calibrated)
        self.skipped: dict[tuple[str, str], str] = {}
        if skip_slower:
            if calib_data is None:
                raise ValueError("skip_slower needs calib_data: the calibration batches give each op the input shape it is timed on")
            shapes = self.calibration.shapes or calibrate(model, calib_data, [], self.space.names).shapes
            self.space, self.skipped = without_slower(model, self.space, self.calibration, shapes, precisions, self.device)
        self.sensitivity = (
            Sensitivity(model, self.space, self.calibration, calib_data, precisions) if sensitivity and calib_data is not None else None
        )

    def make_run(self, strategy, accuracy, max_trials, timeout, eval_timeout, run_id: str, called: float) -> TuningRun:
        run = TuningRun(
            self.space,
            self.evaluation,
            strategy,
            accuracy,
            self.precisions,
            max_trials,
            timeout,
            None,
            run_id=run_id,
            eval_timeout=eval_timeout,
        )
        run.started = called  # its times (the first trial's start, the timeout) count from the call
        run.fingerprint.update(model=model_digest(self.model), torch=package_version("torch"), torchao=package_version("torchao"))
        return run

    def prepare(self, run: TuningRun, parallel: bool) -> None:
        """In this process, while the evaluators start: the FP32 evaluation (the baseline; a resumed run has it
        recorded), then the sensitivity, in a thread, for the speculation to take when it is ready."""
        if run.baseline is None:
            run.evaluate_baseline(device=str(self.device))
        if self.sensitivity is not None and parallel:
            run.prior_future = self.sensitivity.start()

    def execute(self, run: TuningRun, executor: Executor, checkpoint, resume: bool) -> TuneResult:
        parallel = _on_ray(executor)
        try:
            res = execute(run, executor, checkpoint, resume, prepare=lambda r: self.prepare(r, parallel))
        except BaseException:
            if self.sensitivity is not None:
                self.sensitivity.stop(abort=True)
            raise
        if self.sensitivity is not None:
            self.sensitivity.stop()
        return res

    def finish(self, run: TuningRun, res: TuneResult, checkpoint) -> ModelTuneResult:
        config = res.config if res.config is not None else dict.fromkeys(self.space.names, FP32)
        tuned = self.evaluation.build(config)
        check_inputs = tuple({id(b): b for b in (self.first_batch, self.example_inputs) if b is not None}.values())
        latency = deployed = None
        if self.example_inputs is not None:
            compiled = compile_model(tuned)
            failure = checked(compiled, check_inputs)
            timed = compiled if failure is None else compile_model(tuned, check=False)  # timed all the same; `deployed` says why not
            latency = measure_latency(self.model, tuned, self.example_inputs, self.device, timed)
            # Taken after the timing calls: the accuracy production sees, after many calls of the compiled model.
            eager = res.accuracy if res.config is not None else res.baseline
            goal, meets = run.criterion.goal(res.baseline), lambda value: run.criterion.meets(value, res.baseline)
            deployed = deployed_accuracy(compiled, self.eval_fn, eager, goal, meets, failure)
        result = ModelTuneResult(
            **{f.name: getattr(res, f.name) for f in fields(TuneResult)},
            model=tuned,
            fp32_model=self.model,
            calibration=self.calibration,
            latency=latency,
            size=ModelSize(state_dict_bytes(self.model), state_dict_bytes(tuned)),
            skipped=self.skipped,
            sensitivity=self.sensitivity.result() if self.sensitivity is not None else {},
            deployed=deployed,
            check_inputs=check_inputs,
        )
        if checkpoint is not None:
            write_measures(checkpoint, result.measures())
        return result


def _on_ray(executor: Executor) -> bool:
    """Whether `executor` runs the evaluations on Ray evaluators (the one executor that can be launched early)."""
    return hasattr(executor, "launch")


def check_calibration_data(model: nn.Module, calib_data: Iterable | None, needed: bool) -> None:
    """Refuse, before any work, calibration data that static int8 needs and does not have, or that the model rejects
    (its first batch is run through it)."""
    if not needed:
        return
    if calib_data is None:
        raise ValueError("int8 needs calibration data: calib_data is None (give a few input batches, or leave int8 out of precisions)")
    first = next(iter(calib_data), None)
    if first is None:
        raise ValueError("the calibration data is empty: give at least one batch")
    try:
        with torch.no_grad():
            run_batch(model.eval(), first)
    except Exception as exc:
        raise rejected(model, first, exc) from exc


def check_picklable(*objects: Any) -> None:
    """Refuse what cannot go to the evaluators (they get it through Ray's object store, pickled)."""
    from ray import cloudpickle

    try:
        cloudpickle.dumps(objects)
    except Exception as exc:
        raise TypeError(
            f"the model, eval_fn and calib_data must be picklable to go to the evaluators: {type(exc).__name__}: {exc}"
        ) from exc


def warm_modules(model: nn.Module, eval_fn: Any) -> tuple[str, ...]:
    """What an evaluator imports as it comes up: torch, the backend, and the modules defining the model and eval_fn."""
    modules = ["torch", "raytune_inc.pytorch.evaluation"]
    for obj in (model, eval_fn):
        name = type(obj).__module__
        if name and name not in ("__main__", "builtins") and name not in modules:
            modules.append(name)
    return tuple(modules)


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
