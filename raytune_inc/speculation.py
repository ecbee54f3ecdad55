"""Speculation: which configs will the strategy ask for next, and how likely is each?

The strategy is replayed with hypothetical outcomes for the configs whose results
are not known yet, which unfolds its decision tree below the committed frontier.
A best-first walk of that tree by path probability yields the configs worth
evaluating ahead of time. Real results (speculative ones included) are used as
soon as they exist, so a guess can waste an evaluation but never change a
decision: commits happen only on the committed path. The probabilities come from
the pass model (`pass_model.py`). No Ray, no torch.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field

from .criterion import AccuracyCriterion
from .pass_model import PassModel
from .space import Config, TuningSpace
from .strategies import Candidate, ForkablePlan, Outcome, Plan, Strategy


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
