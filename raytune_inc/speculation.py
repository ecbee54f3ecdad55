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
from dataclasses import dataclass

import numpy as np

from .criterion import AccuracyCriterion
from .space import FP32, PRECISIONS, Config, TuningSpace
from .strategies import Candidate, ForkablePlan, Outcome, Plan, Strategy

P_MIN, P_MAX = 0.02, 0.98


class PassModel:
    """Probability that a candidate meets the goal, learnt from the results of this run.

    Two estimates: the pass rate of the candidate's stage (type-wise trials fail far
    more often than op-wise ones), and an additive loss model fitted on every result,
    `accuracy ~= baseline - sum(loss[op, precision])`, which sees when the tolerance
    budget is about to run out. The additive model decides once it has data.
    """

    RIDGE = 0.05  # pull of each per-op loss towards the mean loss, against the data
    MIN_FIT = 3  # results before the additive model is trusted
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

    @staticmethod
    def _prior(stage: str) -> tuple[float, float]:
        # (passes, fails) pseudo-counts: op-wise trials tend to pass, whole-type trials are a coin flip.
        return (4.0, 1.0) if stage.endswith("op-wise") else (1.0, 1.0)

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
        loss = (self._baseline - accuracy) if self._criterion.higher_is_better else (accuracy - self._baseline)
        self._new.append((self._features(config), loss))
        self._dirty = True

    def _add(self, features: tuple[int, ...], loss: float) -> None:
        slot, columns = self._learnt % self.MAX_FIT, list(features)
        self._learnt += 1
        self._x[slot] = 0.0
        self._x[slot, columns] = 1.0
        self._y[slot] = loss
        self._gram[slot] = self._gram[:, slot] = self._x[:, columns].sum(axis=1)

    def stage_rate(self, stage: str) -> float:
        passes, fails = self._prior(stage)
        seen = self._stage_counts.get(stage)
        if seen:
            passes, fails = passes + seen[0], fails + seen[1]
        return passes / (passes + fails)

    def _fit(self) -> None:
        self._dirty = False
        for features, loss in self._new:
            self._add(features, loss)
        self._new.clear()
        n = min(self._learnt, self.MAX_FIT)
        if n < self.MIN_FIT:
            self._weights = None
            return
        x, y, counts = self._x[:n], self._y[:n], np.diag(self._gram)[:n]
        mean = float(np.sum(y) / max(np.sum(counts), 1.0))
        # Ridge towards the mean loss, solved in the n x n dual (n results << d features):
        # (x x^T + RIDGE I) alpha = y - x mean, weights = mean + x^T alpha.
        alpha = np.linalg.solve(self._gram[:n, :n] + self.RIDGE * np.eye(n), y - mean * counts)
        self._weights = mean + x.T @ alpha
        residual = y - x @ self._weights
        self._sigma = float(np.sqrt(np.mean(residual**2)))

    def predict(self, config: Config) -> float | None:
        """Predicted accuracy of `config`, or None without enough data."""
        if self._baseline is None:
            return None
        if self._dirty:
            self._fit()
        if self._weights is None:
            return None
        loss = float(self._weights[list(self._features(config))].sum())
        return self._baseline - loss if self._criterion.higher_is_better else self._baseline + loss

    def estimate(self, candidate: Candidate) -> tuple[float, float | None]:
        """(probability that `candidate` meets the goal, its predicted accuracy or None)."""
        predicted = self.predict(candidate.config)
        if predicted is None:
            p = self.stage_rate(candidate.stage)
        else:
            tol = self._criterion.tolerance(self._baseline)
            margin = predicted - (self._baseline - tol) if self._criterion.higher_is_better else (self._baseline + tol) - predicted
            scale = max(0.25 * tol, 2.0 * self._sigma, 1e-12)
            p = 0.5 * (1.0 + math.erf(margin / (scale * math.sqrt(2.0))))
        return min(P_MAX, max(P_MIN, p)), predicted


@dataclass(frozen=True)
class Frontier:
    """Where the committed path stands: the outcomes sent to the plan so far, the configs on it, its trial count."""

    outcomes: Sequence[Outcome]
    known: Mapping[Config, Outcome]
    trials: int


class Speculator:
    """Unfolds the strategy's decision tree below the frontier and picks configs to evaluate ahead."""

    MAX_NODES_PER_PICK = 24

    def __init__(self, strategy: Strategy, space: TuningSpace, precisions: tuple[str, ...], criterion: AccuracyCriterion, max_trials: int):
        self._strategy = strategy
        self._space = space
        self._precisions = precisions
        self._criterion = criterion
        self._max_trials = max_trials
        # A forkable plan kept at the committed frontier: (outcomes sent, the last of them, plan, its pending candidate).
        self._frontier: tuple[int, Outcome | None, ForkablePlan, Candidate | None] | None = None
        self._forkable: bool | None = None  # known once the first plan is made

    def _at_frontier(self, outcomes: Sequence[Outcome]) -> tuple[Plan, Candidate | None]:
        """A plan that has been sent `outcomes`, and its pending candidate.

        With a ForkablePlan, a fork of the one kept at the frontier, advanced by the outcomes
        committed since the last call (the committed path only grows); else a replay from the start.
        """
        if self._forkable is False:
            return self._replay(outcomes)
        state = self._frontier
        if state is None or state[0] > len(outcomes) or (state[0] and outcomes[state[0] - 1] is not state[1]):
            plan = self._strategy.plan(self._space, self._precisions, self._criterion)
            self._forkable = isinstance(plan, ForkablePlan)
            if not self._forkable:
                plan.close()
                return self._replay(outcomes)
            state = (0, None, plan, _start(plan))
        count, _, plan, pending = state
        for i in range(count, len(outcomes)):
            if pending is None:
                break
            pending = _send(plan, outcomes[i])
        self._frontier = (len(outcomes), outcomes[-1] if outcomes else None, plan, pending)
        return plan.fork(), pending

    def _replay(self, outcomes: Sequence[Outcome]) -> tuple[Plan, Candidate | None]:
        plan = self._strategy.plan(self._space, self._precisions, self._criterion)
        try:
            pending = next(plan)
            for outcome in outcomes:
                pending = plan.send(outcome)
        except StopIteration:
            return plan, None
        return plan, pending

    def pick(
        self,
        frontier: Frontier,
        results: Mapping[Config, Outcome],
        busy: Set[Config],
        want: int,
        model: PassModel,
    ) -> list[Candidate]:
        """Up to `want` candidates, most probable first, that are neither evaluated nor in `busy`.

        `results` holds the real outcome of every config evaluated so far.
        """
        chosen: list[Candidate] = []
        chosen_configs: set[Config] = set()
        order = itertools.count()
        # Node: (-probability, tie, hypothetical suffix [(config, outcome, is_trial)], live plan and its pending candidate or None)
        heap: list = [(-1.0, next(order), (), None)]
        expanded = 0
        budget = self.MAX_NODES_PER_PICK * max(want, 1)
        while heap and len(chosen) < want and expanded < budget:
            neg_p, _, suffix, live = heapq.heappop(heap)
            expanded += 1
            if live is None and not suffix:
                plan, pending = self._at_frontier(frontier.outcomes)
            elif live is None:  # a plan that cannot be forked: replayed from its first step
                plan, pending = self._replay([*frontier.outcomes, *(o for _, o, _ in suffix)])
            elif isinstance(live, _Deferred):
                plan, pending = live.plan, _send(live.plan, live.outcome)
            else:
                plan, pending = live
            local = {c: o for c, o, _ in suffix}
            trials = frontier.trials + sum(1 for *_, is_trial in suffix if is_trial)
            while pending is not None:
                config = pending.config
                outcome = frontier.known.get(config) or local.get(config)
                is_trial = outcome is None
                if is_trial:
                    if trials >= self._max_trials:
                        pending = None
                        break
                    outcome = results.get(config)
                if outcome is None:
                    break  # unknown result: a branch point
                trials += is_trial
                local[config] = outcome
                suffix = (*suffix, (config, outcome, is_trial))
                pending = _send(plan, outcome)
            if pending is None:
                plan.close()
                continue
            if pending.config not in busy and pending.config not in chosen_configs:
                chosen.append(pending)
                chosen_configs.add(pending.config)
            p, guess = model.estimate(pending)
            branches = sorted(((p, True), (1.0 - p, False)), reverse=True)
            spare = plan.fork() if isinstance(plan, ForkablePlan) else None
            for k, (q, meets) in enumerate(branches):
                outcome = Outcome(guess, meets)
                child_suffix = (*suffix, (pending.config, outcome, True))
                child_live: tuple | _Deferred | None = None
                if k == 0:  # the likelier child goes on with this plan
                    child_live = (plan, _send(plan, outcome))
                elif spare is not None:  # the other with a fork of it, advanced if it is reached; else it is replayed
                    child_live = _Deferred(spare, outcome)
                heapq.heappush(heap, (neg_p * q, next(order), child_suffix, child_live))
        for *_, live in heap:
            if isinstance(live, tuple):
                live[0].close()
        return chosen


@dataclass(frozen=True)
class _Deferred:
    """A forked plan and the outcome to send it when its node is reached."""

    plan: ForkablePlan
    outcome: Outcome


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
