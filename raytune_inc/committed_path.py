"""The committed path: the strategy advanced with real outcomes only, in its own order.

It applies the shared rules of STRATEGIES.md that strategies do not know: a config
already evaluated on the path (or the baseline) is answered from there and is not a
new trial, and `max_trials` stops the walk before a trial that would exceed it.
Every executor, sequential or parallel, commits through this one object.
"""

from __future__ import annotations

from .criterion import AccuracyCriterion
from .errors import StrategyError
from .records import Evaluation, Trial
from .space import Config
from .strategies import Candidate, Outcome, Plan

FINISHED, MAX_TRIALS, TIMEOUT = "finished", "max_trials", "timeout"


class CommittedPath:
    def __init__(self, plan: Plan, criterion: AccuracyCriterion, baseline: float, baseline_config: Config, max_trials: int):
        self._plan = plan
        self._criterion = criterion
        self._baseline = baseline
        self._max_trials = max_trials
        # Configs on the path (the baseline included) and their outcomes: the dedupe table.
        self.known: dict[Config, Outcome] = {baseline_config: Outcome(baseline, criterion.meets(baseline, baseline))}
        # Every outcome sent to the plan, in order: replaying them rebuilds the plan's state.
        self.outcomes: list[Outcome] = []
        self.trials: list[Trial] = []
        self.result: Config | None = None
        self.result_accuracy: float | None = None
        self.stop_reason: str | None = None
        self._pending: Candidate | None = None
        self._advance(None)

    @property
    def done(self) -> bool:
        return self.stop_reason is not None

    def _advance(self, outcome: Outcome | None) -> None:
        if outcome is not None:
            self.outcomes.append(outcome)
            if outcome.meets:
                self.result = self._pending.config
                self.result_accuracy = outcome.accuracy
        try:
            self._pending = next(self._plan) if outcome is None else self._plan.send(outcome)
        except StopIteration:
            self._pending = None
            self.stop_reason = FINISHED
            return
        if self._pending.config.is_all_fp32:
            stage = self._pending.stage
            raise StrategyError(
                f"the strategy asked for the all-fp32 config (stage {stage!r}), which is the baseline and never a candidate: "
                "its plan must skip a candidate with no op below fp32"
            )

    def next_trial(self) -> Candidate | None:
        """The candidate the strategy needs evaluated next, or None when the walk is over.

        Configs already on the path are answered here (dedupe) without a trial.
        """
        while self._pending is not None and self._pending.config in self.known:
            self._advance(self.known[self._pending.config])
        if self._pending is not None and len(self.trials) >= self._max_trials:
            self.stop(MAX_TRIALS)
        return self._pending

    def may_ask(self, config: Config) -> bool:
        """False only if no continuation of the walk, whatever the outcomes to come, asks for `config` as a trial:
        the walk is over, the config is answered by dedupe, max_trials leaves room for the pending trial alone, or the
        plan says it never gives it (`ForkablePlan.may_ask`). Call it after `next_trial`."""
        pending = self._pending
        if pending is None or config in self.known:
            return False
        if config == pending.config:
            return True
        if len(self.trials) + 1 >= self._max_trials:
            return False
        may_ask = getattr(self._plan, "may_ask", None)
        return may_ask is None or may_ask(config)

    def commit(self, evaluation: Evaluation) -> Trial:
        """Commit the evaluation of the pending candidate as the next trial and advance the strategy."""
        candidate = self._pending
        if candidate is None or evaluation.config != candidate.config:
            raise RuntimeError(f"commit out of order: pending {candidate}, got an evaluation of {evaluation.config}")
        meets = self._criterion.meets(evaluation.accuracy, self._baseline)
        trial = Trial(
            len(self.trials) + 1, candidate.config, evaluation.accuracy, meets, candidate.stage, evaluation.error, evaluation.bound
        )
        self.trials.append(trial)
        outcome = Outcome(evaluation.accuracy, meets)
        self.known[candidate.config] = outcome
        self._advance(outcome)
        return trial

    def stop(self, reason: str) -> None:
        """End the walk early ("max_trials", "timeout"); the result is what was accepted so far."""
        self._plan.close()
        self._pending = None
        self.stop_reason = reason
