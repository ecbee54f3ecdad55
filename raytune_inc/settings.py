"""What a tuning call is asked to do, declared once and checked once: the settings `tune_space` and `tune` share (the
strategy, the goal, the precisions, the stop rules, the evaluators, the checkpoint), and the run's identity (its id,
when it was asked for, its name in Ray), fixed when the call is made."""

from __future__ import annotations

import math
import numbers
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .criterion import AccuracyCriterion
from .space import FP32, TuningSpace, check_precisions
from .strategies import Strategy, get_strategy
from .workers import Workers, WorkersSpec, worker_groups


@dataclass(frozen=True)
class RunSettings:
    """The settings of one tuning call, checked when made: ValueError / TypeError naming the argument and the fix.

    Made with the arguments as the public functions take them (`strategy` a name or a Strategy,
    `accuracy` None for the default criterion, `workers` an int, a Workers or a list of them,
    `checkpoint` a path or None) and holding them normalised: `strategy` a Strategy, `accuracy` an
    AccuracyCriterion, `precisions` a checked tuple, `workers` the evaluator groups (empty:
    in-process), `checkpoint` a Path. `tune_space` and `tune` take the same defaults (a test holds
    them to these). `run_id` and `started` (monotonic seconds) are the run's from the call on: its
    times (the first trial, the timeout) count from `started`.
    """

    strategy: str | Strategy = "conservative"  # a Strategy once checked
    accuracy: AccuracyCriterion | None = None  # an AccuracyCriterion once checked
    precisions: Sequence[str] = ("bf16", "fp16", "int8")  # a checked tuple once checked
    max_trials: int = 100
    timeout: float = 0
    workers: WorkersSpec | tuple[Workers, ...] = 4  # the evaluator groups once checked (empty: in-process)
    checkpoint: str | os.PathLike | None = None  # a Path once checked
    resume: bool = False
    eval_timeout: float | None = None  # seconds one evaluation may take; None (or 0): no limit
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        accuracy = AccuracyCriterion() if self.accuracy is None else self.accuracy
        if not isinstance(accuracy, AccuracyCriterion):
            raise TypeError(f"accuracy must be an AccuracyCriterion, got {type(accuracy).__name__}")
        precisions = check_precisions(self.precisions, "precisions")
        if not any(p != FP32 for p in precisions):
            raise ValueError("precisions must name at least one lower precision")
        max_trials = self.max_trials
        if isinstance(max_trials, bool) or not isinstance(max_trials, numbers.Integral) or max_trials < 0:
            raise ValueError(f"max_trials must be an integer >= 1 (the most trials to commit), got {max_trials!r}")
        if max_trials == 0:
            raise ValueError(
                "max_trials=0 allows no trial, so the run could only evaluate the baseline and return no config; "
                "give max_trials >= 1 (the most trials to commit)"
            )
        timeout = self.timeout
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not timeout >= 0:
            raise ValueError(f"timeout must be a number of seconds >= 0 (0: none), got {timeout!r}")
        checkpoint = self.checkpoint
        if checkpoint is not None and not isinstance(checkpoint, str | os.PathLike):
            raise TypeError(f"checkpoint must be a directory path (str or os.PathLike), got {type(checkpoint).__name__}")
        if not isinstance(self.resume, bool):
            raise ValueError(f"resume must be True or False, got {self.resume!r}")
        if self.resume and checkpoint is None:
            raise ValueError("resume=True needs checkpoint=DIR, the directory of the history to resume")
        normalised = {
            "strategy": get_strategy(self.strategy),
            "accuracy": accuracy,
            "precisions": precisions,
            "max_trials": int(max_trials),
            "timeout": float(timeout),
            "workers": tuple(worker_groups(self.workers)),
            "checkpoint": None if checkpoint is None else Path(checkpoint),
            "eval_timeout": _eval_timeout(self.eval_timeout),
        }
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    @property
    def criterion(self) -> AccuracyCriterion:
        return self.accuracy

    @property
    def job_name(self) -> str:
        """What the run is called in Ray: its job's metadata, and (`name_prefix`) its evaluators' names."""
        return f"raytune-inc {self.strategy.name} {self.run_id[:8]}"

    @property
    def name_prefix(self) -> str:
        return f"raytune-inc-{self.run_id[:8]}"

    def check_space(self, space: TuningSpace) -> None:
        """Refuse a space the strategy cannot tune with these precisions (ValueError naming why)."""
        if not isinstance(space, TuningSpace):
            raise TypeError(f"space must be a TuningSpace, got {type(space).__name__}")
        self.strategy.check(space, self.precisions)


def check_baseline(baseline: object) -> float | None:
    """A given baseline accuracy as a float (None: the all-fp32 config is evaluated first)."""
    if baseline is None:
        return None
    if isinstance(baseline, bool) or not isinstance(baseline, numbers.Real) or not math.isfinite(baseline):
        raise ValueError(f"baseline must be a finite number or None (evaluate the all-fp32 config), got {baseline!r}")
    return float(baseline)


def _eval_timeout(eval_timeout: object) -> float | None:
    """`eval_timeout` in seconds, None for no limit (None or 0); ValueError naming the argument otherwise."""
    if eval_timeout is None:
        return None
    if isinstance(eval_timeout, bool) or not isinstance(eval_timeout, numbers.Real) or not 0 <= eval_timeout < math.inf:
        raise ValueError(
            f"eval_timeout must be the seconds one evaluation may take, a number > 0 (None or 0: no limit), got {eval_timeout!r}"
        )
    return float(eval_timeout) or None
