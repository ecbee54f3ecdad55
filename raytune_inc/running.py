"""Evaluations read batch by batch, and the exact early decision they allow.

An evaluation function (`tune`'s `eval_fn(model)`, `tune_space`'s `evaluate(config)`) may return
an iterator, typically by being a generator, that yields a `Running` after each batch: the sum of
the per-sample scores read so far, how many samples that is, out of how many in all, and the range
every score lies in. The accuracy is the mean of all the scores, `total / samples`, once `count`
reaches `samples`. After k of N samples the final mean surely lies in

    [(total + low * (N - k)) / N, (total + high * (N - k)) / N]

so when that interval lies wholly on the failing side of the goal, the trial's verdict is known:
the evaluation is stopped there (the generator is closed, so its `finally` and `with` blocks run)
and recorded as *rejected*, with the bound it reached (the best mean it could still have had),
the samples read and the samples in all, never a value it did not measure. Top-1 or top-k
accuracy, accuracy, a mean of per-sample agreement are scores in [0, 1]; a mean per-token
negative log-likelihood (log-perplexity, lower is better) has scores in [0, inf), with the token
count known up front.

Only a run whose strategy decides by meeting the goal alone gives a goal (conservative,
default_first: `Strategy.decides_by_goal`); auto mixed precision ranks ops by their accuracy and
gets every evaluation to its end, as does the baseline, a trial that meets the goal, and any
evaluation dispatched before the baseline is known. So the committed configs, their verdicts and
the result are those of full evaluations.

An evaluation may also be *cancelled*: a speculative one whose config the committed path can no
longer ask for (see `CommittedPath.may_ask`) is moot, and its evaluator is told so. It stops at
the next point where it looks (`stop_if_cancelled`): between two `Running` steps, and, in `tune`,
before each forward call of the model. It is recorded as cancelled, never as a result. No torch, no Ray.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

# How far a score may stray past [low, high] by rounding (a float32 cosine similarity of equal vectors is 1 + 1e-7):
# relative to the range's size, for each score. The bounds are widened by as much, so they still hold the final mean.
ROUNDING = 1e-6


class RunningError(TypeError):
    """An evaluation yielded something that breaks the `Running` protocol (its own bug): it stops the run."""


class EvaluationCancelled(BaseException):
    """Raised where a cancelled evaluation looks (`stop_if_cancelled`). A BaseException, as KeyboardInterrupt is, so
    that an `except Exception` in the evaluation does not swallow it. `samples`/`samples_total`: how far a running
    evaluation had read, where known."""

    def __init__(self, samples: int | None = None, samples_total: int | None = None):
        super().__init__("the evaluation was cancelled: the run no longer needs it")
        self.samples, self.samples_total = samples, samples_total


_current = threading.local()  # the cancellation check of the evaluation running in this thread


@contextlib.contextmanager
def cancellable(cancelled: Callable[[], bool] | None):
    """Run an evaluation in this thread that stops where it looks once `cancelled()` is true (None: never)."""
    previous = getattr(_current, "cancelled", None)
    _current.cancelled = cancelled
    try:
        yield
    finally:
        _current.cancelled = previous


def may_be_cancelled() -> bool:
    """The evaluation running in this thread may be cancelled (it runs under `cancellable` with a check)."""
    return getattr(_current, "cancelled", None) is not None


def stop_if_cancelled() -> None:
    """Raise EvaluationCancelled if the evaluation running in this thread was cancelled; nothing otherwise."""
    cancelled = getattr(_current, "cancelled", None)
    if cancelled is not None and cancelled():
        raise EvaluationCancelled


@dataclass(frozen=True)
class Running:
    """A mean of per-sample scores, part way: `total` is the sum of the `count` scores read of `samples` in all,
    each score in [`low`, `high`] (`high` may be math.inf). Yield one after each batch, cumulatively."""

    total: float
    count: int
    samples: int
    low: float = 0.0
    high: float = 1.0

    def bounds(self) -> tuple[float, float]:
        """The interval the final mean surely lies in (each score left within [low, high], give or take `ROUNDING`)."""
        left = self.samples - self.count
        if left == 0:
            mean = self.total / self.samples
            return mean, mean
        slack = ROUNDING * self.scale
        return (self.total + (self.low - slack) * left) / self.samples, (self.total + (self.high + slack) * left) / self.samples

    @property
    def scale(self) -> float:
        """The size of a score, for rounding: the larger of |low|, |high| (where finite) and 1."""
        return max(1.0, abs(self.low), abs(self.high) if math.isfinite(self.high) else 0.0)


@dataclass(frozen=True)
class Goal:
    """The goal a trial's accuracy must reach (at least, or at most when lower is better): what an evaluation that
    yields `Running` is told, so that it stops once its failure is certain."""

    value: float
    higher_is_better: bool = True

    def best(self, low: float, high: float) -> float:
        """Of an interval, the end on the goal's side: the best the final value can still be."""
        return high if self.higher_is_better else low

    def certainly_missed(self, low: float, high: float) -> bool:
        """The whole interval fails the goal, with a margin for rounding (the final mean is summed in another
        order than the bound was): so a trial this says no to would have failed evaluated to its end."""
        best = self.best(low, high)
        margin = 1e-9 * max(1.0, abs(self.value), abs(best) if math.isfinite(best) else 0.0)
        return best < self.value - margin if self.higher_is_better else best > self.value + margin


@dataclass(frozen=True)
class Read:
    """What a running evaluation came to: its accuracy (None when rejected), the samples read and in all, and for
    a rejected one the bound it reached."""

    accuracy: float | None
    samples: int
    samples_total: int
    bound: float | None = None

    @property
    def rejected(self) -> bool:
        return self.bound is not None


def is_running(value: Any) -> bool:
    """An evaluation's return value is an iterator of `Running` (not a number)."""
    return isinstance(value, Iterator)


def _check(step: Any, last: Running | None, where: str) -> Running:
    if not isinstance(step, Running):
        raise RunningError(f"{where} yielded {type(step).__name__} {step!r:.80}; an evaluation that yields must yield Running")
    numbers = (step.total, step.low, step.high)
    if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in numbers) or math.isnan(step.total):
        raise RunningError(f"{where} yielded {step}: total, low and high must be real numbers")
    if not (isinstance(step.count, int) and isinstance(step.samples, int)) or not 0 <= step.count <= step.samples or step.samples < 1:
        raise RunningError(f"{where} yielded {step}: count and samples must be integers, 0 <= count <= samples, samples >= 1")
    if not step.low <= step.high or math.isinf(step.low):
        raise RunningError(f"{where} yielded {step}: low must be finite and at most high")
    slack = ROUNDING * step.scale * max(1, step.count)
    if step.total < step.low * step.count - slack or (math.isfinite(step.high) and step.total > step.high * step.count + slack):
        raise RunningError(f"{where} yielded {step}: {step.count} scores in [{step.low}, {step.high}] cannot sum to {step.total}")
    if last is not None:
        if (step.samples, step.low, step.high) != (last.samples, last.low, last.high):
            raise RunningError(f"{where} yielded {step} after {last}: samples, low and high must stay the same")
        if step.count < last.count:
            raise RunningError(f"{where} yielded {step} after {last}: count went down (yield the running sums, not each batch's)")
    return step


def read(values: Iterable[Running], goal: Goal | None, where: str = "the evaluation") -> Read:
    """Read a running evaluation to its end, or until `goal` is certainly missed (then close it); a cancelled one
    (see `cancellable`) stops after the step it is at, raising EvaluationCancelled with the samples it read."""
    iterator = iter(values)
    last = None
    try:
        for step in iterator:
            last = _check(step, last, where)
            if goal is not None and last.count < last.samples and goal.certainly_missed(*last.bounds()):
                return Read(None, last.count, last.samples, goal.best(*last.bounds()))
            if last.count < last.samples:
                stop_if_cancelled()
    except EvaluationCancelled as exc:  # here, or where the evaluation itself looked (a forward call of tune's model)
        if exc.samples is None and last is not None:
            raise EvaluationCancelled(last.count, last.samples) from None
        raise
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()  # a rejected (or interrupted) evaluation's generator runs its finally blocks now
    if last is None or last.count != last.samples:
        got = "nothing" if last is None else f"{last.count} of {last.samples} samples"
        raise RunningError(f"{where} ended after {got}: a running evaluation must read all its samples (count == samples)")
    return Read(last.total / last.samples, last.samples, last.samples)


def to_end(values: Iterable[Running], where: str = "the evaluation") -> float:
    """The accuracy of a running evaluation read to its end (no goal)."""
    return read(values, None, where).accuracy
