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

import pyarrow as pa
import pyarrow.compute as pc

from .checkpoint import HistoryStore, LoadedHistory, decode_configs, fingerprint
from .committed_path import CommittedPath
from .criterion import AccuracyCriterion
from .evaluation import EvaluateFn, as_accuracy
from .history import HistoryRow, finish_table, rows_table
from .monitor import RunMonitor
from .records import ERROR, OK, Evaluation, Trial, TuneResult
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
        self.fingerprint = fingerprint(space, self.strategy, accuracy, self.precisions, baseline)
        self.run_id = uuid.uuid4().hex
        self.started = time.monotonic()
        self.rows: list[HistoryRow] = []  # this session's evaluations, in dispatch order
        self.path: CommittedPath | None = None
        self.first_dispatch: float | None = None  # monotonic time of the first evaluation started
        self._next_trial_id = 0
        # Resume: the results recorded by earlier sessions (ok and error, baseline excluded), by config.
        self.recorded: dict[Config, HistoryRow] = {}
        self._loaded: LoadedHistory | None = None
        # Checkpoint: completed rows and commits not yet on disk.
        self.store: HistoryStore | None = None
        self._unsaved: list[HistoryRow] = []
        self._unsaved_commits: list[tuple[int, int]] = []
        self.monitor = RunMonitor(self.strategy.name)  # metrics and progress line

    @property
    def job_name(self) -> str:
        """What the run is called in Ray (job metadata, evaluator names)."""
        return f"raytune-inc {self.strategy.name} {self.run_id[:8]}"

    def restore(self, loaded: LoadedHistory) -> None:
        """Take the results of an earlier session of this run: they are committed, never evaluated again."""
        self._loaded = loaded
        self.run_id = loaded.run_id
        table = loaded.table
        if table.num_rows:
            self._next_trial_id = int(pc.max(table["trial_id"]).as_py()) + 1
        if self.baseline is None:
            self.baseline = loaded.baseline()  # a recorded baseline that failed is evaluated again
        results = table.filter(pc.and_(pc.is_in(table["status"], pa.array([OK, ERROR])), pc.not_equal(table["stage"], BASELINE_STAGE)))
        configs = decode_configs(self.space, results["config"])
        names = ("trial_id", "commit_seq", "stage", "status", "accuracy", "error", "worker", "node", "device")
        columns = {name: results[name].to_pylist() for name in names}
        starts = pc.divide(pc.cast(results["start_time"], pa.int64()), 1e6).to_pylist()
        ends = pc.divide(pc.cast(results["end_time"], pa.int64()), 1e6).to_pylist()
        for i, config in enumerate(configs):
            if config in self.recorded:
                continue
            c = {name: values[i] for name, values in columns.items()}
            evaluation = Evaluation(config, c["accuracy"], c["status"], c["error"], starts[i], ends[i], c["worker"], c["node"], c["device"])
            row = HistoryRow(c["trial_id"], config, c["stage"], starts[i], c["worker"], evaluation, c["commit_seq"], saved=True)
            if row.commit_seq is None:
                row.commit_seq = loaded.commits.get(row.trial_id)
            self.recorded[config] = row

    def expired(self) -> bool:
        return self.timeout > 0 and time.monotonic() - self.started >= self.timeout

    def dispatch(self, config: Config, stage: str) -> HistoryRow:
        """A new history row for an evaluation about to start; its trial id is the dispatch order."""
        row = HistoryRow(self._next_trial_id, config, stage, time.time())
        self._next_trial_id += 1
        self.rows.append(row)
        if self.first_dispatch is None:
            self.first_dispatch = time.monotonic()
        return row

    def complete(self, row: HistoryRow, evaluation: Evaluation) -> HistoryRow:
        row.evaluation = evaluation
        if self.store is not None:
            self._unsaved.append(row)
        self.monitor.completed(row, row.stage == BASELINE_STAGE)
        return row

    def save(self) -> None:
        """Write the rows completed and the commits made since the last save to the checkpoint (if any), durably."""
        if self.store is None or not (self._unsaved or self._unsaved_commits):
            return
        table = rows_table(self.run_id, self.strategy.name, self._unsaved, self.criterion, self.baseline) if self._unsaved else None
        self.store.append(table, self._unsaved_commits)
        for row in self._unsaved:
            row.saved = True
        self._unsaved.clear()
        self._unsaved_commits.clear()

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
        self.monitor.set_baseline(self.baseline, self.criterion.goal(self.baseline))
        return self.path

    def replay_recorded(self) -> None:
        """Commit the results recorded by earlier sessions that the path asks for, in order, as far as they go."""
        path = self.path
        while (candidate := path.next_trial()) is not None and (row := self.recorded.get(candidate.config)) is not None:
            self.commit(row)

    def commit(self, row: HistoryRow) -> Trial:
        """Commit a completed evaluation as the next trial of the path."""
        trial = self.path.commit(row.evaluation)
        if row.saved and row.commit_seq != trial.seq:
            self._unsaved_commits.append((row.trial_id, trial.seq))  # the row is on disk already
        row.commit_seq = trial.seq
        self.monitor.committed_trial(row, self.path.result_accuracy)
        return trial

    def history(self) -> pa.Table:
        """Every evaluation of the run, earlier sessions' included: the table `load_history` gives for its checkpoint."""
        table = rows_table(self.run_id, self.strategy.name, self.rows, self.criterion, self.baseline)
        commits: dict[int, int] = {}
        if self._loaded is not None:
            table = pa.concat_tables([self._loaded.table, table])
            commits = dict(self._loaded.commits)
            commits.update((r.trial_id, r.commit_seq) for r in self.recorded.values() if r.commit_seq is not None)
        return finish_table(table, commits, self.criterion, self.baseline)

    def result(self) -> TuneResult:
        path = self.path
        now = time.monotonic()
        return TuneResult(
            config=None if path.result is None else path.result.as_dict(),
            accuracy=path.result_accuracy,
            baseline=self.baseline,
            trials=list(path.trials),
            history=self.history(),
            strategy=self.strategy.name,
            stop_reason=path.stop_reason,
            run_id=self.run_id,
            evaluations=sum(1 for r in self.rows if r.evaluation is not None),
            wall_time=now - self.started,
            startup_time=(self.first_dispatch or now) - self.started,
        )
