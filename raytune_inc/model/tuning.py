"""`tune(model, eval_fn, calib_data, ...)`: the model-level entry point, a tuning run of a PyTorch model.

The lifecycle of a call, in order: the run's settings (its id, its start, its name in Ray), the
inputs checked before any work, the executor (Ray's evaluators start at once, while this process
goes on), the calibration, the space left to tune, the run, its execution, the result. Each object
owns its state: this module hands them what they need and never writes into them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from torch import nn

from ..criterion import AccuracyCriterion
from ..executors import Executor, make_executor
from ..history.measures import write_measures
from ..pytorch.calibration import calibrate
from ..pytorch.checks import check_calibration_data, check_example_inputs, check_model
from ..pytorch.costs import ModelSize, measure_latency, state_dict_bytes
from ..pytorch.deployment import checked, compile_model, deployed_accuracy
from ..pytorch.digest import model_digest
from ..pytorch.dtypes import model_dtype
from ..pytorch.model_evaluation import LOWERED_CACHE, ModelEvaluation, check_lowered_cache, release_freed_memory
from ..pytorch.modules import model_device
from ..pytorch.ops import discover_ops, reachable
from ..pytorch.precisions import needs_calibration
from ..pytorch.qparams import Calibration
from ..pytorch.sensitivity import Sensitivity
from ..pytorch.shared import SharedModel
from ..pytorch.speed import without_slower
from ..records import TuneResult
from ..run import TuningRun
from ..settings import RunSettings
from ..space import FP32
from ..space_tuning import execute
from ..strategies import Strategy
from ..versions import package_version
from ..workers import WorkersSpec
from .result import ModelTuneResult


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
    lowered_cache: float = LOWERED_CACHE,
    early_decisions: bool = True,
) -> ModelTuneResult:
    """Find the most lowered version of the FP32 `model` whose `eval_fn(model)` meets the goal.

    `calib_data` is an iterable of inputs (a tensor, a tuple of positional inputs or a dict
    of keyword inputs per batch), run once through the FP32 model to calibrate static int8
    activations; without int8 in `precisions` it is not used and may be None. The model,
    `eval_fn`, the calibration and one calibration batch go to each evaluator once; with Ray
    evaluators (and no resume) they start at once, while this process calibrates and evaluates
    the baseline. `op_name_dict` / `op_type_dict` restrict the precisions of ops by name or
    module type (regex -> allowed precisions). `example_inputs` (one batch, as in `calib_data`):
    at the end, the FP32 and the tuned model are timed on it, eager and compiled (`res.latency`),
    and `eval_fn` runs on the compiled tuned model (`res.deployed`); without it nothing is timed.
    `skip_slower=True` (ours, not Neural Compressor's) first times each (op type, precision)
    pair, compiled, on an op's own input shape, and leaves out of the run the pairs slower than
    FP32 there (`res.skipped`). `sensitivity=True` (with `calib_data`) measures how far each op
    alone moves its own output at each precision of the run (`res.sensitivity`, and the
    report draws it); with Ray evaluators it is measured in this process while they start and
    run, and guides the speculation as soon as it is ready (never the result). `eval_timeout`
    (seconds; None or 0: no limit) applies to each `eval_fn` call, the baseline's in this process
    included: one that takes longer is an errored trial (a baseline that takes longer stops the
    run). Trials are applied to the model in place (see `ModelEvaluation`); each evaluator keeps the
    lowered modules it built, at most `lowered_cache` times the model's bytes (least recently used
    ones evicted). A model in bf16 or fp16 is tuned from its own dtype: "fp32" in configs and the
    history then means "as the model has it" (`res.model_dtype`, and the history's metadata say
    which). An `eval_fn` may yield `raytune_inc.Running` after each batch instead of returning the
    accuracy (see `raytune_inc.running`): a trial is then stopped as soon as it surely misses the goal
    (`early_decisions=False`: every evaluation is read to its end). Everything else is as in `tune_space`.
    """
    settings = RunSettings(strategy, accuracy, precisions, max_trials, timeout, workers, checkpoint, resume, eval_timeout)
    tuning = ModelTuning(
        model, eval_fn, calib_data, settings, op_name_dict, op_type_dict, example_inputs, skip_slower, sensitivity, lowered_cache,
        early_decisions,
    )  # fmt: skip
    executor = make_executor(settings.workers, warm=warm_modules(model, eval_fn))
    try:
        if executor.parallel:
            check_picklable(model, eval_fn, tuning.first_batch)  # what goes to the evaluators, before any Ray work
        if not settings.resume:
            # The evaluators start now, while this process calibrates and evaluates the baseline: they import torch,
            # the backend and the model's own code, then wait for the evaluation.
            executor.launch(settings)
        return tuning.run(executor)
    finally:
        executor.close()


class ModelTuning:
    """One `tune` call: its inputs, checked when made (before any Ray work), then `run` on an executor: calibration,
    the space left to tune, the run and its measures, the result."""

    def __init__(
        self,
        model: nn.Module,
        eval_fn: Callable[[nn.Module], float],
        calib_data: Iterable | None,
        settings: RunSettings,
        op_name_dict: Mapping[str, Sequence[str]] | None = None,
        op_type_dict: Mapping[str, Sequence[str]] | None = None,
        example_inputs: Any = None,
        skip_slower: bool = False,
        sensitivity: bool = True,
        lowered_cache: float = LOWERED_CACHE,
        early_decisions: bool = True,
    ):
        check_model(model)
        if not isinstance(early_decisions, bool):
            raise ValueError(f"early_decisions must be True or False, got {early_decisions!r}")
        check_lowered_cache(lowered_cache)
        if not callable(eval_fn):
            raise TypeError(f"eval_fn must be callable (model -> accuracy), got {type(eval_fn).__name__}")
        self.space = discover_ops(model, op_name_dict, op_type_dict)
        settings.check_space(self.space)
        # The ops whose lowering at one of the run's precisions needs calibrated activation qparams (static int8).
        self.calibrated = [op.name for op in self.space if needs_calibration(model.get_submodule(op.name), settings.precisions)]
        self.first_batch = check_calibration_data(model, calib_data, needed=bool(self.calibrated))
        if skip_slower and calib_data is None:
            raise ValueError("skip_slower needs calib_data: the calibration batches give each op the input shape it is timed on")
        if example_inputs is not None:
            check_example_inputs(model, example_inputs)
        self.model, self.eval_fn, self.calib_data, self.settings = model, eval_fn, calib_data, settings
        self.example_inputs, self.skip_slower, self.measure_sensitivity = example_inputs, skip_slower, sensitivity
        self.device = model_device(model)
        self.lowered_cache = lowered_cache
        self.early_decisions = early_decisions

    def run(self, executor: Executor) -> ModelTuneResult:
        """Calibrate, settle the space, run it on `executor` (launched or not), and make the result."""
        model, precisions = self.model, self.settings.precisions
        calibration = calibrate(model, self.calib_data, self.calibrated, self.space.names, precisions) if self.calibrated else Calibration()
        space = reachable(model, self.space, calibration, self.calibrated)
        skipped: dict[tuple[str, str], str] = {}
        if self.skip_slower:
            shapes = calibration.shapes or calibrate(model, self.calib_data, [], space.names).shapes
            space, skipped = without_slower(model, space, calibration, shapes, precisions, self.device)
        lock = threading.Lock()  # the model, for the sensitivity's hooks and trials evaluated in this process in turn
        sensitivity = None
        if self.measure_sensitivity and self.calib_data is not None:
            sensitivity = Sensitivity(model, space, calibration, self.calib_data, precisions, lock)
        evaluation = ModelEvaluation(model, self.eval_fn, calibration, warmup=self.first_batch, lowered_cache=self.lowered_cache)
        if hasattr(executor, "lend") and self.device.type == "cpu":
            executor.lend(here_evaluation(evaluation, lock))
        run = TuningRun(
            space,
            evaluation,
            self.settings,
            # Speculating evaluators take the sensitivity as their prior from when it is measured, in a thread.
            prior=sensitivity.table if sensitivity is not None and executor.parallel else None,
            early_decisions=self.early_decisions,
            extras={
                "model": model_digest(model),
                "model_dtype": model_dtype(model),
                "torch": package_version("torch"),
                "torchao": package_version("torchao"),
            },
        )

        def prepare(run: TuningRun) -> None:
            """In this process, while the evaluators start: the FP32 evaluation (the baseline; a resumed run has it
            recorded), then the sensitivity, in a thread, for the speculation to take when it is ready."""
            if run.baseline is None:
                run.evaluate_baseline(device=str(self.device))
            if sensitivity is not None and executor.parallel:
                sensitivity.start()

        try:
            res = execute(run, executor, prepare)
        except BaseException:
            if sensitivity is not None:
                sensitivity.stop(abort=True)
            raise
        if sensitivity is not None:
            sensitivity.stop()
        # The evaluators (and what they hold: their lowered modules, the object store's copy of the weights) go before
        # the tuned model is built beside the model.
        executor.close()
        return self.result(run, res, evaluation, skipped, sensitivity)

    def result(
        self,
        run: TuningRun,
        res: TuneResult,
        evaluation: ModelEvaluation,
        skipped: dict[tuple[str, str], str],
        sensitivity: Sensitivity | None,
    ) -> ModelTuneResult:
        """The result of the run, with the tuned model, what it costs and its accuracy as deployed (with
        `example_inputs`), also written beside the history of a checkpoint."""
        config = res.config if res.config is not None else dict.fromkeys(run.space.names, FP32)
        tuned = evaluation.build(config)
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
            calibration=evaluation.calibration,
            latency=latency,
            size=ModelSize(state_dict_bytes(self.model), state_dict_bytes(tuned)),
            skipped=skipped,
            sensitivity=sensitivity.result() if sensitivity is not None else {},
            deployed=deployed,
            check_inputs=check_inputs,
        )
        if self.settings.checkpoint is not None:
            write_measures(self.settings.checkpoint, result.measures())
        return result


def here_evaluation(evaluation: ModelEvaluation, lock: threading.Lock):
    """`evaluation` as this process runs it while no evaluator is up (`actors.pool.Here`): in turn with the
    sensitivity's measurement on the same model; its lowered modules freed when evaluators take over."""
    from actors.pool import Here

    def release() -> None:
        evaluation.cache.clear()
        release_freed_memory()

    return Here(evaluation, release, lock=lock)


def check_picklable(model: nn.Module, *objects: Any) -> None:
    """Refuse what cannot go to the evaluators (they get it through Ray's object store, pickled). The model is pickled
    as they get it, a `SharedModel`, whose weights are out-of-band buffers: they are handed to a callback that keeps
    nothing, so the check costs the model's structure, not a copy of its weights."""
    from ray import cloudpickle

    try:
        cloudpickle.dumps((SharedModel(model), *objects), protocol=5, buffer_callback=lambda buffer: None)
    except Exception as exc:
        raise TypeError(
            f"the model, eval_fn and calib_data must be picklable to go to the evaluators: {type(exc).__name__}: {exc}"
        ) from exc


def warm_modules(model: nn.Module, eval_fn: Any) -> tuple[str, ...]:
    """What an evaluator imports as it comes up: torch, the backend, and the modules defining the model and eval_fn."""
    modules = ["torch", "raytune_inc.pytorch.model_evaluation"]
    for obj in (model, eval_fn):
        name = type(obj).__module__
        if name and name not in ("__main__", "builtins") and name not in modules:
            modules.append(name)
    return tuple(modules)
