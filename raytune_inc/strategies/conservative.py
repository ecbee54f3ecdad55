"""conservative: accuracy first, performance second (STRATEGIES.md).

For each enabled lower precision (bf16, fp16, int8) and each op type in priority
order: try the whole type at that precision; if it misses the goal, try its ops
one at a time. Every candidate that meets is accepted and later ones build on it.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..criterion import AccuracyCriterion
from ..space import LOWER_PRECISIONS, TuningSpace
from .base import Candidate, Plan, Strategy, register_strategy

DEFAULT_TYPE_PREFIXES = ("conv", "matmul", "bmm", "linear")


def op_type_order(space: TuningSpace, priority: Sequence[str] | None = None) -> list[str]:
    """Op types in first-appearance order, stably re-ranked by priority.

    Default priority: types whose lower-cased name starts with conv, then matmul,
    bmm, linear; with `priority`, the named types in its order. Other types follow
    in first-appearance order.
    """
    types = list(dict.fromkeys(op.type for op in space))
    if priority is None:

        def rank(op_type: str) -> int:
            lowered = op_type.lower()
            return next((i for i, p in enumerate(DEFAULT_TYPE_PREFIXES) if lowered.startswith(p)), len(DEFAULT_TYPE_PREFIXES))

    else:
        position = {t: i for i, t in reversed(list(enumerate(priority)))}

        def rank(op_type: str) -> int:
            return position.get(op_type, len(priority))

    return sorted(types, key=rank)


@register_strategy
class ConservativeStrategy(Strategy):
    """Type-wise then op-wise trials over the bf16, fp16 and int8 pools.

    `op_type_priority`: the op type names to try first, in order; None for the
    default (conv, matmul, bmm, linear).
    """

    name = "conservative"

    def __init__(self, op_type_priority: Sequence[str] | None = None):
        if isinstance(op_type_priority, str):
            raise TypeError("op_type_priority must be a sequence of op type names, not a single string")
        self.op_type_priority = None if op_type_priority is None else tuple(op_type_priority)

    def options(self) -> dict:
        return {"op_type_priority": None if self.op_type_priority is None else list(self.op_type_priority)}

    def __repr__(self) -> str:
        return f"ConservativeStrategy(op_type_priority={self.op_type_priority!r})"

    def check(self, space: TuningSpace, precisions: tuple[str, ...]) -> None:
        lower = [p for p in precisions if p in LOWER_PRECISIONS]
        if not any(op.supports(p) for op in space for p in lower):
            raise ValueError(
                f"no op in the space supports any of the run's precisions {tuple(lower)}: nothing to tune "
                f"(ops support: {sorted({p for op in space for p in op.precisions})})"
            )

    def plan(self, space: TuningSpace, precisions: tuple[str, ...], criterion: AccuracyCriterion) -> Plan:
        accepted = space.all_fp32()
        types = op_type_order(space, self.op_type_priority)
        for dtype in LOWER_PRECISIONS:
            if dtype not in precisions:
                continue
            for op_type in types:
                group = [op.name for op in space if op.type == op_type and op.supports(dtype)]
                if not group:
                    continue
                candidate = accepted.replace(group, dtype)
                outcome = yield Candidate(candidate, f"{dtype} type-wise")
                if outcome.meets:
                    accepted = candidate
                    continue
                for name in group:
                    candidate = accepted.replace((name,), dtype)
                    outcome = yield Candidate(candidate, f"{dtype} op-wise")
                    if outcome.meets:
                        accepted = candidate
