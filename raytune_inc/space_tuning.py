"""`tune_space`: the public entry point at the level of a tuning space; `execute`: a run on an executor, with its
checkpoint, which `tune_space` and the model level's `tune` share."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .criterion import AccuracyCriterion
from .evaluation import EvaluateFn
from .executors import Executor, make_executor
from .history.storage import ArrowStorage
from .records import TuneResult
from .run import TuningRun
from .settings import RunSettings
from .space import TuningSpace
from .strategies import Strategy
from .workers import WorkersSpec


def tune_space(
    space: TuningSpace,
    evaluate: EvaluateFn,
    strategy: str | Strategy = "conservative",
    accuracy: AccuracyCriterion | None = None,
    precisions: Sequence[str] = ("bf16", "fp16", "int8"),
    max_trials: int = 100,
    timeout: float = 0,
    workers: WorkersSpec = 4,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    baseline: float | None = None,
    prior: Mapping[tuple[str, str], float] | None = None,
    eval_timeout: float | None = None,
) -> TuneResult:
    """Find the most quantized config of `space` whose accuracy meets the goal.

    `evaluate(config)` takes a dict op name -> precision and returns the accuracy.
    `strategy` is "conservative", "auto_mixed_precision" or a Strategy instance.
    `accuracy` defaults to AccuracyCriterion() (1% relative loss, higher is better).
    `max_trials` caps the committed trials (baseline excluded); `timeout` (seconds,
    0: none) stops dispatching and returns what was committed. `workers=0` runs in
    this process, sequentially; `workers=N` evaluates on N Ray actors, speculatively,
    with the same committed trials and result; `Workers(N, num_cpus=..., num_gpus=...)`
    sets each evaluator's CPU and GPU share, and a list of them makes one pool of several
    kinds (e.g. `[Workers(2, num_cpus=4), Workers(4, num_gpus=0.25)]`). `baseline=None` evaluates the all-fp32 config first.

    `checkpoint=DIR` writes every evaluation to an Arrow history in DIR as the run goes
    (see `load_history`); a directory that already holds one is refused unless
    `resume=True`, which commits the recorded results again without evaluating them
    and evaluates only what was never recorded, so the run ends as an uninterrupted one
    would. Resuming a history of a different run (space, strategy, criterion,
    precisions, baseline or library version) raises HistoryError naming what differs;
    `resume=True` on an empty or new directory starts a new history.

    `prior` (ours): your own expected accuracy loss of each (op, precision) alone, e.g. from an
    earlier run; it makes the speculation's guesses better from the first trial and can never
    change the result. Ops and precisions outside the space are a ValueError naming them.

    `eval_timeout` (seconds; None or 0: no limit): an evaluation that runs longer is an errored
    evaluation whose error says it timed out, and the run goes on. In this process (`workers=0`,
    and the baseline of `tune`) it is interrupted at its next Python line; a Ray evaluator
    (`workers` >= 1) running it is killed and replaced. A timed-out config is not evaluated again.
    """
    settings = RunSettings(strategy, accuracy, precisions, max_trials, timeout, workers, checkpoint, resume, eval_timeout)
    run = TuningRun(space, evaluate, settings, baseline, prior)
    executor = make_executor(settings.workers)
    try:
        return execute(run, executor)
    finally:
        executor.close()


def execute(run: TuningRun, executor: Executor, prepare: Callable[[TuningRun], None] | None = None) -> TuneResult:
    """Run `run` on `executor`, with the checkpoint its settings name; `prepare(run)` runs in this process once the
    recorded history (if any) is restored: before any evaluation, while Ray's evaluators start. The caller closes
    the executor."""
    settings = run.settings
    if settings.checkpoint is not None:
        run.use_storage(ArrowStorage(settings.checkpoint, settings.resume))
    try:
        try:
            executor.run(run, prepare)
        finally:
            run.monitor.finished()
    finally:
        try:
            run.save()  # what finished last (cancelled evaluations included), also when the run failed
        finally:
            run.storage.close()
    return run.result()
