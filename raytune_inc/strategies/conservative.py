"""conservative: accuracy first, performance second (STRATEGIES.md).

For each enabled lower precision (bf16, fp16, int8) and each op type in priority
order: try the whole type at that precision; if it misses the goal, try its ops
one at a time. Every candidate that meets is accepted and later ones build on it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from ..criterion import AccuracyCriterion
from ..space import LOWER_PRECISIONS, Config, TuningSpace
from .base import Candidate, ForkablePlan, Outcome, Strategy, register_strategy

DEFAULT_TYPE_PREFIXES = ("conv", "matmul", "bmm", "linear")
TYPE_WISE, OP_WISE = "type-wise", "op-wise"  # the stages, after the precision: "int8 type-wise", "int8 op-wise"


def is_op_wise(stage: str) -> bool:
    """Whether `stage` is one of conservative's op-wise stages (one op lowered on top of what was accepted)."""
    return stage.endswith(OP_WISE)


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
    decides_by_goal = True  # accepted or not: each step looks at `meets` only

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

    def plan(self, space: TuningSpace, precisions: tuple[str, ...], criterion: AccuracyCriterion) -> ConservativePlan:
        steps = []
        types = op_type_order(space, self.op_type_priority)
        for dtype in LOWER_PRECISIONS:
            if dtype not in precisions:
                continue
            for op_type in types:
                group = tuple(op.name for op in space if op.type == op_type and op.supports(dtype))
                if group:
                    steps.append((dtype, group))
        return ConservativePlan(tuple(steps), space.all_fp32())


class ConservativePlan(ForkablePlan):
    """The conservative walk as a state machine, so that it can be forked (see ForkablePlan):

    for each (dtype, group of one op type) step: the type-wise candidate (the group at dtype on
    top of the accepted config); if it misses the goal, each op of the group in turn; every
    candidate that meets becomes the accepted config.
    """

    def __init__(self, steps: tuple[tuple[str, tuple[str, ...]], ...], accepted: Config):
        self._steps = steps  # shared by forks: never changed
        self._accepted = accepted
        self._step = 0
        self._op = -1  # -1: the step's type-wise candidate; k >= 0: the op-wise candidate of its k-th op
        self._candidate: Candidate | None = None
        self._started = False

    def fork(self) -> ConservativePlan:
        return copy.copy(self)  # every field is immutable or shared read-only

    def send(self, outcome: Outcome | None) -> Candidate:
        if not self._started:
            if outcome is not None:
                raise TypeError("can't send a non-None value to a just-started plan")
            self._started = True
            return self._next()
        if self._candidate is None:
            raise StopIteration
        if outcome.meets:
            self._accepted = self._candidate.config
        if self._op == -1 and not outcome.meets:
            self._op = 0  # the type-wise candidate missed: its ops one at a time
        elif self._op == -1 or self._op + 1 == len(self._steps[self._step][1]):
            self._step, self._op = self._step + 1, -1
        else:
            self._op += 1
        return self._next()

    def may_ask(self, config: Config) -> bool:
        """Every candidate from here on is the accepted config with ops of the remaining items (this step's ops from
        the pending one, the later steps') set to their item's dtype: an op that no remaining item of a dtype holds
        keeps its accepted precision or takes another remaining item's."""
        if not self._started:
            return True
        if self._candidate is None:
            return False
        accepted = self._accepted
        names = config.space.names
        changed = [(names[i], p) for i, (p, a) in enumerate(zip(config.precisions, accepted.precisions, strict=True)) if p != a]
        if not changed:
            return False  # the accepted config itself: every candidate changes at least one op of it
        dtypes: dict[str, set[str]] = {}
        dtype, group = self._steps[self._step]
        for name in group[max(self._op, 0) :]:
            dtypes.setdefault(name, set()).add(dtype)
        for dtype, group in self._steps[self._step + 1 :]:
            for name in group:
                dtypes.setdefault(name, set()).add(dtype)
        return all(precision in dtypes.get(name, ()) for name, precision in changed)

    def _next(self) -> Candidate:
        if self._step == len(self._steps):
            self._candidate = None
            raise StopIteration
        dtype, group = self._steps[self._step]
        if self._op == -1:
            self._candidate = Candidate(self._accepted.replace(group, dtype), f"{dtype} {TYPE_WISE}")
        else:
            self._candidate = Candidate(self._accepted.replace((group[self._op],), dtype), f"{dtype} {OP_WISE}")
        return self._candidate
