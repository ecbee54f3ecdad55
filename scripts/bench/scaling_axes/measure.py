"""How scaling.py measures and records: the peak Python allocation (tracemalloc) and the peak Arrow memory (a proxy
of the default pool) of a call, one raw row per measurement (`Raw`), and milliseconds as table text."""

from __future__ import annotations

import ctypes
import gc
import tracemalloc

import pyarrow as pa

MB = 1e6


def python_peak(fn):
    """(fn(), peak bytes Python allocated while it ran: tracemalloc, started just before)."""
    gc.collect()
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def arrow_peak(fn):
    """(fn() run to completion, peak bytes of Arrow memory allocated while it ran).

    Arrow buffers are invisible to tracemalloc; a proxy of the default pool counts them.
    `fn` must return plain Python values: no Arrow data may outlive the proxy.
    """
    default = pa.default_memory_pool()
    proxy = pa.proxy_memory_pool(default)
    pa.set_memory_pool(proxy)
    try:
        out = fn()
        gc.collect()
        return out, proxy.max_memory()
    finally:
        pa.set_memory_pool(default)
        if proxy.bytes_allocated():  # a buffer freed after its pool would crash the process: keep the pool forever
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(proxy))


def fmt_ms(x: float) -> str:
    """Milliseconds without the unit, to 3 significant digits or so."""
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.0f}"


class Raw:
    """One flat row per single measurement."""

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, axis: str, ops: int, trials: int, repeat: int, metric: str, value: float, unit: str) -> None:
        self.rows.append(
            {"axis": axis, "ops": ops, "trials": trials, "repeat": repeat, "metric": metric, "value": float(value), "unit": unit}
        )

    def values(self, axis: str, key: str, size: int, metric: str) -> list[float]:
        return [r["value"] for r in self.rows if r["axis"] == axis and r[key] == size and r["metric"] == metric]
