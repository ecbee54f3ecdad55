"""What a model costs as deployed: timed against the FP32 model, eager and compiled (`deployment.compile_model`, the
same way for both, the fair comparison), and sized. Timings alternate the two models call by call, so that a
machine's load falls on both alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .batches import run_batch
from .deployment import compile_model
from .modules import tensor_bytes


def state_dict_bytes(model: nn.Module) -> int:
    """The bytes of the model's state_dict tensors (each distinct tensor once, tied weights once; a torchao int8
    weight as its inner tensors): what torch.save writes, less its few bytes of framing, and counted without
    serializing anything (a copy of a 1B-parameter model would be 4 GiB)."""
    seen = {id(t): t for t in model.state_dict(keep_vars=True).values() if isinstance(t, torch.Tensor)}
    return sum(tensor_bytes(t) for t in seen.values())


@dataclass(frozen=True)
class Latency:
    """Medians in milliseconds of one call on `example_inputs`, on `device`, of the FP32 and the tuned model, eager and
    compiled (`compile_model`); `calls`: the timed calls of each."""

    device: str
    fp32_eager_ms: float
    tuned_eager_ms: float
    fp32_compiled_ms: float
    tuned_compiled_ms: float
    calls: int

    @property
    def eager_speedup(self) -> float:
        return self.fp32_eager_ms / self.tuned_eager_ms

    @property
    def compiled_speedup(self) -> float:
        return self.fp32_compiled_ms / self.tuned_compiled_ms

    def text(self) -> str:
        return (
            f"latency on {self.device}, median of {self.calls} calls: eager {self.fp32_eager_ms:.2f} ms FP32 -> "
            f"{self.tuned_eager_ms:.2f} ms tuned ({self.eager_speedup:.2f}x), compiled {self.fp32_compiled_ms:.2f} ms -> "
            f"{self.tuned_compiled_ms:.2f} ms ({self.compiled_speedup:.2f}x)"
        )


@dataclass(frozen=True)
class ModelSize:
    """The state_dict sizes of the FP32 (the model as given) and the tuned model, in bytes (`state_dict_bytes`)."""

    fp32_bytes: int
    tuned_bytes: int

    def text(self) -> str:
        ratio = self.fp32_bytes / self.tuned_bytes
        return f"size {self.fp32_bytes / 2**20:.2f} MiB FP32 -> {self.tuned_bytes / 2**20:.2f} MiB tuned ({ratio:.2f}x smaller)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate_medians(
    calls: list[Callable[[], object]], device: torch.device, min_calls: int = 15, min_seconds: float = 1.0
) -> tuple[list[float], int]:
    """Median milliseconds of each of `calls`, timed in turn, one call each per round, after two warm-up rounds; at
    least `min_calls` rounds and `min_seconds` of timing, at most 10x that many seconds."""
    with torch.no_grad():
        for _ in range(2):
            for call in calls:
                call()
        _sync(device)
        times: list[list[float]] = [[] for _ in calls]
        started = time.perf_counter()
        rounds = 0
        while rounds < min_calls or time.perf_counter() - started < min_seconds:
            for i, call in enumerate(calls):
                t = time.perf_counter()
                call()
                _sync(device)
                times[i].append((time.perf_counter() - t) * 1e3)
            rounds += 1
            if time.perf_counter() - started > 10 * max(min_seconds, 1.0) and rounds >= 3:
                break
    return [statistics.median(t) for t in times], rounds


def measure_latency(
    fp32: nn.Module, tuned: nn.Module, example_inputs, device: torch.device, tuned_compiled: nn.Module | None = None
) -> Latency:
    """Time the FP32 and the tuned model on `example_inputs` (a batch as calibration takes it), eager then compiled
    (`tuned_compiled`: the tuned model compiled already, by `compile_model`)."""
    eager, eager_calls = alternate_medians([lambda: run_batch(fp32, example_inputs), lambda: run_batch(tuned, example_inputs)], device)
    fp32_compiled = compile_model(fp32)
    tuned_compiled = tuned_compiled if tuned_compiled is not None else compile_model(tuned)
    compiled, compiled_calls = alternate_medians(
        [lambda: run_batch(fp32_compiled, example_inputs), lambda: run_batch(tuned_compiled, example_inputs)], device
    )
    return Latency(str(device), eager[0], eager[1], compiled[0], compiled[1], min(eager_calls, compiled_calls))
