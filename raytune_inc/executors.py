"""What runs a tuning run's evaluations: the `Executor` protocol, and the executor a `workers=` setting asks for."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from .workers import Workers

if TYPE_CHECKING:
    from .run import TuningRun
    from .settings import RunSettings


class Executor(Protocol):
    """Runs a `TuningRun`'s evaluations: in this process (`sequential.SequentialExecutor`) or on Ray's evaluator actors
    (`ray_executor.RayExecutor`).

    `parallel`: the evaluations run in other processes, several at a time (what they evaluate is
    pickled to them, and the speculation uses a prior measured meanwhile). The caller owns the
    lifecycle: `launch(settings)` (optional) starts what can start before the run exists, `run`
    walks the run to its end, `close()` (always, once done) stops what was started.
    """

    parallel: bool

    def launch(self, settings: RunSettings) -> None:
        """Start now what can start before the run exists (Ray's evaluators); nothing in-process."""

    def run(self, run: TuningRun, prepare: Callable[[TuningRun], None] | None = None) -> None:
        """Call `prepare(run)` (evaluators may start meanwhile), evaluate the baseline if the run has none, then
        walk `run.start_path()` to its end."""

    def close(self) -> None:
        """Stop what `launch` or `run` started; nothing when nothing was."""


def make_executor(groups: Sequence[Workers], warm: Sequence[str] = ()) -> Executor:
    """The executor for the evaluator `groups` of a run's settings (none: in this process). `warm`: the modules each
    Ray evaluator imports as it comes up (torch, the model's code), before its evaluation arrives."""
    if not groups:
        from .sequential import SequentialExecutor

        return SequentialExecutor()
    from .ray_executor import RayExecutor  # Ray is imported only when it is used

    return RayExecutor(list(groups), warm=tuple(warm))
