"""workers=0: the in-process executor. One evaluation at a time, in strategy order, no Ray."""

from __future__ import annotations

from collections.abc import Callable

from .committed_path import TIMEOUT
from .evaluation import evaluate_config
from .run import TuningRun
from .settings import RunSettings


class SequentialExecutor:
    """An `executors.Executor` that evaluates in this process, one config at a time: nothing to launch or close."""

    parallel = False

    def launch(self, settings: RunSettings) -> None:
        pass

    def close(self) -> None:
        pass

    def run(self, run: TuningRun, prepare: Callable[[TuningRun], None] | None = None) -> None:
        if prepare is not None:
            prepare(run)
        if run.baseline is None:
            run.evaluate_baseline()
        path = run.start_path()
        while (candidate := path.next_trial()) is not None:
            row = run.recorded.get(candidate.config)  # resume: a result recorded earlier is not evaluated again
            if row is None:
                if run.expired():
                    path.stop(TIMEOUT)
                    break
                row = run.dispatch(candidate.config, candidate.stage)
                run.monitor.pool(1, 0)
                run.complete(row, evaluate_config(run.evaluate, row.config, timeout=run.eval_timeout, goal=run.goal))
                run.monitor.pool(0, 1)
            run.commit(row)
            run.save()
