"""What the example jobs report about a tuned model: its size on disk and its latency."""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable

import torch


def state_dict_bytes(model: torch.nn.Module) -> int:
    """The size of the model's state_dict as torch.save writes it."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def median_ms(call: Callable[[], object], repeats: int) -> float:
    """The median wall time of `call()` in milliseconds, without autograd."""
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)
