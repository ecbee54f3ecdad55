"""What a strategy is: a name, a check of a run's inputs, and a plan: its sequential walk over candidate configs.

A plan gives a `Candidate`, is sent back the `Outcome` of its config, decides, and gives
the next. It never sees Ray, torch, Arrow or the clock, and it knows nothing of dedupe,
max_trials or timeouts: the committed path applies those. The run's result is the last
candidate the plan was told meets the goal (the accepted config of conservative, the
first that meets of auto mixed precision), so a run stopped early still has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

from ..criterion import AccuracyCriterion
from ..space import Config, TuningSpace


@dataclass(frozen=True)
class Candidate:
    """A config a strategy asks to have evaluated, and the stage of the strategy that asks."""

    config: Config
    stage: str


@dataclass(frozen=True)
class Outcome:
    """What a strategy learns of a candidate: its accuracy (None if the evaluation failed) and whether it meets the goal."""

    accuracy: float | None
    meets: bool


class Plan(Protocol):
    """What `Strategy.plan` returns: the strategy's walk, driven as a generator is.

    `next(plan)` starts it and gives the first candidate; `plan.send(outcome)` gives the
    next one, for the outcome of the last; StopIteration ends the walk; `close()` abandons
    it. A generator function's generator is a plan (auto mixed precision's is one); so is a
    `ForkablePlan` (conservative's), which can also be forked.
    """

    def __next__(self) -> Candidate: ...

    def send(self, outcome: Outcome | None) -> Candidate: ...

    def close(self) -> None: ...


class ForkablePlan:
    """A plan whose position can be copied: a generator's `next`/`send`/`close`, plus `fork()`.

    The speculation forks such a plan where the committed path stands instead of replaying
    the strategy from its first step for every branch it looks at (a generator cannot be
    copied), which keeps the driver's cost per trial flat in long runs. `send(None)` (or
    `next`) starts it; a finished plan raises StopIteration on every call.
    """

    def __iter__(self) -> ForkablePlan:
        return self

    def __next__(self) -> Candidate:
        return self.send(None)

    def send(self, outcome: Outcome | None) -> Candidate:
        raise NotImplementedError

    def fork(self) -> ForkablePlan:
        """An independent plan at the same position: what is sent to one does not change the other."""
        raise NotImplementedError

    def close(self) -> None:
        """Nothing to release (a generator's close, for the callers that treat both alike)."""

    def may_ask(self, config: Config) -> bool:
        """False only if no continuation of this plan, whatever the outcomes sent to it, gives `config` as a candidate
        (its pending one included): the driver then cancels a speculative evaluation of it. True where the plan cannot
        tell (the default: nothing is cancelled)."""
        return True


class Strategy:
    """Base of the strategies: a name, a check of the run's inputs, and the plan generator.

    Subclasses never yield the all-fp32 config (it is the baseline, never a candidate).
    """

    name: ClassVar[str]
    # Whether the plan's walk depends on each outcome's `meets` alone, never on its accuracy: then an evaluation may
    # stop as soon as it certainly misses the goal (`running`), and the walk is the same. False (the safe default) for a
    # strategy that compares accuracies (auto mixed precision ranks ops by theirs).
    decides_by_goal: ClassVar[bool] = False

    def check(self, space: TuningSpace, precisions: tuple[str, ...]) -> None:
        """Raise ValueError if this strategy has nothing to tune in `space` with `precisions`."""

    def plan(self, space: TuningSpace, precisions: tuple[str, ...], criterion: AccuracyCriterion) -> Plan:
        """A new plan (see `Plan`): a generator function may simply be written here."""
        raise NotImplementedError

    def options(self) -> dict:
        """The parameters that change what the strategy asks for, as JSON-able values: part of a
        checkpoint's fingerprint, so that a history is only resumed by the same strategy."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_REGISTRY: dict[str, type[Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make `cls` available by its `name` to `tune_space(strategy=...)`."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"a strategy named {cls.name!r} is already registered: {_REGISTRY[cls.name].__name__}")
    _REGISTRY[cls.name] = cls
    return cls


def known_strategies() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def get_strategy(strategy: str | Strategy) -> Strategy:
    """A strategy instance from a registered name, or `strategy` itself if it is one."""
    if isinstance(strategy, Strategy):
        return strategy
    if isinstance(strategy, str) and strategy in _REGISTRY:
        return _REGISTRY[strategy]()
    raise ValueError(f"unknown strategy {strategy!r}; known strategies are {', '.join(known_strategies())}")
