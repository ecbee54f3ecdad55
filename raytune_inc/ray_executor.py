"""workers >= 1: the run on Ray's evaluator actors, driven by the asyncio driver."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import warnings
from collections.abc import Callable

import ray

from actors.pool import EvaluatorPool, Here

from .driver import Driver, run_coroutine
from .errors import CpuShareWarning
from .ray_session import cpus_per_evaluator, ray_session
from .records import CANCELLED, Evaluation
from .run import TuningRun
from .settings import RunSettings
from .workers import Workers

# Set to 0: the driver's process never evaluates a trial, even while no evaluator is up.
DRIVER_EVALUATES = "RAYTUNE_INC_DRIVER_EVALUATES"


class RayExecutor:
    """Evaluates on Ray actors (one or more groups of `Workers`), speculatively, and commits in strategy order.

    An `executors.Executor`: `launch(settings)` gets Ray and starts the evaluators before the run
    exists (they come up while the caller calibrates and evaluates the baseline), `run(run)` hands
    them the evaluation and drives the run (launching first if nothing did), `close()` stops them
    and the Ray it started. `max_lost`: consecutive evaluator deaths, without a result in between,
    after which the run gives up (default: twice the evaluators, at least 3). `warm`: modules each
    evaluator imports as it comes up, before its evaluation arrives. `lend(here)`: until the first
    evaluator is up, this process evaluates the trials the committed path waits for (CPU evaluators
    only: a GPU evaluator's numbers come from another device; RAYTUNE_INC_DRIVER_EVALUATES=0 turns it off).
    """

    parallel = True

    def __init__(
        self, groups: Workers | list[Workers], max_lost: int | None = None, start_timeout: float = 120.0, warm: tuple[str, ...] = ()
    ):
        self.groups = [groups] if isinstance(groups, Workers) else list(groups)
        count = sum(g.count for g in self.groups)
        self.max_lost = max_lost if max_lost is not None else max(3, 2 * count)
        self.start_timeout = start_timeout
        self.warm = tuple(warm)
        self.pool: EvaluatorPool | None = None
        self._session: contextlib.ExitStack | None = None
        self._here: Here | None = None

    def lend(self, here: Here) -> None:
        """Let this process evaluate committed trials with `here` until an evaluator is up (see `EvaluatorPool`)."""
        self._here = here

    def shares(self) -> list[tuple[float, float]]:
        """(num_cpus, num_gpus) of each evaluator, checked against the cluster."""
        gpus = ray.cluster_resources().get("GPU", 0.0)
        count = sum(g.count for g in self.groups)
        shares = []
        for g in self.groups:
            if g.num_gpus > gpus:
                raise ValueError(
                    f"each evaluator asks for num_gpus={g.num_gpus}, but the Ray cluster has {gpus:g} GPUs"
                    + (" (no CUDA device was found)" if not gpus else "")
                )
            shares += [(g.num_cpus if g.num_cpus is not None else cpus_per_evaluator(count), g.num_gpus)] * g.count
        return shares

    def max_starting(self, shares: list[tuple[float, float]]) -> int:
        """How many evaluators start at once: all of them where each has CPUs of its own; else as many as the
        cluster has CPUs (a start is seconds of CPU: more at once would only delay every one of them)."""
        cpus = ray.cluster_resources().get("CPU", 1.0)
        if len(shares) <= cpus or all(num_gpus > 0 for _, num_gpus in shares):
            return len(shares)
        warnings.warn(
            f"{len(shares)} evaluators asked for, and the Ray cluster has {cpus:g} CPUs: they share them, and start "
            f"{max(1, int(cpus))} at a time (each start imports torch and loads the evaluation, seconds of CPU). "
            "More evaluators than CPUs pay only while evaluations wait on something other than the CPU.",
            CpuShareWarning,
            stacklevel=4,
        )
        return max(1, int(cpus))

    def launch(self, settings: RunSettings) -> None:
        """Get Ray (see `ray_session`) and start the evaluators of the run `settings` names, before their evaluation
        exists: they come up while this process goes on (`run` hands them the evaluation). Once only."""
        if self.pool is not None:
            return
        self._session = contextlib.ExitStack()
        try:
            self._session.enter_context(ray_session(settings.job_name))
            shares = self.shares()
            self.pool = EvaluatorPool(shares, settings.name_prefix, self.max_starting(shares), self.warm)
            self.pool.launch()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the evaluators and disconnect from (or stop) the Ray that `launch` got; nothing where nothing was launched."""
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None
        if self._session is not None:
            session, self._session = self._session, None
            session.close()

    def run(self, run: TuningRun, prepare: Callable[[TuningRun], None] | None = None) -> None:
        """`prepare(run)` runs in this process once the evaluators are starting: their start-up overlaps it."""
        if run.baseline is not None and run.recorded:
            run.start_path()
            run.replay_recorded()  # resume: no Ray at all when the recorded results finish the path
            run.save()
            if run.path.done:
                return
        self.launch(run.settings)
        pool = self.pool
        try:
            run.monitor.attach_metrics(run.run_id)
            pool.load(run.space, run.evaluate)
            if self._here is not None and all(g.num_gpus == 0 for g in self.groups) and os.environ.get(DRIVER_EVALUATES, "1") != "0":
                pool.lend_here(dataclasses.replace(self._here, timeout=run.eval_timeout), run.space)
            run_coroutine(self._drive(run, pool, prepare))
        finally:
            run.evaluators_started(pool.startup)
            run.monitor.finished()  # while Ray is up: its last metrics are exported as it shuts down

    async def _drive(self, run: TuningRun, pool: EvaluatorPool, prepare: Callable[[TuningRun], None] | None) -> None:
        try:
            if prepare is not None:
                prepare(run)
            await pool.start(self.start_timeout)
            await Driver(run, pool, self.max_lost, run.eval_timeout).drive()
        finally:
            now = time.time()
            for row in pool.shutdown():
                run.complete(row, Evaluation(row.config, None, CANCELLED, "cancelled: the run stopped", row.dispatched, now, row.worker))
