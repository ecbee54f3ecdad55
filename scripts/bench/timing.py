"""How both sides of the backend benchmark are timed (standard library only: it runs in INC's venv too).

`timed_phase` wraps a step to add its time to PHASES; `timed` wraps the eval function to record each
call's start, end, value and the PHASES totals at its start; `spread` summarises a list of figures.
"""

from __future__ import annotations

import statistics
import time

PHASES: dict[str, float] = {}  # seconds spent so far in each instrumented step


def timed_phase(fn, phase: str):
    PHASES[phase] = 0.0

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            PHASES[phase] += time.perf_counter() - t0

    return wrapper


def timed(fn, calls: list):
    def wrapper(model):
        t0, phases = time.perf_counter(), dict(PHASES)
        value = fn(model)
        calls.append((t0, time.perf_counter(), float(value), phases))
        return value

    return wrapper


def spread(xs: list[float]) -> dict:
    xs = sorted(xs)
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return {"median": statistics.median(xs), "min": xs[0], "q1": q[0], "q3": q[2], "max": xs[-1], "n": len(xs)}
