"""The speculation's pass model: how likely a candidate is to meet the goal, and the prior it may start from.

No Ray, no torch: results come in as (stage, config, accuracy); the model answers with a
probability and a predicted accuracy (see `PassModel`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .criterion import AccuracyCriterion
from .space import FP32, PRECISIONS, Config, TuningSpace
from .strategies import Candidate, is_op_wise

P_MIN, P_MAX = 0.02, 0.98


@dataclass(frozen=True)
class Prior:
    """What each (op, precision) alone is expected to cost, before any result: `values`, up to a `scale`.

    `scale=None`: a proxy in its own units (tune's measured sensitivity); the scale that maps it to
    accuracy loss is fitted on the first real results. A number: `values` are already expected
    accuracy losses (a user's prior, `scale=1`), trusted from the start. Either way the real results
    refit it as they arrive.
    """

    values: Mapping[tuple[str, str], float]
    scale: float | None = None


def check_prior(prior: Mapping[tuple[str, str], float] | Prior, space: TuningSpace, precisions: Sequence[str]) -> Prior:
    """`prior` as a Prior of expected accuracy losses (scale 1 unless it is a Prior), or ValueError naming what is not
    in the space: ops it does not have, precisions an op or the run does not take, values that are not numbers."""
    if not isinstance(prior, Prior):
        if not isinstance(prior, Mapping):
            raise TypeError(f"prior must map (op name, precision) to an expected accuracy loss, got {type(prior).__name__}")
        prior = Prior(dict(prior), 1.0)
    unknown_ops, unknown_precisions, bad = set(), set(), []
    for key, value in prior.values.items():
        if not (isinstance(key, tuple) and len(key) == 2):
            raise ValueError(f"prior keys are (op name, precision) pairs, got {key!r}")
        name, precision = key
        if name not in space.names:
            unknown_ops.add(name)
        elif precision not in precisions or not space.ops[space.index(name)].supports(precision) or precision == FP32:
            unknown_precisions.add((name, precision))
        if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
            bad.append((key, value))
    if unknown_ops:
        raise ValueError(f"prior names ops the space does not have: {sorted(unknown_ops)[:8]}")
    if unknown_precisions:
        raise ValueError(
            f"prior names precisions that these ops or the run ({', '.join(precisions)}) do not take: {sorted(unknown_precisions)[:8]}"
        )
    if bad:
        raise ValueError(f"prior values must be numbers (expected accuracy loss), got {bad[:4]}")
    return prior


class PassModel:
    """Probability that a candidate meets the goal, learnt from the results of this run.

    Two estimates: the pass rate of the candidate's stage (type-wise trials fail far
    more often than op-wise ones), and an additive loss model fitted on every result,
    `accuracy ~= baseline - sum(loss[op, precision])`, which sees when the tolerance
    budget is about to run out. Without a prior the additive model decides once it has a few
    results, each op's loss pulled towards the mean loss. With a `Prior` (`set_prior`) each op's
    loss is pulled towards its prior value times a scale fitted on the results (least squares of
    the results' losses on their summed prior values), so that an op never lowered yet already has
    its own expected loss: the model decides from the first result on (from the start when the
    prior's scale is known).
    """

    RIDGE = 0.05  # pull of each per-op loss towards its prior (the mean loss without one), against the data
    # The least uncertainty of a predicted accuracy, as a share of the tolerance: without a prior, and with one. On
    # all-MiniLM-L6-v2 at a 0.15% goal (scripts/bench's parallel workload, on a virtual clock) 0.25 with the prior gave
    # 2.56 committed trials per evaluation time at 4 workers, 0.1 gave 3.42 and 0.05 gave 3.73.
    FLOOR, PRIOR_FLOOR = 0.25, 0.05
    MIN_FIT = 3  # results before the additive model is trusted, without a prior
    # Most recent results the additive model is fitted on: few enough for its n x n solve to stay below the
    # size where BLAS goes multi-threaded (OpenBLAS: n * n >= 10000); with the cores busy evaluating, a
    # multi-threaded solve takes up to tens of milliseconds instead of a fraction of one.
    MAX_FIT = 96

    def __init__(self, space: TuningSpace, criterion: AccuracyCriterion):
        self._space = space
        self._criterion = criterion
        self._seen: list[tuple[str, Config, float | None]] = []
        self._stage_counts: dict[str, list[int]] = {}
        # The most recent MAX_FIT results, a ring buffer: features (ops at each lower precision), loss
        # against the baseline, and their Gram matrix x x^T (shared features), kept up to date.
        self._x = np.zeros((self.MAX_FIT, len(space) * len(PRECISIONS)))
        self._y = np.zeros(self.MAX_FIT)
        self._gram = np.zeros((self.MAX_FIT, self.MAX_FIT))
        self._learnt = 0
        self._new: list[tuple[tuple[int, ...], float]] = []  # results to add to it on the next fit
        self._baseline: float | None = None
        self._weights: np.ndarray | None = None
        self._sigma = 0.0
        self._dirty = False
        self._prior_values: np.ndarray | None = None  # per feature, NaN where the prior says nothing
        self._prior_scale: float | None = None

    def set_prior(self, prior: Prior) -> None:
        """Take `prior` (checked against the space): from now on each op's expected loss starts from it."""
        n = len(PRECISIONS)
        values = np.full(len(self._space) * n, np.nan)
        finite = [v for v in prior.values.values() if math.isfinite(v)]
        ceiling = 1e3 * max((abs(v) for v in finite), default=1.0)  # an op that breaks the output: very costly
        for (name, precision), value in prior.values.items():
            values[self._space.index(name) * n + PRECISIONS.index(precision)] = value if math.isfinite(value) else ceiling
        self._prior_values = values
        self._prior_scale = prior.scale
        self._dirty = True

    @staticmethod
    def _stage_prior(stage: str) -> tuple[float, float]:
        # (passes, fails) pseudo-counts: op-wise trials tend to pass, whole-type trials are a coin flip.
        return (4.0, 1.0) if is_op_wise(stage) else (1.0, 1.0)

    def _features(self, config: Config) -> tuple[int, ...]:
        n = len(PRECISIONS)
        return tuple(i * n + PRECISIONS.index(p) for i, p in enumerate(config.precisions) if p != FP32)

    def set_baseline(self, baseline: float) -> None:
        """Results seen before the baseline are learnt from now."""
        self._baseline = baseline
        for seen in self._seen:
            self._learn(*seen)

    def observe(self, stage: str, config: Config, accuracy: float | None) -> None:
        """Learn from one real result (None: the evaluation failed)."""
        self._seen.append((stage, config, accuracy))
        if self._baseline is not None:
            self._learn(stage, config, accuracy)

    def _learn(self, stage: str, config: Config, accuracy: float | None) -> None:
        meets = self._criterion.meets(accuracy, self._baseline)
        self._stage_counts.setdefault(stage, [0, 0])[0 if meets else 1] += 1
        if accuracy is None or not math.isfinite(accuracy):
            return
        self._new.append((self._features(config), self._criterion.loss(accuracy, self._baseline)))
        self._dirty = True

    def _add(self, features: tuple[int, ...], loss: float) -> None:
        slot, columns = self._learnt % self.MAX_FIT, list(features)
        self._learnt += 1
        self._x[slot] = 0.0
        self._x[slot, columns] = 1.0
        self._y[slot] = loss
        self._gram[slot] = self._gram[:, slot] = self._x[:, columns].sum(axis=1)

    def stage_rate(self, stage: str) -> float:
        passes, fails = self._stage_prior(stage)
        seen = self._stage_counts.get(stage)
        if seen:
            passes, fails = passes + seen[0], fails + seen[1]
        return passes / (passes + fails)

    def _anchor(self, x: np.ndarray, y: np.ndarray, mean: float) -> np.ndarray | None:
        """What each op's loss is pulled towards: its prior value times the fitted scale (the mean loss where the prior
        says nothing), or None while there is no prior, or no scale yet."""
        if self._prior_values is None:
            return None
        known = np.nan_to_num(self._prior_values, nan=0.0)
        summed = x @ known  # each result's summed prior
        scale = self._prior_scale
        if float(summed @ summed) > 0:
            scale = max(0.0, float(summed @ y) / float(summed @ summed))
        if scale is None:
            return None
        return np.where(np.isnan(self._prior_values), mean, scale * known)

    def _fit(self) -> None:
        self._dirty = False
        for features, loss in self._new:
            self._add(features, loss)
        self._new.clear()
        n = min(self._learnt, self.MAX_FIT)
        x, y, counts = self._x[:n], self._y[:n], np.diag(self._gram)[:n]
        mean = float(np.sum(y) / max(np.sum(counts), 1.0)) if n else 0.0
        anchor = self._anchor(x, y, mean)
        if anchor is None:
            if n < self.MIN_FIT:
                self._weights = None
                return
            anchor = np.full(x.shape[1], mean)
        if n == 0:
            self._weights, self._sigma = anchor, 0.0
            return
        # Ridge towards the anchor, solved in the n x n dual (n results << d features):
        # (x x^T + RIDGE I) alpha = y - x anchor, weights = anchor + x^T alpha.
        alpha = np.linalg.solve(self._gram[:n, :n] + self.RIDGE * np.eye(n), y - x @ anchor)
        self._weights = anchor + x.T @ alpha
        residual = y - x @ self._weights
        self._sigma = float(np.sqrt(np.mean(residual**2)))

    def predict(self, config: Config) -> float | None:
        """Predicted accuracy of `config`, or None without enough data."""
        if self._baseline is None:
            return None
        if self._dirty or (self._weights is None and self._prior_values is not None):
            self._fit()
        if self._weights is None:
            return None
        loss = float(self._weights[list(self._features(config))].sum())
        return self._criterion.accuracy_after(loss, self._baseline)

    def estimate(self, candidate: Candidate) -> tuple[float, float | None]:
        """(probability that `candidate` meets the goal, its predicted accuracy or None)."""
        predicted = self.predict(candidate.config)
        if predicted is None:
            p = self.stage_rate(candidate.stage)
        else:
            margin = self._criterion.margin(predicted, self._baseline)
            # The uncertainty of the prediction: twice the fit's residual, and at least a share of the tolerance, a
            # smaller one with a prior: each op has its own expected loss then, not the mean one.
            floor = (self.PRIOR_FLOOR if self._prior_values is not None else self.FLOOR) * self._criterion.tolerance(self._baseline)
            scale = max(floor, 2.0 * self._sigma, 1e-12)
            p = 0.5 * (1.0 + math.erf(margin / (scale * math.sqrt(2.0))))
        return min(P_MAX, max(P_MIN, p)), predicted
