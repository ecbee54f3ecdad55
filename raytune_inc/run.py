"""One tuning run: its checked inputs, baseline, committed path and evaluations.

Executors (sequential in-process, or Ray) drive a `TuningRun`: they decide where
and when configs are evaluated; the run decides what is committed.
"""

from __future__ import annotations

import math
import numbers
import time
import uuid
from collections.abc import Sequence
from typing import Protocol

from .committed_path import CommittedPath
from .criterion import AccuracyCriterion
from .evaluation import EvaluateFn, as_accuracy
from .history import HistoryRow, history_table
from .records import Evaluation, Trial, TuneResult
from .space import Config, TuningSpace, check_precisions
from .strategies import Strategy, get_strategy

BASELINE_STAGE = "baseline"


class TuningError(RuntimeError):
    """The run cannot go on (e.g. the baseline evaluation failed); the message says why.

    `result` holds what was committed before it stopped, where there was a path.
    """

    def __init__(self, message: str, result: TuneResult | None = None):
        super().__init__(message)
        self.result = result


class Executor(Protocol):
    def run(self, run: TuningRun) -> None:
        """Evaluate the baseline if the run has none, then walk `run.start_path()` to its end."""


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


class TuningRun:
    def __init__(
        self,
        space: TuningSpace,
        evaluate: EvaluateFn,
        strategy: str | Strategy,
        accuracy: AccuracyCriterion | None,
        precisions: Sequence[str],
        max_trials: int,
        timeout: float,
        baseline: float | None,
    ):
        if not isinstance(space, TuningSpace):
            raise TypeError(f"space must be a TuningSpace, got {type(space).__name__}")
        if not callable(evaluate):
            raise TypeError(f"evaluate must be callable (config dict -> accuracy), got {type(evaluate).__name__}")
        if accuracy is None:
            accuracy = AccuracyCriterion()
        if not isinstance(accuracy, AccuracyCriterion):
            raise TypeError(f"accuracy must be an AccuracyCriterion, got {type(accuracy).__name__}")
        self.precisions = check_precisions(precisions, "precisions")
        if not any(p != "fp32" for p in self.precisions):
            raise ValueError("precisions must name at least one of bf16, fp16, int8")
        self.strategy = get_strategy(strategy)
        self.strategy.check(space, self.precisions)
        self.max_trials = _check_count("max_trials", max_trials)
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not timeout >= 0:
            raise ValueError(f"timeout must be a number of seconds >= 0 (0: none), got {timeout!r}")
        if baseline is not None:
            if isinstance(baseline, bool) or not isinstance(baseline, numbers.Real) or not math.isfinite(baseline):
                raise ValueError(f"baseline must be a finite number or None (evaluate the all-fp32 config), got {baseline!r}")
            baseline = float(baseline)

        self.space = space
        self.evaluate = evaluate
        self.criterion = accuracy
        self.timeout = float(timeout)
        self.baseline: float | None = baseline
        self.run_id = uuid.uuid4().hex
        self.started = time.monotonic()
        self.rows: list[HistoryRow] = []
        self.path: CommittedPath | None = None
        self.first_dispatch: float | None = None  # monotonic time of the first evaluation started

    def expired(self) -> bool:
        return self.timeout > 0 and time.monotonic() - self.started >= self.timeout

    def dispatch(self, config: Config, stage: str) -> HistoryRow:
        """A new history row for an evaluation about to start; its trial id is the dispatch order."""
        row = HistoryRow(len(self.rows), config, stage, time.time())
        self.rows.append(row)
        if self.first_dispatch is None:
            self.first_dispatch = time.monotonic()
        return row

    def complete(self, row: HistoryRow, evaluation: Evaluation) -> HistoryRow:
        row.evaluation = evaluation
        return row

    def set_baseline(self, evaluation: Evaluation) -> None:
        """Take the all-fp32 evaluation as the baseline; a failed one stops the run."""
        if evaluation.accuracy is None or not math.isfinite(evaluation.accuracy):
            raise TuningError(
                f"the baseline evaluation (all-fp32 config) failed, so there is no accuracy to tune against:\n"
                f"{evaluation.error or f'it returned {evaluation.accuracy}'}"
            )
        self.baseline = as_accuracy(evaluation.accuracy, evaluation.config)

    def start_path(self) -> CommittedPath:
        if self.baseline is None:
            raise RuntimeError("start_path() before the baseline is known")
        plan = self.strategy.plan(self.space, self.precisions, self.criterion)
        self.path = CommittedPath(plan, self.criterion, self.baseline, self.space.all_fp32(), self.max_trials)
        return self.path

    def commit(self, row: HistoryRow) -> Trial:
        """Commit a recorded evaluation as the next trial of the path."""
        trial = self.path.commit(row.evaluation)
        row.commit_seq = trial.seq
        return trial

    def _meets(self, accuracy: float | None) -> bool:
        return self.baseline is not None and self.criterion.meets(accuracy, self.baseline)

    def result(self) -> TuneResult:
        path = self.path
        now = time.monotonic()
        return TuneResult(
            config=None if path.result is None else path.result.as_dict(),
            accuracy=path.result_accuracy,
            baseline=self.baseline,
            trials=list(path.trials),
            history=history_table(self.run_id, self.strategy.name, self.rows, self._meets),
            strategy=self.strategy.name,
            stop_reason=path.stop_reason,
            run_id=self.run_id,
            evaluations=sum(1 for r in self.rows if r.evaluation is not None),
            wall_time=now - self.started,
            startup_time=(self.first_dispatch or now) - self.started,
        )
