"""How many evaluators a run gets, and what share of a CPU and a GPU each one takes."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Workers:
    """`count` evaluator actors, each with `num_cpus` CPUs (None: one, or an equal share of the
    cluster's CPUs when it has fewer than `count`) and `num_gpus` GPUs (fractions share a GPU:
    four evaluators with 0.25 each run on one GPU)."""

    count: int
    num_cpus: float | None = None
    num_gpus: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, numbers.Integral) or self.count < 0:
            raise ValueError(f"workers must be an integer >= 0 (0: in-process, no Ray; N: N Ray evaluator actors), got {self.count!r}")
        if self.num_cpus is not None and not (
            isinstance(self.num_cpus, numbers.Real) and self.num_cpus > 0 and math.isfinite(self.num_cpus)
        ):
            raise ValueError(f"num_cpus per evaluator must be a number > 0, got {self.num_cpus!r}")
        if not (isinstance(self.num_gpus, numbers.Real) and 0 <= self.num_gpus and math.isfinite(self.num_gpus)):
            raise ValueError(f"num_gpus per evaluator must be a number >= 0, got {self.num_gpus!r}")
        if self.num_gpus > 1 and self.num_gpus != int(self.num_gpus):
            raise ValueError(f"num_gpus above 1 must be a whole number, got {self.num_gpus}")
        if self.count == 0 and (self.num_cpus is not None or self.num_gpus):
            raise ValueError("workers=0 runs in-process: num_cpus and num_gpus apply only to Ray evaluators (count >= 1)")

    @classmethod
    def of(cls, workers: int | Workers) -> Workers:
        return workers if isinstance(workers, Workers) else cls(workers)


WorkersSpec = int | Workers | Sequence[Workers]


def worker_groups(workers: WorkersSpec) -> list[Workers]:
    """The evaluator groups a `workers=` argument asks for: an int or one Workers is one group; a
    list of Workers is a pool mixing them (e.g. CPU evaluators and GPU evaluators). An empty
    result means in-process."""
    if isinstance(workers, int | Workers):
        group = Workers.of(workers)
        return [group] if group.count else []
    if isinstance(workers, Sequence) and not isinstance(workers, str) and all(isinstance(w, Workers) for w in workers):
        if not workers or any(w.count == 0 for w in workers):
            raise ValueError("a list of Workers groups needs at least one group, each with count >= 1")
        return list(workers)
    raise TypeError(f"workers must be an int, a Workers or a list of Workers, got {workers!r}")
