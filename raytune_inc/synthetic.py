"""Synthetic tuning spaces and deterministic evaluations, for the example job, tests and benchmarks.

The evaluation models what a real model does to first order: each op at a lower
precision costs a fixed accuracy loss, and losses add up
(`accuracy = baseline - sum(loss[op, precision])`). An optional sleep gives every
evaluation a cost, as a real evaluation has.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from .space import Op, TuningSpace

OP_TYPES = ("Conv2d", "Linear", "MatMul", "BatchMatMul", "LayerNorm", "Embedding")
# Typical relative cost of each precision: int8 loses most, dynamic int8 (scales from each input) less,
# bf16 (short mantissa) more than fp16.
PRECISION_SCALE = {"bf16": 0.1, "fp16": 0.05, "int8_dynamic": 0.4, "int8": 1.0}
MATMUL_PRECISIONS = ("bf16", "fp16", "int8")  # what the convs and linears of a random space take


def random_space(n_ops: int, seed: int = 0) -> TuningSpace:
    """A model-like space of `n_ops` ops: convs and linears (all precisions) and a few others (bf16/fp16)."""
    rng = random.Random(seed)
    ops = []
    for i in range(n_ops):
        op_type = rng.choices(OP_TYPES, weights=(4, 4, 1, 1, 1, 1))[0]
        precisions = MATMUL_PRECISIONS if op_type in ("Conv2d", "Linear", "MatMul", "BatchMatMul") else ("bf16", "fp16")
        ops.append(Op(f"layer{i}.{op_type.lower()}", op_type, precisions))
    return TuningSpace(ops)


@dataclass
class AdditiveLossEvaluation:
    """accuracy = baseline - sum of per-op losses; a picklable, deterministic evaluation function.

    Most ops lose little (up to `typical_loss` at int8); a `sensitive` fraction of them lose
    a lot, so that whole-type trials fail and the op-wise fallback has work to do, where
    most op-wise trials pass. `cost` seconds of sleep per call.
    """

    space: TuningSpace
    seed: int = 0
    baseline: float = 0.95
    sensitive: float = 0.15
    typical_loss: float = 0.0003
    cost: float = 0.0
    losses: dict[tuple[str, str], float] = field(init=False)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.losses = {}
        for op in self.space:
            sensitive = rng.random() < self.sensitive
            base = rng.uniform(0.004, 0.02) if sensitive else rng.uniform(0.0, self.typical_loss)
            for p in op.precisions:
                self.losses[(op.name, p)] = round(base * PRECISION_SCALE[p], 5)

    def __call__(self, config: dict[str, str]) -> float:
        if self.cost:
            time.sleep(self.cost)
        return round(self.baseline - sum(self.losses.get(item, 0.0) for item in config.items()), 6)


@dataclass
class PerSampleEvaluation:
    """An evaluation over `samples` samples read `batch` at a time, each scoring in [0, 1], yielding `running.Running`
    after each batch (`yields=False`: the mean, read to the end): sample i scores clip(b_i - L * w_i, 0, 1) for the
    config's additive loss L (`AdditiveLossEvaluation`'s, without its baseline), with b_i and w_i drawn once from
    `seed`. `cost` seconds of sleep per full evaluation, spread over its batches; `reads` counts the samples read in
    this process (for tests)."""

    space: TuningSpace
    seed: int = 0
    samples: int = 400
    batch: int = 20
    cost: float = 0.0
    yields: bool = True
    sensitive: float = 0.15
    reads: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.losses = AdditiveLossEvaluation(self.space, self.seed, sensitive=self.sensitive).losses
        rng = random.Random(self.seed + 1)
        self.scores = [(rng.uniform(0.98, 1.0), rng.uniform(0.0, 4.0)) for _ in range(self.samples)]

    def _steps(self, config: dict[str, str]):
        from .running import Running

        loss = sum(self.losses.get(item, 0.0) for item in config.items())
        total = 0.0
        for start in range(0, self.samples, self.batch):
            part = self.scores[start : start + self.batch]
            if self.cost:
                time.sleep(self.cost * len(part) / self.samples)
            total += sum(min(1.0, max(0.0, b - loss * w)) for b, w in part)
            self.reads += len(part)
            yield Running(total, start + len(part), self.samples)

    def __call__(self, config: dict[str, str]):
        if self.yields:
            return self._steps(config)
        from .running import to_end

        return to_end(self._steps(config))
