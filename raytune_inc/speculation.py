"""Speculation: which configs will the strategy ask for next, and how likely is each?

The strategy is replayed with hypothetical outcomes for the configs whose results
are not known yet, which unfolds its decision tree below the committed frontier.
A best-first walk of that tree by path probability yields the configs worth
evaluating ahead of time. Real results (speculative ones included) are used as
soon as they exist, so a guess can waste an evaluation but never change a
decision: commits happen only on the committed path. No Ray, no torch.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field

import numpy as np

from .criterion import AccuracyCriterion
from .space import FP32, PRECISIONS, Config, TuningSpace
from .strategies import Candidate, ForkablePlan, Outcome, Plan, Strategy, is_op_wise

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


@dataclass(frozen=True)
class Frontier:
    """Where the committed path stands: the outcomes sent to the plan so far, the configs on it, its trial count."""

    outcomes: Sequence[Outcome]
    known: Mapping[Config, Outcome]
    trials: int


@dataclass(frozen=True, slots=True)
class _Step:
    """One step of a hypothetical path below the frontier: a config, the outcome assumed or known, and whether it
    is a new trial (not answered by dedupe)."""

    config: Config
    outcome: Outcome
    is_trial: bool


@dataclass(frozen=True, slots=True)
class _Live:
    """A plan that has been sent a node's outcomes, and its pending candidate (None: the walk is over)."""

    plan: Plan
    pending: Candidate | None


@dataclass(frozen=True, slots=True)
class _Deferred:
    """A forked plan and the outcome to send it when its node is reached (most nodes never are)."""

    plan: ForkablePlan
    outcome: Outcome


@dataclass(order=True, slots=True)
class _Node:
    """A node of the decision tree below the frontier, ordered most probable first (`order` breaks ties: older first).

    `steps` is the hypothetical path from the frontier to it; `plan` how to get a plan at it: a live
    one, a fork still to be sent its last outcome, or None (replay the strategy from its first step,
    for the frontier itself and for plans that cannot be forked).
    """

    neg_p: float
    order: int
    steps: tuple[_Step, ...] = field(compare=False)
    plan: _Live | _Deferred | None = field(compare=False)


@dataclass(frozen=True, slots=True)
class _Kept:
    """The forkable plan kept at the committed frontier: how many outcomes it was sent, the last one, its pending candidate."""

    sent: int
    last: Outcome | None
    plan: ForkablePlan
    pending: Candidate | None


class Speculator:
    """Unfolds the strategy's decision tree below the frontier and picks configs to evaluate ahead."""

    MAX_NODES_PER_PICK = 24

    def __init__(self, strategy: Strategy, space: TuningSpace, precisions: tuple[str, ...], criterion: AccuracyCriterion, max_trials: int):
        self._strategy = strategy
        self._space = space
        self._precisions = precisions
        self._criterion = criterion
        self._max_trials = max_trials
        self._kept: _Kept | None = None
        self._forkable: bool | None = None  # known once the first plan is made

    def _new_plan(self) -> Plan:
        return self._strategy.plan(self._space, self._precisions, self._criterion)

    def _at_frontier(self, outcomes: Sequence[Outcome]) -> _Live:
        """A plan that has been sent `outcomes`, and its pending candidate.

        With a ForkablePlan, a fork of the one kept at the frontier, advanced by the outcomes
        committed since the last call (the committed path only grows); else a replay from the start.
        """
        if self._forkable is False:
            return self._replay(outcomes)
        kept = self._kept
        if kept is None or kept.sent > len(outcomes) or (kept.sent and outcomes[kept.sent - 1] is not kept.last):
            plan = self._new_plan()
            self._forkable = isinstance(plan, ForkablePlan)
            if not self._forkable:
                plan.close()
                return self._replay(outcomes)
            kept = _Kept(0, None, plan, _start(plan))
        pending = kept.pending
        for outcome in outcomes[kept.sent :]:
            if pending is None:
                break
            pending = _send(kept.plan, outcome)
        self._kept = _Kept(len(outcomes), outcomes[-1] if outcomes else None, kept.plan, pending)
        return _Live(kept.plan.fork(), pending)

    def _replay(self, outcomes: Sequence[Outcome]) -> _Live:
        plan = self._new_plan()
        try:
            pending = next(plan)
            for outcome in outcomes:
                pending = plan.send(outcome)
        except StopIteration:
            return _Live(plan, None)
        return _Live(plan, pending)

    def _reach(self, node: _Node, frontier: Frontier) -> _Live:
        """A plan at `node`, and its pending candidate."""
        if isinstance(node.plan, _Live):
            return node.plan
        if isinstance(node.plan, _Deferred):
            return _Live(node.plan.plan, _send(node.plan.plan, node.plan.outcome))
        if not node.steps:
            return self._at_frontier(frontier.outcomes)
        return self._replay([*frontier.outcomes, *(step.outcome for step in node.steps)])

    def _walk_known(
        self, live: _Live, steps: tuple[_Step, ...], frontier: Frontier, results: Mapping[Config, Outcome]
    ) -> tuple[Candidate | None, tuple[_Step, ...]]:
        """Advance the plan through every candidate whose outcome is known (on the path, on this node's steps, or
        evaluated): to the first one whose outcome is unknown (a branch point), or None where the walk ends
        (the plan is done, or the next trial would pass max_trials)."""
        plan, pending = live.plan, live.pending
        local = {step.config: step.outcome for step in steps}
        trials = frontier.trials + sum(step.is_trial for step in steps)
        while pending is not None:
            config = pending.config
            outcome = frontier.known.get(config) or local.get(config)
            is_trial = outcome is None
            if is_trial:
                if trials >= self._max_trials:
                    return None, steps
                outcome = results.get(config)
                if outcome is None:
                    return pending, steps
            trials += is_trial
            local[config] = outcome
            steps = (*steps, _Step(config, outcome, is_trial))
            pending = _send(plan, outcome)
        return None, steps

    def pick(
        self,
        frontier: Frontier,
        results: Mapping[Config, Outcome],
        busy: Set[Config],
        want: int,
        model: PassModel,
    ) -> list[Candidate]:
        """Up to `want` candidates, most probable first, that are neither evaluated nor in `busy`.

        `results` holds the real outcome of every config evaluated so far. A best-first walk of the
        decision tree: each branch point's candidate is chosen (unless busy), then its two children, the
        likelier outcome first, are queued with the path probability times the model's estimate.
        """
        chosen: list[Candidate] = []
        chosen_configs: set[Config] = set()
        order = itertools.count()
        heap = [_Node(-1.0, next(order), (), None)]
        expanded = 0
        budget = self.MAX_NODES_PER_PICK * max(want, 1)
        while heap and len(chosen) < want and expanded < budget:
            node = heapq.heappop(heap)
            expanded += 1
            live = self._reach(node, frontier)
            pending, steps = self._walk_known(live, node.steps, frontier, results)
            if pending is None:
                live.plan.close()
                continue
            if pending.config not in busy and pending.config not in chosen_configs:
                chosen.append(pending)
                chosen_configs.add(pending.config)
            p, guess = model.estimate(pending)
            likelier, other = (True, False) if p >= 0.5 else (False, True)
            spare = live.plan.fork() if isinstance(live.plan, ForkablePlan) else None
            # The likelier child goes on with this plan; the other with a fork of it, advanced only if it is
            # reached, or by a replay where the plan cannot be forked.
            for meets, child in ((likelier, _Live), (other, _Deferred)):
                outcome = Outcome(guess, meets)
                q = p if meets else 1.0 - p
                if child is _Live:
                    plan = _Live(live.plan, _send(live.plan, outcome))
                else:
                    plan = _Deferred(spare, outcome) if spare is not None else None
                heapq.heappush(heap, _Node(node.neg_p * q, next(order), (*steps, _Step(pending.config, outcome, True)), plan))
        for node in heap:
            if isinstance(node.plan, _Live):
                node.plan.plan.close()
        return chosen


def _start(plan: Plan) -> Candidate | None:
    try:
        return next(plan)
    except StopIteration:
        return None


def _send(plan: Plan, outcome: Outcome) -> Candidate | None:
    try:
        return plan.send(outcome)
    except StopIteration:
        return None
