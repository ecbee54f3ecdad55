"""What a tuning run is asked to do, checked: the space, strategy, criterion, precisions, stop rules and the time an evaluation may take."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

from .criterion import AccuracyCriterion
from .space import FP32, TuningSpace, check_precisions
from .strategies import Strategy, get_strategy


@dataclass(frozen=True)
class RunSettings:
    """The checked inputs of a run. `baseline=None`: the all-fp32 config is evaluated first."""

    space: TuningSpace
    strategy: Strategy
    criterion: AccuracyCriterion
    precisions: tuple[str, ...]
    max_trials: int
    timeout: float
    baseline: float | None
    eval_timeout: float | None = None  # seconds one evaluation may take; None: no limit

    @classmethod
    def checked(
        cls,
        space: TuningSpace,
        strategy: str | Strategy,
        accuracy: AccuracyCriterion | None,
        precisions: Sequence[str],
        max_trials: int,
        timeout: float,
        baseline: float | None,
        eval_timeout: float | None = None,
    ) -> RunSettings:
        """The settings, or ValueError / TypeError naming the argument that is wrong and how."""
        if not isinstance(space, TuningSpace):
            raise TypeError(f"space must be a TuningSpace, got {type(space).__name__}")
        if accuracy is None:
            accuracy = AccuracyCriterion()
        if not isinstance(accuracy, AccuracyCriterion):
            raise TypeError(f"accuracy must be an AccuracyCriterion, got {type(accuracy).__name__}")
        precisions = check_precisions(precisions, "precisions")
        if not any(p != FP32 for p in precisions):
            raise ValueError("precisions must name at least one lower precision")
        strategy = get_strategy(strategy)
        strategy.check(space, precisions)
        if isinstance(max_trials, bool) or not isinstance(max_trials, numbers.Integral) or max_trials < 0:
            raise ValueError(f"max_trials must be an integer >= 1 (the most trials to commit), got {max_trials!r}")
        if max_trials == 0:
            raise ValueError(
                "max_trials=0 allows no trial, so the run could only evaluate the baseline and return no config; "
                "give max_trials >= 1 (the most trials to commit)"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not timeout >= 0:
            raise ValueError(f"timeout must be a number of seconds >= 0 (0: none), got {timeout!r}")
        if baseline is not None:
            if isinstance(baseline, bool) or not isinstance(baseline, numbers.Real) or not math.isfinite(baseline):
                raise ValueError(f"baseline must be a finite number or None (evaluate the all-fp32 config), got {baseline!r}")
            baseline = float(baseline)
        return cls(space, strategy, accuracy, precisions, int(max_trials), float(timeout), baseline, _check_eval_timeout(eval_timeout))


def _check_eval_timeout(eval_timeout: object) -> float | None:
    """`eval_timeout` in seconds, None for no limit (None or 0); ValueError naming the argument otherwise."""
    if eval_timeout is None:
        return None
    if isinstance(eval_timeout, bool) or not isinstance(eval_timeout, numbers.Real) or not 0 <= eval_timeout < math.inf:
        raise ValueError(
            f"eval_timeout must be the seconds one evaluation may take, a number > 0 (None or 0: no limit), got {eval_timeout!r}"
        )
    return float(eval_timeout) or None
