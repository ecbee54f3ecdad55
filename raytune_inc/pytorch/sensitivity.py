"""How much each op alone moves its own output, at each precision: a cheap proxy for its accuracy loss.

For each op and each precision of the run, the op is lowered and run on the very inputs it gets
in the FP32 model on a calibration batch, captured by a forward hook during one FP32 forward
pass; the sensitivity is the relative squared error of the lowered op's outputs against the FP32
op's, sum ||y - y_fp32||^2 / sum ||y_fp32||^2 over every floating output. An op that absorbs the
BatchNorm after it is compared at the BatchNorm's output. Errors of different ops are roughly
independent, so their squared errors add up, as accuracy losses do: the speculation maps this
proxy to expected accuracy loss with one scale fitted on the real results
(`pass_model.PassModel`).

It costs one forward pass of the model per calibration batch measured, plus building and running
each (op, precision) once on its captured input: O(ops) work, whatever the model's depth, where
a forward pass of the whole model per (op, precision) would grow with the model squared. A
Linear (or transformers' Conv1D) with more than `channels` output channels (256 by default) is
measured on `channels` of them, evenly spaced: each output channel of a Linear depends on its
own weight row only (its int8 scale is per channel; its activations are quantized per tensor or
per token, from the whole input, which it still gets), so the sampled error is the full one
restricted to those channels, and building and running the op costs `channels / out_features`
of the whole (at 1B parameters, 256 of the output head's 32000 rows). Memory: one lowered op at
a time beside the model, which is only observed (hooks, removed after), never
copied nor changed, so this may run in a thread while the run goes on on its evaluators; where
this process evaluates trials too (until the first evaluator is up), those and the measurement
take turns on the model (`Sensitivity`'s lock).
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from ..space import FP32, TuningSpace
from .batches import run_batch
from .lowering import absorbed, lowered_op
from .modules import is_transposed_linear
from .precisions import lower
from .qparams import Calibration

# Output channels a wide Linear is measured on (None: all of them).
CHANNELS = 256


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


def channel_sample(module: nn.Module, channels: int | None) -> torch.Tensor | None:
    """The output channels `module` is measured on: `channels` of them, evenly spaced, for a plain Linear (or
    transformers' Conv1D) without hooks of its own and with more output channels than that; None: all of them."""
    if channels is None or module._forward_hooks or module._forward_pre_hooks:
        return None
    if type(module) is nn.Linear:
        out_features = module.out_features
    elif is_transposed_linear(module):
        out_features = module.weight.shape[1]
    else:
        return None
    if out_features <= channels:
        return None
    return torch.linspace(0, out_features - 1, channels, device=module.weight.device).round().long().unique()


def sampled_op(module: nn.Module, precision: str, stats, index: torch.Tensor) -> nn.Module:
    """The Linear `module` restricted to output channels `index` (weight rows, bias, per-channel weight scales), at
    `precision`."""
    weight = module.weight.detach()
    weight = weight.index_select(1, index).t() if is_transposed_linear(module) else weight.index_select(0, index)
    bias = getattr(module, "bias", None)
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device, dtype=weight.dtype)
    linear.weight = nn.Parameter(weight.contiguous(), requires_grad=False)
    if bias is not None:
        linear.bias = nn.Parameter(bias.detach().index_select(0, index), requires_grad=False)
    if stats is not None and stats.weight_scale:
        stats = replace(stats, weight_scale=tuple(stats.weight_scale[i] for i in index.tolist()))
    return lower(linear, precision, stats)


class _Stopped(Exception):
    """Raised from a hook to end the forward pass when the measurement is told to stop."""


class _OpErrors:
    """The forward hooks of one measurement: each op of `wanted` lowered at each of its precisions and run on the
    inputs it was just called with, its error against what the FP32 op (or the BatchNorm it absorbs) returned."""

    def __init__(
        self,
        model: nn.Module,
        calibration: Calibration,
        wanted: dict[str, list[str]],
        stop: threading.Event | None,
        channels: int | None = CHANNELS,
    ):
        self.model, self.calibration, self.stop = model, calibration, stop
        self.errors: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.by_output: dict[str, list[tuple[str, str]]] = defaultdict(list)  # module -> (op, precision) judged at its output
        self.samples: dict[str, torch.Tensor] = {}  # op -> the output channels it is measured on (absent: all)
        for name, precisions in wanted.items():
            for precision in precisions:
                self.by_output[absorbed(model, name, precision, calibration) or name].append((name, precision))
        for name in wanted:  # decided before our own hooks are on the ops
            if (index := channel_sample(model.get_submodule(name), channels)) is not None:
                self.samples[name] = index
        self.inputs: dict[str, tuple[tuple, dict]] = {}  # op -> the inputs of its last call
        # A lowered op is built from a copy of the op, hooks included: while one runs, these hooks do nothing.
        self.judging = False

    def register(self) -> list:
        handles = []
        for name in {name for pairs in self.by_output.values() for name, _ in pairs}:
            handles.append(self.model.get_submodule(name).register_forward_pre_hook(self._capture(name), with_kwargs=True))
        for output in self.by_output:
            handles.append(self.model.get_submodule(output).register_forward_hook(self._judge(output), with_kwargs=True))
        return handles

    def _capture(self, name: str):
        def hook(module, args, kwargs):
            if self.judging:
                return
            if self.stop is not None and self.stop.is_set():
                raise _Stopped
            self.inputs[name] = (args, kwargs)

        return hook

    def _judge(self, output: str):
        def hook(module, args, kwargs, out):
            if self.judging:
                return
            reference = _floating(out)
            for name, precision in self.by_output[output]:
                if self.stop is not None and self.stop.is_set():
                    raise _Stopped
                op_args, op_kwargs = self.inputs[name]
                index = self.samples.get(name) if output == name else None
                try:
                    if index is None:
                        lowered = lowered_op(self.model, name, precision, self.calibration)
                    else:
                        lowered = sampled_op(self.model.get_submodule(name), precision, self.calibration.stats.get(name), index)
                except Exception:
                    continue  # a pair that cannot be built here is simply left unmeasured
                self.judging = True
                try:
                    expected = reference if index is None else [t.index_select(-1, index) for t in reference]
                    error = relative_error(lowered(*op_args, **op_kwargs), expected)
                except Exception:
                    error = math.inf  # the lowered op does not run on these inputs
                finally:
                    self.judging = False
                self.errors[(name, precision)].append(error)
                del lowered

        return hook


@torch.no_grad()
def measure_sensitivity(
    model: nn.Module,
    space: TuningSpace,
    calibration: Calibration,
    calib_data: Iterable,
    precisions: Iterable[str],
    batches: int = 1,
    stop: threading.Event | None = None,
    channels: int | None = CHANNELS,
) -> dict[tuple[str, str], float]:
    """The sensitivity of each (op, precision) of `space` among `precisions` that the first `batches` calibration
    batches reach, in space order; what was measured when `stop` is set. A wide Linear is measured on `channels` of
    its output channels (None: on all of them)."""
    wanted_precisions = set(precisions) - {FP32}
    wanted = {op.name: [p for p in op.precisions if p in wanted_precisions] for op in space}
    wanted = {name: ps for name, ps in wanted.items() if ps}
    measure = _OpErrors(model, calibration, wanted, stop, channels)
    modes = {module: module.training for module in model.modules()}
    handles = measure.register()
    try:
        model.eval()
        for i, batch in enumerate(calib_data):
            if i == batches:
                break
            run_batch(model, batch)
            measure.inputs.clear()
    except _Stopped:
        pass
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    return {(name, p): sum(errors) / len(errors) for name, ps in wanted.items() for p in ps if (errors := measure.errors.get((name, p)))}


def ranked(sensitivity: Mapping[tuple[str, str], float], precision: str) -> list[tuple[str, float]]:
    """The ops at `precision`, most sensitive first."""
    return sorted(((op, v) for (op, p), v in sensitivity.items() if p == precision), key=lambda item: -item[1])


class Sensitivity:
    """The sensitivity of a run's ops, measured once: in a thread while the run goes (`start`; `table` is its future),
    or at once (`result`)."""

    def __init__(
        self,
        model: nn.Module,
        space: TuningSpace,
        calibration: Calibration,
        calib_data: Iterable,
        precisions: Iterable[str],
        lock: threading.Lock | None = None,
    ):
        """`lock`: held while measuring (the model is hooked then), for whatever else runs on the same model."""
        self._args = (model, space, calibration, calib_data, tuple(precisions))
        self._lock = lock if lock is not None else threading.Lock()
        self._stop = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self.table: Future[dict[tuple[str, str], float]] = Future()  # the measured table, once measured

    def _measure(self) -> dict[tuple[str, str], float]:
        with self._lock:
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
