"""default_first: the default config first, then another strategy's walk if it misses the goal.

The default config has every op at the most aggressive of the run's precisions it supports
(int8 before int8_dynamic before fp16 before bf16). If it meets the goal it is the result and
the walk ends; otherwise `then` (conservative by default; None: nothing more) walks from the
start, as if the default trial had not been, the default trial counting towards max_trials.
This is Neural Compressor 2.x's `quant_level="auto"` order as far as raytune-inc has it (its
default config, then conservative; see docs/neural_compressor.md), and with `then=None` its
"quantize without tuning" (the default config only).
"""

from __future__ import annotations

import copy

from ..criterion import AccuracyCriterion
from ..space import LOWER_PRECISIONS, Config, TuningSpace
from .base import Candidate, ForkablePlan, Outcome, Plan, Strategy, get_strategy, register_strategy

DEFAULT = "default"  # the stage of the default trial


def default_config(space: TuningSpace, precisions: tuple[str, ...]) -> Config:
    """Every op of `space` at the most aggressive of `precisions` it supports (fp32 where it supports none)."""
    config = space.all_fp32()
    for dtype in LOWER_PRECISIONS:  # least to most aggressive: a later precision overrides an earlier one
        if dtype in precisions:
            config = config.replace([op.name for op in space if op.supports(dtype)], dtype)
    return config


@register_strategy
class DefaultFirstStrategy(Strategy):
    """The default config, then `then`'s plan (a strategy or its registered name; None: stop after the default)."""

    name = "default_first"

    def __init__(self, then: str | Strategy | None = "conservative"):
        self.then = None if then is None else get_strategy(then)
        if isinstance(self.then, DefaultFirstStrategy):
            raise ValueError("default_first cannot be followed by default_first")

    @property
    def decides_by_goal(self) -> bool:  # the default trial is judged by `meets`; then as `then` decides
        return self.then is None or self.then.decides_by_goal

    def options(self) -> dict:
        if self.then is None:
            return {"then": None}
        return {"then": self.then.name, "then_options": self.then.options()}

    def __repr__(self) -> str:
        return f"DefaultFirstStrategy(then={self.then!r})"

    def check(self, space: TuningSpace, precisions: tuple[str, ...]) -> None:
        if self.then is not None:
            self.then.check(space, precisions)
        elif all(c == "fp32" for c in default_config(space, precisions).values()):
            raise ValueError(f"no op in the space supports any of the run's precisions {precisions}: nothing to lower")

    def plan(self, space: TuningSpace, precisions: tuple[str, ...], criterion: AccuracyCriterion) -> Plan:
        default = Candidate(default_config(space, precisions), DEFAULT)
        then = None if self.then is None else self.then.plan(space, precisions, criterion)
        if then is None or isinstance(then, ForkablePlan):
            return DefaultFirstPlan(default, then)
        return _walk(default, then)


def _walk(default: Candidate, then: Plan):
    """The plan as a generator, where `then`'s plan is one (it cannot be forked, so neither can this)."""
    outcome = yield default
    if outcome.meets:
        return
    yield from then


class DefaultFirstPlan(ForkablePlan):
    """The default candidate; if it misses, the candidates of `then` (a forkable plan not yet started, or None)."""

    def __init__(self, default: Candidate, then: ForkablePlan | None):
        self._default, self._then = default, then
        self._state = "new"  # new -> default (the default candidate given) -> then (delegating) | done

    def fork(self) -> DefaultFirstPlan:
        other = copy.copy(self)
        if self._then is not None:
            other._then = self._then.fork()
        return other

    def send(self, outcome: Outcome | None) -> Candidate:
        if self._state == "new":
            if outcome is not None:
                raise TypeError("can't send a non-None value to a just-started plan")
            self._state = "default"
            return self._default
        if self._state == "default":
            if outcome.meets or self._then is None:
                self._state = "done"
                raise StopIteration
            self._state = "then"
            return next(self._then)
        if self._state == "then":
            try:
                return self._then.send(outcome)
            except StopIteration:
                self._state = "done"
                raise
        raise StopIteration

    def may_ask(self, config: Config) -> bool:
        if self._state == "then":
            return self._then.may_ask(config)
        return self._state != "done"  # before `then` starts, anything of its walk may come

    def close(self) -> None:
        if self._then is not None:
            self._then.close()
