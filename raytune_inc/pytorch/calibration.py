"""Calibration: the model run once on the calibration data, recording what the precision handlers need.

- Static int8 activations: each calibrated op's input goes through the observer PyTorch's
  x86 int8 flow uses (`X86InductorQuantizer`'s default config in torchao's pt2e: a histogram
  observer choosing a uint8 range with a zero point that minimises the quantization error),
  and calibration keeps the scale and zero point it chooses. A model on the CPU of an x86
  host without VNNI gets 7-bit activations (0..127, `reduce_range`), as that config advises
  for such CPUs: there oneDNN's int8 kernels would saturate on 8-bit ones.
- The input shape each op saw first (for timing an op alone).
- Which BatchNorm directly follows which convolution (its only input is the convolution's
  output), so that an int8 convolution can absorb it, as pt2e folds it.

A model in bf16 or fp16 calibrates as it is: the observers see its activations (and weights) converted to
float32, which holds every bf16 / fp16 value exactly, so the qparams are those of the values the model computes.

What it records is small and plain (floats, ints, names), so that the driver calibrates once
and hands the result to every evaluator.
"""

from __future__ import annotations

import copy
import functools
import os
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import asdict

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from ..space import LOWER_PRECISIONS
from .batches import run_batch
from .checks import empty_calibration_data, no_calibration_data, rejected
from .modules import fold_batchnorm, model_device
from .precisions import calibrated_handler
from .qparams import Calibration, OpStats


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (/proc/cpuinfo), read once; empty where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((frozenset(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), frozenset())
    except OSError:
        return frozenset()


def reduce_range() -> bool:
    """Whether static int8 activations take 7 bits (uint8 0..127) instead of 8: on an x86 CPU without VNNI, as
    torchao's `X86InductorQuantizer` advises for such CPUs. There oneDNN's int8 kernels add pairs of uint8 x int8
    products in int16 (AVX2's vpmaddubsw), which saturates on full-range inputs: a compiled int8 Linear was 9% off
    its eager result on an AVX2-only host, and exact with 7-bit inputs. RAYTUNE_INC_REDUCE_RANGE=1 or 0 forces it
    (for a model tuned on one host and deployed on another)."""
    forced = os.environ.get("RAYTUNE_INC_REDUCE_RANGE", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    flags = _cpu_flags()
    return "avx2" in flags and not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}


def _x86_config(reduced: bool = False):
    from . import import_torchao

    quantizer = import_torchao("torchao.quantization.pt2e.quantizer.x86_inductor_quantizer")
    return quantizer.get_default_x86_inductor_quantization_config(reduce_range=reduced)


def activation_observer(reduced: bool = False) -> nn.Module:
    """A new observer of static int8 activations, made as pt2e's prepare makes it from `X86InductorQuantizer`'s
    default quantization config (`reduced`: 7 bits, see `reduce_range`)."""
    return observer_of(_x86_config(reduced).input_activation)


def weight_observer() -> nn.Module:
    """A new observer of int8 weights (per output channel, symmetric), as `X86InductorQuantizer` configures it."""
    return observer_of(_x86_config().weight)


def weight_scales(weight: torch.Tensor) -> tuple[float, ...]:
    """The per-output-channel scales of int8 weights that `weight_observer` chooses for `weight`."""
    observer = weight_observer()
    observer(weight.detach().float().cpu())
    scale, _ = observer.calculate_qparams()
    return tuple(float(s) for s in scale)


def observer_of(spec) -> nn.Module:
    """The observer a pt2e `QuantizationSpec` describes, with the spec's dtype, range, scheme and channel axis."""
    kwargs = asdict(spec)
    constructor = kwargs.pop("observer_or_fake_quant_ctr")
    if "PerChannel" not in constructor.p.func.__name__:
        kwargs.pop("ch_axis")
    return spec.observer_or_fake_quant_ctr.with_args(**kwargs)()


class _Recorder:
    """The forward hooks of one calibration pass."""

    def __init__(self, model: nn.Module, observed: Iterable[str], shaped: Iterable[str], folding: Iterable[str]):
        self.modules = dict(model.named_modules())
        # A model on the CPU gets 7-bit activations where `reduce_range()` says so; one on a GPU 8-bit ones.
        reduced = model_device(model).type == "cpu" and reduce_range()
        self.observers = {name: activation_observer(reduced) for name in observed}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.outputs: dict[int, tuple[str, weakref.ref]] = {}  # id(conv output) -> (conv name, the output)
        self.pairs: dict[str, str | None] = {}  # BatchNorm -> the conv whose output it took every time (None: not always)
        self.hooks = []
        for name in {*self.observers, *shaped}:
            self.hooks.append(self.modules[name].register_forward_pre_hook(self._input(name)))
        for name in folding:  # ops whose lowering absorbs the BatchNorm after them: which one is it?
            self.hooks.append(self.modules[name].register_forward_hook(self._conv_output(name)))
        if folding:
            for name, module in self.modules.items():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    self.hooks.append(module.register_forward_pre_hook(self._norm_input(name)))

    def _input(self, name: str):
        def record(module, args):
            x = args[0] if args else None
            if isinstance(x, torch.Tensor) and x.is_floating_point():
                self.shapes.setdefault(name, tuple(x.shape))
                if name in self.observers:
                    self.observers[name](x.detach().float())

        return record

    def _conv_output(self, name: str):
        def record(module, args, out):
            if isinstance(out, torch.Tensor):
                self.outputs[id(out)] = (name, weakref.ref(out))

        return record

    def _norm_input(self, name: str):
        def record(module, args):
            x = args[0] if args else None
            seen = self.outputs.get(id(x)) if isinstance(x, torch.Tensor) else None
            conv = seen[0] if seen is not None and seen[1]() is x else None
            self.pairs[name] = conv if self.pairs.get(name, conv) == conv else None

        return record

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()


def _tolerance(dtype: torch.dtype) -> tuple[float, float]:
    """(rtol, atol per unit of the largest value) of `_close` for outputs in `dtype`: 1e-3 and 1e-4 in float32, four
    of the dtype's eps in bf16 / fp16 (a folded BatchNorm rounds its scale into the weights once more, a few ulps;
    one that must not be folded changes the output by as much as its scale and shift, far more)."""
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
    return max(1e-3, 4 * eps), max(1e-4, 4 * eps)


def _close(a, b) -> bool:
    leaves_a, leaves_b = tree_leaves(a), tree_leaves(b)
    if len(leaves_a) != len(leaves_b):
        return False
    for x, y in zip(leaves_a, leaves_b, strict=True):
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            if not isinstance(y, torch.Tensor) or x.shape != y.shape:
                return False
            rtol, atol = _tolerance(x.dtype)
            if not torch.allclose(x.float(), y.float(), rtol=rtol, atol=atol * (1 + float(x.abs().max()))):
                return False
    return True


def _foldable(model: nn.Module, pairs: Mapping[str, str], batch, expected) -> dict[str, str]:
    """The pairs whose folding leaves the model's output as it was (a convolution output that something else
    reads too cannot absorb the BatchNorm after it)."""

    def folded_output(chosen: Mapping[str, str]):
        copy_ = copy.deepcopy(model)
        for conv, norm in chosen.items():
            copy_.set_submodule(conv, fold_batchnorm(copy_.get_submodule(conv), copy_.get_submodule(norm)))
            copy_.set_submodule(norm, nn.Identity())
        return run_batch(copy_, batch)

    if not pairs or _close(folded_output(pairs), expected):
        return dict(pairs)
    return {conv: norm for conv, norm in pairs.items() if _close(folded_output({conv: norm}), expected)}


@torch.no_grad()
def calibrate(
    model: nn.Module,
    calib_data: Iterable | None,
    observed: Iterable[str],
    shaped: Iterable[str] = (),
    precisions: Iterable[str] = LOWER_PRECISIONS,
) -> Calibration:
    """Run the model (in its own dtype) on `calib_data` once: the static activation qparams of the ops in `observed`, and the per
    channel scales of the weight their calibrated handler at one of `precisions` quantizes (see `precisions.Handler`);
    the first input shape of those and of `shaped`; the BatchNorm each op whose handler folds one absorbs."""
    if calib_data is None:
        raise no_calibration_data()
    observed = list(observed)
    modules = dict(model.named_modules())
    handlers = {name: calibrated_handler(modules[name], precisions) for name in observed}
    recorder = _Recorder(model, observed, shaped, [name for name, h in handlers.items() if h is not None and h.folds])
    was_training = model.training
    model.eval()
    first = expected = batch = None
    try:
        n = 0
        for batch in calib_data:
            out = run_batch(model, batch)
            if n == 0:
                first, expected = batch, out
            recorder.outputs.clear()
            n += 1
        if n == 0:
            raise empty_calibration_data()
    except ValueError:
        raise
    except Exception as exc:
        raise rejected(model, batch, exc) from exc
    finally:
        recorder.remove()
        model.train(was_training)
    inputs = {}
    for name, observer in recorder.observers.items():
        if name in recorder.shapes:  # the calibration data reached it
            scale, zero_point = observer.calculate_qparams()
            inputs[name] = (float(scale), int(zero_point), int(observer.quant_max))
    pairs = {conv: norm for norm, conv in recorder.pairs.items() if conv is not None and conv in inputs}
    if pairs:
        model.eval()
        try:
            pairs = _foldable(model, pairs, first, expected)
        finally:
            model.train(was_training)
    stats = {}
    for name, (scale, zero_point, quant_max) in inputs.items():
        module, found = modules[name], handlers[name]
        if name in pairs:
            module = fold_batchnorm(module, modules[pairs[name]])
        weight = found.weight(module) if found is not None and found.weight is not None else None
        # an op whose static int8 (if any) quantizes no weight: its input's qparams only
        stats[name] = OpStats(scale, zero_point, () if weight is None else weight_scales(weight), quant_max)
    return Calibration(stats, dict(recorder.shapes), pairs)
