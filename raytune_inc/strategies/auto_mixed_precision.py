"""auto_mixed_precision: all capable ops at bf16 (or fp16), then fall back op by op (STRATEGIES.md).

Stage 1 puts every capable op at the target precision. Stage 2 returns one op at a
time to fp32, bottom to top, and records each one's accuracy. Stage 3 returns the
k best of those to fp32 together, k = 2, 3, ... It stops at the first config that
meets the goal.
"""

from __future__ import annotations

from ..criterion import AccuracyCriterion
from ..space import FP32, TuningSpace
from .base import Candidate, Plan, Strategy, register_strategy

MIXED_PRECISIONS = ("bf16", "fp16")
MODEL_WISE, FALLBACK, ACCUMULATED_FALLBACK = "model-wise", "fallback", "accumulated fallback"  # the stages 1, 2 and 3


def target_precision(precisions: tuple[str, ...]) -> str:
    """The first of the run's precisions that is bf16 or fp16."""
    for p in precisions:
        if p in MIXED_PRECISIONS:
            return p
    raise ValueError(
        f"auto_mixed_precision needs bf16 or fp16 among the run's precisions, got {precisions}; use strategy='conservative' to tune int8"
    )


@register_strategy
class AutoMixedPrecisionStrategy(Strategy):
    name = "auto_mixed_precision"

    def check(self, space: TuningSpace, precisions: tuple[str, ...]) -> None:
        target = target_precision(precisions)
        if not any(op.supports(target) for op in space):
            raise ValueError(f"auto_mixed_precision: no op in the space supports {target}: nothing to tune")

    def plan(self, space: TuningSpace, precisions: tuple[str, ...], criterion: AccuracyCriterion) -> Plan:
        target = target_precision(precisions)
        capable = [op.name for op in space if op.supports(target)]
        stage1 = space.all_fp32().replace(capable, target)
        outcome = yield Candidate(stage1, MODEL_WISE)
        if outcome.meets:
            return

        fallback = list(reversed(capable))
        impact: dict[str, float | None] = {}
        for name in fallback:
            candidate = stage1.replace((name,), FP32)
            if candidate.is_all_fp32:
                continue
            outcome = yield Candidate(candidate, FALLBACK)
            impact[name] = outcome.accuracy
            if outcome.meets:
                return

        ranking = sorted((n for n in fallback if n in impact), key=lambda n: criterion.rank_key(impact[n]))
        for k in range(2, len(ranking) + 1):
            candidate = stage1.replace(ranking[:k], FP32)
            if candidate.is_all_fp32:
                continue
            outcome = yield Candidate(candidate, ACCUMULATED_FALLBACK)
            if outcome.meets:
                return
