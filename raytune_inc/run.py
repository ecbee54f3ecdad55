"""One tuning run: the trial bookkeeping that every executor shares.

Executors (sequential in-process, the asyncio driver on Ray or on a virtual clock) decide
where and when configs are evaluated; the run gives each evaluation its history row and
trial id, commits results on its committed path in the strategy's order, and hands what
finished to its storage (in memory, or an Arrow checkpoint) and to its monitor.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import pyarrow as pa

from .committed_path import CommittedPath
from .errors import TuningError
from .evaluation import EvaluateFn, as_accuracy, evaluate_config
from .history.fingerprint import fingerprint
from .history.storage import MemoryStorage, RunInfo, Storage
from .history.table import HistoryRow
from .monitor import RunMonitor
from .pass_model import Prior, check_prior
from .records import BASELINE_STAGE, Evaluation, Trial, TuneResult
from .running import Goal
from .settings import RunSettings, check_baseline
from .space import Config, TuningSpace

PriorInput = Mapping[tuple[str, str], float] | Prior | Future


class TuningRun:
    """A run's rows, its committed path and its result: `space` tuned with `evaluate` as `settings` ask.

    `baseline`: the all-fp32 config's accuracy, if given (None: it is evaluated first). `prior`: the
    expected accuracy loss of each (op, precision) alone (a mapping, or a `pass_model.Prior`), or a
    future of a measured proxy of it (tune's sensitivity, in a thread: see `take_prior`); it guides the
    speculation, never the result. `extras`: entries of the caller's to add to the fingerprint (tune's
    model digest and torch versions), which a resumed run must share. `early_decisions=False`: no
    evaluation is told the goal, so every one is read to its end (see `goal`).
    """

    def __init__(
        self,
        space: TuningSpace,
        evaluate: EvaluateFn,
        settings: RunSettings,
        baseline: float | None = None,
        prior: PriorInput | None = None,
        extras: Mapping[str, Any] | None = None,
        early_decisions: bool = True,
    ):
        settings.check_space(space)
        if not callable(evaluate):
            raise TypeError(f"evaluate must be callable (config dict -> accuracy), got {type(evaluate).__name__}")
        self.settings = settings
        self.space = space
        self.evaluate = evaluate
        self.early_decisions = early_decisions
        self.baseline: float | None = check_baseline(baseline)
        self._measured_prior: Future | None = prior if isinstance(prior, Future) else None
        self.prior: Prior | None = None if prior is None or isinstance(prior, Future) else check_prior(prior, space, self.precisions)
        self.fingerprint = {**fingerprint(space, self.strategy, self.criterion, self.precisions, self.baseline), **(extras or {})}
        self.run_id = settings.run_id
        self.started = settings.started
        self.rows: list[HistoryRow] = []  # this session's evaluations, in dispatch order
        self.path: CommittedPath | None = None
        self.first_dispatch: float | None = None  # monotonic time of the first evaluation started
        self.first_trial: float | None = None  # monotonic time of the first evaluation of a trial (not the baseline) started
        self.evaluator_startup: dict[str, float] = {}  # seconds from each evaluator's start to its being up
        self._next_trial_id = 0
        # Resume: the results recorded by earlier sessions (ok and error, baseline excluded), by config.
        self.recorded: dict[Config, HistoryRow] = {}
        self.storage: Storage = MemoryStorage()
        self.storage.open(self._info())
        self._unsaved: list[HistoryRow] = []  # completed rows not yet in the storage
        self._unsaved_commits: list[tuple[int, int]] = []  # commits of rows already in it
        self.monitor = RunMonitor(self.strategy.name)  # metrics and progress line

    @property
    def strategy(self):
        return self.settings.strategy

    @property
    def criterion(self):
        return self.settings.criterion

    @property
    def precisions(self) -> tuple[str, ...]:
        return self.settings.precisions

    @property
    def max_trials(self) -> int:
        return self.settings.max_trials

    @property
    def timeout(self) -> float:
        return self.settings.timeout

    @property
    def eval_timeout(self) -> float | None:
        return self.settings.eval_timeout

    def take_prior(self) -> Prior | None:
        """The prior measured while the run goes (a proxy in its own units, mapped to accuracy loss on the first results),
        once, when it is ready; None before, after, and where the measurement failed."""
        future = self._measured_prior
        if future is None or not future.done():
            return None
        self._measured_prior = None
        if future.exception() is not None or not future.result():
            return None
        self.prior = Prior(dict(future.result()), scale=None)
        return self.prior

    def evaluators_started(self, startup: Mapping[str, float]) -> None:
        """Each evaluator's seconds from its start to its being up (the result and the measures show them)."""
        self.evaluator_startup = dict(startup)

    def _info(self) -> RunInfo:
        return RunInfo(self.run_id, self.strategy.name, self.criterion, self.space, self.fingerprint)

    def use_storage(self, storage: Storage) -> None:
        """Keep the rows in `storage` from now on, and take the results an earlier session of this run recorded there:
        they are committed, never evaluated again."""
        recorded = storage.open(self._info())
        self.storage = storage
        if recorded is None:
            return
        self.run_id = recorded.run_id
        self._next_trial_id = recorded.next_trial_id
        if self.baseline is None:
            self.baseline = recorded.baseline  # a recorded baseline that failed is evaluated again
        self.recorded = recorded.results

    def expired(self) -> bool:
        return self.timeout > 0 and time.monotonic() - self.started >= self.timeout

    @property
    def goal(self) -> Goal | None:
        """What a trial's evaluation is told so that it may stop once it surely misses the goal (`running`): the goal,
        once the baseline is known, where the strategy decides by `meets` alone; else None (evaluate to the end)."""
        if self.baseline is None or not (self.early_decisions and self.strategy.decides_by_goal):
            return None
        return Goal(self.criterion.goal(self.baseline), self.criterion.higher_is_better)

    def dispatch(self, config: Config, stage: str) -> HistoryRow:
        """A new history row for an evaluation about to start; its trial id is the dispatch order."""
        row = HistoryRow(self._next_trial_id, config, stage, time.time())
        self._next_trial_id += 1
        self.rows.append(row)
        if self.first_dispatch is None:
            self.first_dispatch = time.monotonic()
        if self.first_trial is None and stage != BASELINE_STAGE:
            self.first_trial = time.monotonic()
        return row

    def complete(self, row: HistoryRow, evaluation: Evaluation) -> HistoryRow:
        row.evaluation = evaluation
        self._unsaved.append(row)
        self.monitor.completed(row, row.stage == BASELINE_STAGE)
        return row

    def save(self) -> None:
        """Hand the rows completed and the commits made since the last save to the storage (durably, for a checkpoint)."""
        if not (self._unsaved or self._unsaved_commits):
            return
        self.storage.append(self._unsaved, self._unsaved_commits, self.baseline)
        for row in self._unsaved:
            row.saved = True
        self._unsaved = []
        self._unsaved_commits = []

    def evaluate_baseline(self, device: str | None = None) -> None:
        """Evaluate the all-fp32 config here, in this process, and take it as the baseline (a failed one, or one past
        the eval_timeout, stops the run)."""
        row = self.dispatch(self.space.all_fp32(), BASELINE_STAGE)
        self.complete(row, evaluate_config(self.evaluate, row.config, device=device, timeout=self.eval_timeout))
        self.save()
        self.set_baseline(row.evaluation)

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
            self._unsaved_commits.append((row.trial_id, trial.seq))  # the row is in the storage already
        row.commit_seq = trial.seq
        self.monitor.committed_trial(row, self.path.result_accuracy)
        return trial

    def history(self) -> pa.Table:
        """Every evaluation of the run, earlier sessions' included: the table `load_history` gives for its checkpoint."""
        self.save()
        return self.storage.table(self.baseline)

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
            first_trial_time=None if self.first_trial is None else self.first_trial - self.started,
            evaluator_startup=dict(self.evaluator_startup),
        )
