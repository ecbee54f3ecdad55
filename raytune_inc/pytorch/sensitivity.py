"""How much each op alone moves the model's output, at each precision: a cheap proxy for its accuracy loss.

For each op and each precision of the run, the op alone is lowered (the rest of the model FP32)
and the model runs on a calibration batch; the sensitivity is the relative squared error of its
outputs against FP32's, sum ||y - y_fp32||^2 / sum ||y_fp32||^2 over every floating output.
Errors of different ops are roughly independent, so their squared errors add up, as accuracy
losses do: the speculation maps this proxy to expected accuracy loss with one scale fitted on the
real results (`pass_model.PassModel`). Forward passes only, one per (op, precision), on a
private copy of the model (the caller's model is never touched, so this may run in a thread
while the run goes on).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from ..space import FP32, TuningSpace
from .batches import run_batch
from .lowering import swaps
from .qparams import Calibration


def _floating(out) -> list[torch.Tensor]:
    return [t.detach().float() for t in tree_leaves(out) if isinstance(t, torch.Tensor) and t.is_floating_point()]


def relative_error(out, reference: list[torch.Tensor]) -> float:
    """sum ||out - reference||^2 / sum ||reference||^2 over the floating outputs (inf when they do not match up)."""
    leaves = _floating(out)
    if len(leaves) != len(reference) or any(a.shape != b.shape for a, b in zip(leaves, reference, strict=True)):
        return float("inf")
    num = sum(float(((a - b) ** 2).sum()) for a, b in zip(leaves, reference, strict=True))
    den = sum(float((b**2).sum()) for b in reference)
    value = num / max(den, 1e-30)
    return value if value == value else float("inf")  # NaN: the lowered op broke the output


@torch.no_grad()
def measure_sensitivity(
    model: nn.Module,
    space: TuningSpace,
    calibration: Calibration,
    calib_data: Iterable,
    precisions: Iterable[str],
    batches: int = 1,
    stop: threading.Event | None = None,
) -> dict[tuple[str, str], float]:
    """The sensitivity of each (op, precision) of `space` among `precisions`, on the first `batches` calibration batches;
    what was measured when `stop` is set."""
    data = []
    for batch in calib_data:
        data.append(batch)
        if len(data) == batches:
            break
    if not data:
        return {}
    private = copy.deepcopy(model).eval()
    references = [_floating(run_batch(private, batch)) for batch in data]
    wanted = set(precisions) - {FP32}
    cache: dict[tuple[str, str], nn.Module] = {}
    out: dict[tuple[str, str], float] = {}
    for op in space:
        for precision in op.precisions:
            if precision not in wanted:
                continue
            if stop is not None and stop.is_set():
                return out
            try:
                swapped = swaps(private, op.name, precision, calibration, cache)
            except Exception:
                continue  # a pair that cannot be built here is simply left unmeasured
            saved = {name: private.get_submodule(name) for name in swapped}
            try:
                for name, module in swapped.items():
                    private.set_submodule(name, module)
                errors = [relative_error(run_batch(private, batch), ref) for batch, ref in zip(data, references, strict=True)]
                out[(op.name, precision)] = sum(errors) / len(errors)
            except Exception:
                out[(op.name, precision)] = float("inf")  # the model does not run with this op lowered
            finally:
                for name, module in saved.items():
                    private.set_submodule(name, module)
            cache.pop((op.name, precision), None)
    return out


def ranked(sensitivity: Mapping[tuple[str, str], float], precision: str) -> list[tuple[str, float]]:
    """The ops at `precision`, most sensitive first."""
    return sorted(((op, v) for (op, p), v in sensitivity.items() if p == precision), key=lambda item: -item[1])


class Sensitivity:
    """The sensitivity of a run's ops, measured once: in a thread while the run goes (`start`; `table` is its future),
    or at once (`result`)."""

    def __init__(self, model: nn.Module, space: TuningSpace, calibration: Calibration, calib_data: Iterable, precisions: Iterable[str]):
        self._args = (model, space, calibration, calib_data, tuple(precisions))
        self._stop = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self.table: Future[dict[tuple[str, str], float]] = Future()  # the measured table, once measured

    def _measure(self) -> dict[tuple[str, str], float]:
        return measure_sensitivity(*self._args, stop=self._stop)

    def start(self) -> None:
        """Measure in a thread; `table` gets the result."""
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="raytune-inc-sensitivity")
        self._pool.submit(self._into_table)

    def _into_table(self) -> None:
        try:
            self.table.set_result(self._measure())
        except BaseException as exc:
            self.table.set_exception(exc)

    def stop(self, abort: bool = False) -> None:
        """The run is over: wait for a measurement still going (`abort`: have it end at the next op, keeping what it has)."""
        if abort:
            self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def result(self) -> dict[tuple[str, str], float]:
        """The sensitivity table: the thread's, or measured now when none was started."""
        if self._pool is None and not self.table.done():
            self._into_table()
        return dict(self.table.result())
