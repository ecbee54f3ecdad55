"""Records of a run: one evaluation, one committed trial, and the result; and the words that describe them.

- Status of an evaluation: `ok`, `error` (it raised or returned NaN), `rejected` (stopped once
  it certainly failed the goal: see `running`), `cancelled` (in flight when the run stopped, or
  stopped because the committed path could no longer ask for its config: not a result),
  `lost` (its evaluator died; it is evaluated again).
- `BASELINE_STAGE`: the stage of the all-fp32 evaluation; strategies name the other stages.
- *Evaluated*: finished ok, error or rejected. *Wasted*: evaluated, not the baseline, never committed
  (a speculative miss). The *result*: the last committed trial that meets the goal.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Protocol, TypeVar

from .space import Config

if TYPE_CHECKING:
    import pyarrow as pa


class Status(StrEnum):
    OK = "ok"
    ERROR = "error"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    LOST = "lost"


OK, ERROR, REJECTED, CANCELLED, LOST = Status.OK, Status.ERROR, Status.REJECTED, Status.CANCELLED, Status.LOST
EVALUATED = (OK, ERROR, REJECTED)  # the statuses of an evaluation that finished
BASELINE_STAGE = "baseline"


def is_wasted(status: str, stage: str, commit_seq: int | None) -> bool:
    """An evaluation that finished (ok, error or rejected) but was never committed, other than the baseline: a speculative miss."""
    return status in EVALUATED and stage != BASELINE_STAGE and commit_seq is None


class _Judged(Protocol):
    @property
    def meets(self) -> bool | None: ...


J = TypeVar("J", bound=_Judged)


def result_of(committed: Iterable[J]) -> J | None:
    """The result of a committed path, given in commit order: its last trial that meets the goal."""
    result = None
    for trial in committed:
        if trial.meets:
            result = trial
    return result


@dataclass(frozen=True)
class Evaluation:
    """One call of the evaluation function on one config, wherever it ran.

    `accuracy` is None when the evaluation raised or returned NaN; `error` then says
    why (with the traceback text where there was one). An evaluation that yielded `Running`
    has `samples` (read) and `samples_total`; a rejected one (stopped once it certainly failed
    the goal) has no accuracy and the `bound` it reached: the best its accuracy could have been.
    """

    config: Config
    accuracy: float | None
    status: str = OK
    error: str | None = None
    start: float = 0.0
    end: float = 0.0
    worker: str = "in-process"
    node: str = ""  # the Ray node id of the evaluator that ran it; the host name for an in-process evaluation
    device: str | None = None
    samples: int | None = None
    samples_total: int | None = None
    bound: float | None = None

    def record(self) -> tuple:
        """The evaluation without its config: the small record an evaluator sends back."""
        return (
            self.accuracy, self.status, self.error, self.start, self.end, self.worker, self.node, self.device,
            self.samples, self.samples_total, self.bound,
        )  # fmt: skip

    @classmethod
    def from_record(cls, config: Config, record: tuple) -> Evaluation:
        return cls(config, *record)


@dataclass(frozen=True)
class Lost:
    """What comes back for an evaluation whose evaluator died while it held it (crash, OOM kill, node lost)."""

    worker: str
    error: str
    node: str = ""  # the Ray node id the evaluator ran on


@dataclass(frozen=True)
class Cancelled:
    """What comes back for an evaluation the driver cancelled (its config moot) where the evaluator's own record is not
    returned (Ray returns no value of a cancelled task); the evaluator lives on."""

    worker: str
    node: str = ""


@dataclass(frozen=True)
class Failed:
    """What comes back for an evaluation whose task failed outside the evaluation function's own errors
    (those are errored evaluations): `cause` is the exception, `error` what the pool caught."""

    cause: BaseException
    error: BaseException


@dataclass(frozen=True)
class Trial:
    """A committed trial: the `seq`-th new config the strategy's sequential walk evaluated.

    `config` is a dict op name -> precision, made when first asked for (a replay of a
    long history commits thousands of trials of thousands of ops).
    """

    seq: int
    space_config: Config  # the config, as the strategy asked for it
    accuracy: float | None
    meets: bool
    stage: str
    error: str | None = None
    bound: float | None = None  # a rejected trial's: the best its accuracy could have been (it failed surely)

    @cached_property
    def config(self) -> dict[str, str]:
        return self.space_config.as_dict()

    @property
    def status(self) -> str:
        if self.bound is not None:
            return REJECTED
        return OK if self.error is None else ERROR


@dataclass(frozen=True)
class TuneResult:
    """The outcome of a tuning run.

    `config` is the tuned config (op name -> precision), None when no config met the
    goal; `accuracy` its accuracy. `trials` are the committed trials in strategy order;
    `history` has every evaluation, speculative ones included. `stop_reason` is
    "finished", "max_trials" or "timeout". `evaluations` counts the evaluations this
    call ran (the baseline and speculative ones included, and those in flight when the run
    ended, recorded as cancelled; a resumed run does not count the recorded ones it replayed); `wall_time` is the run's duration in
    seconds, `startup_time` the part of it before the first evaluation started (Ray
    and evaluator start-up), `first_trial_time` the part before the first trial's
    evaluation (not the baseline's) started (None when none did); `evaluator_startup`
    holds each Ray evaluator's seconds from its start to its being up.
    """

    config: dict[str, str] | None
    accuracy: float | None
    baseline: float
    trials: list[Trial]
    history: pa.Table
    strategy: str
    stop_reason: str
    run_id: str
    evaluations: int = 0
    wall_time: float = 0.0
    startup_time: float = 0.0
    first_trial_time: float | None = None
    evaluator_startup: dict[str, float] = field(default_factory=dict)
