"""The asyncio driver: speculative dispatch, commits in strategy order, on any pool of evaluators. No Ray.

The driver advances the committed path with real results only, in strategy order,
and keeps every idle evaluator busy with the configs the speculation finds most
likely to be asked for next. Every result is kept by config, so a speculative
result is committed as soon as the strategy really asks for it. A `Pool` runs the
evaluations: Ray's evaluator actors (`actors.pool`) or a virtual clock (`simulation`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Coroutine, Sized
from typing import Any, Protocol

from .committed_path import TIMEOUT
from .deadline import timed_out_after
from .errors import TuningError
from .evaluation import MOOT
from .history.table import HistoryRow
from .pass_model import PassModel
from .records import BASELINE_STAGE, CANCELLED, ERROR, LOST, Cancelled, Evaluation, Failed, Lost
from .run import TuningRun
from .running import Goal
from .space import Config
from .speculation import Frontier, Speculator
from .strategies import Candidate, Outcome


class Pool(Protocol):
    """Evaluators that run what the driver gives them; the pool has no policy of its own.

    `idle`, `starting` and `in_flight` are collections whose sizes say how many evaluators are
    waiting for work, starting, and running an evaluation.
    """

    idle: Sized
    starting: Sized
    in_flight: Sized

    def submit(self, precisions: tuple[str, ...], payload: Any, task_name: str, here: bool = False, goal: Goal | None = None) -> str:
        """Start evaluating the config of `precisions` on an idle evaluator (`here`: in the driver's own process, while
        `here_idle`; it stops itself at the eval_timeout), told the `goal` where it may stop once it surely misses it
        (`running`); returns the evaluator's name."""

    async def wait(self, timeout: float | None) -> list[tuple[Any, tuple | Lost | Failed]]:
        """The evaluations that finished since the last call, each with its payload and its `Evaluation.record()`,
        or `Lost` (its evaluator died) or `Failed` (its task failed outside the evaluation function)."""

    here_idle: bool  # the driver's own process may take a committed trial now (`submit(..., here=True)`); see actors.pool

    def cancel(self, payload: Any) -> bool:
        """Tell the evaluator running `payload` to stop where it next looks (`running.stop_if_cancelled`); the evaluator
        lives on. Its evaluation still comes back from `wait`: cancelled, or finished if it ended first. False where it
        cannot be told (an evaluation in the driver's own process, which only takes committed trials)."""

    def kill(self, payload: Any) -> tuple[str, str]:
        """Stop the evaluation of `payload` (past its deadline): kill its evaluator and start another in its place;
        returns the evaluator's name and node. Its result never comes. Only a driver with an `eval_timeout` calls it."""


def run_coroutine(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run `coro` to completion, also when called from inside a running event loop (e.g. Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


class Driver:
    """Drives `run` on `pool`: speculative dispatch, commits in strategy order.

    `max_lost`: consecutive evaluations lost with their evaluator, without a result in between,
    after which the run gives up. `eval_timeout`: seconds an evaluation may run from its dispatch
    (None: no limit); one still running then is stopped (`pool.kill`) and recorded as an errored
    evaluation, never evaluated again and not lost. A speculative evaluation that a commit makes moot
    (the committed path can no longer ask for its config: `CommittedPath.may_ask`) is cancelled where
    the run makes early decisions: its evaluator stops it between batches or forward calls and takes
    a config that is needed.
    """

    def __init__(self, run: TuningRun, pool: Pool, max_lost: int, eval_timeout: float | None = None):
        self.run = run
        self.pool = pool
        self.max_lost = max_lost
        self.eval_timeout = eval_timeout
        self.deadlines: dict[HistoryRow, float] = {}  # evaluations in flight -> monotonic time they must end by
        self.moot: set[Config] = set()  # configs cancelled: never speculated on again (the committed path may still ask)
        self.model = PassModel(run.space, run.criterion)
        if run.prior is not None:
            self.model.set_prior(run.prior)
        self.speculator = Speculator(run.strategy, run.space, run.precisions, run.criterion, run.max_trials)
        # The finished evaluation of each config (ok, error or rejected), those recorded by earlier sessions included.
        self.rows: dict[Config, HistoryRow] = dict(run.recorded)
        self.outcomes: dict[Config, Outcome] = {}  # their outcomes, once the baseline is known
        self.lost_in_a_row = 0
        self.baseline_config = run.space.all_fp32()
        for row in self.rows.values():
            self.model.observe(row.stage, row.config, row.evaluation.accuracy)
        if run.baseline is not None:
            self.model.set_baseline(run.baseline)
            self.outcomes = {c: self._outcome(r) for c, r in self.rows.items()}

    def _outcome(self, row: HistoryRow) -> Outcome:
        accuracy = row.evaluation.accuracy
        return Outcome(accuracy, self.run.criterion.meets(accuracy, self.run.baseline))

    def _dispatch(self, config: Config, stage: str, here: bool = False) -> None:
        row = self.run.dispatch(config, stage)
        row.worker = self.pool.submit(config.precisions, row, f"evaluate {stage} #{row.trial_id}", here=here, goal=self.run.goal)
        if self.eval_timeout and not here:  # an evaluation in this process stops itself at its deadline
            self.deadlines[row] = time.monotonic() + self.eval_timeout

    def _stop_overdue(self) -> None:
        """Evaluations past their deadline: each evaluator is killed and replaced, and each evaluation is an errored one."""
        now = time.monotonic()
        for row in [row for row, deadline in self.deadlines.items() if deadline <= now]:
            worker, node = self.pool.kill(row)
            error = f"the evaluation {timed_out_after(self.eval_timeout)} on evaluator {worker}, which was killed and replaced"
            self._finish(row, Evaluation(row.config, None, ERROR, error, row.dispatched, time.time(), worker, node).record())

    def _cancel_moot(self) -> None:
        """Tell the evaluators of moot speculative evaluations to stop (the committed path can no longer ask for them)."""
        path = self.run.path
        if path is None or path.done or not self.run.early_decisions:
            return
        for _, row in list(self.pool.in_flight.values()):
            if row.config not in self.moot and not path.may_ask(row.config) and self.pool.cancel(row):
                self.moot.add(row.config)

    def _wait_timeout(self) -> float | None:
        """How long the next wait may be: until the run's timeout or the first deadline of an evaluation in flight."""
        now = time.monotonic()
        ends = [*([self.run.started + self.run.timeout] if self.run.timeout else []), *self.deadlines.values()]
        return max(0.0, min(ends) - now) + 1e-3 if ends else None

    def _finish(self, row: HistoryRow, record: tuple | Lost | Failed) -> None:
        run = self.run
        self.deadlines.pop(row, None)
        if isinstance(record, Cancelled):
            record = Evaluation(row.config, None, CANCELLED, MOOT, row.dispatched, time.time(), record.worker, record.node).record()
        if isinstance(record, Failed):
            # The evaluation function's own errors are errored evaluations; what escapes evaluate_config is a
            # TypeError naming the config (it returned something that is not an accuracy): the user's to fix.
            if isinstance(record.cause, TypeError):
                raise record.cause from None
            raise record.error
        if isinstance(record, Lost):
            run.complete(row, Evaluation(row.config, None, LOST, record.error, row.dispatched, time.time(), record.worker, record.node))
            self.lost_in_a_row += 1
            if self.lost_in_a_row >= self.max_lost:
                raise TuningError(
                    f"evaluators keep dying: {self.lost_in_a_row} evaluations in a row were lost with their evaluator "
                    f"(last: {record.error}); the committed trials are kept in the result",
                    result=run.result() if run.path else None,
                )
            return
        self.lost_in_a_row = 0
        evaluation = Evaluation.from_record(row.config, record)
        run.complete(row, evaluation)
        if evaluation.status == CANCELLED:
            return  # moot: not a result (were its config asked for after all, it would be evaluated again)
        if row.stage == BASELINE_STAGE:
            run.set_baseline(evaluation)
            self.model.set_baseline(run.baseline)
            self.outcomes = {c: self._outcome(r) for c, r in self.rows.items()}
            return
        self.rows[row.config] = row
        if run.baseline is not None:
            self.outcomes[row.config] = self._outcome(row)
        self.model.observe(row.stage, row.config, evaluation.accuracy)

    def _commit_ready(self) -> None:
        """Commit every result the committed path can take now, in order."""
        path = self.run.path
        while (candidate := path.next_trial()) is not None:
            if self.run.expired():
                path.stop(TIMEOUT)
                return
            row = self.rows.get(candidate.config)
            if row is None:
                return
            self.run.commit(row)

    def _frontier(self) -> Frontier:
        path = self.run.path
        if path is None:  # before the baseline: the strategy's first steps, every outcome unknown
            return Frontier((), {}, 0)
        return Frontier(path.outcomes, path.known, len(path.trials))

    def _fill(self) -> None:
        busy = {row.config for _, row in self.pool.in_flight.values()}
        if self.run.baseline is None and self.baseline_config not in busy and self.pool.idle:
            self._dispatch(self.baseline_config, BASELINE_STAGE)  # first, and again if its evaluator died
        here = not self.pool.idle and self.pool.here_idle  # no evaluator up yet: this process may evaluate it
        if not (self.pool.idle or here) or self.run.expired():
            return
        path = self.run.path
        if path is not None and (candidate := path.next_trial()) is not None and candidate.config not in busy:
            # The committed path waits for this one: no speculation needed to know it.
            self._dispatch(candidate.config, candidate.stage, here=here)
            busy.add(candidate.config)
        if not self.pool.idle:
            return  # speculation goes to evaluators only
        picks: list[Candidate] = self.speculator.pick(
            self._frontier(), self.outcomes, busy | self.rows.keys() | self.moot, len(self.pool.idle), self.model
        )
        for candidate in picks:
            self._dispatch(candidate.config, candidate.stage)

    def _take_prior(self) -> None:
        """A prior measured while the run goes (tune's sensitivity) guides the picks from when it is ready."""
        if (prior := self.run.take_prior()) is not None:
            self.model.set_prior(prior)

    async def drive(self) -> None:
        run = self.run
        while True:
            self._take_prior()
            if run.path is None and run.baseline is not None:
                run.start_path()
            if run.path is not None:
                self._commit_ready()
                self._cancel_moot()
            run.save()  # the results and commits of this step, durably, before anything else is awaited
            if run.path is not None and run.path.done:
                return
            self._fill()
            run.monitor.pool(len(self.pool.in_flight), len(self.pool.idle))
            if not self.pool.in_flight and not self.pool.starting:
                raise RuntimeError("driver stalled: nothing in flight and nothing to evaluate (a bug of raytune-inc)")
            for row, record in await self.pool.wait(timeout=self._wait_timeout()):
                self._finish(row, record)
            self._stop_overdue()
