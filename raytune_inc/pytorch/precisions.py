"""The precision registry: one handler per (precision, module kind), as torchao registers a transform per config.

A handler says which modules it takes (`accepts`), how to lower one module (`lower`: it gets a copy
of the FP32 module of its own and returns the lowered module), and what the rest of the backend
needs to know about it: whether it needs the op's static activation qparams from calibration
(`calibrated`), which weight it quantizes per output channel, in (out, in, ...) layout (`weight`:
calibration chooses its scales), and whether it absorbs the BatchNorm that follows the op
(`folds`: calibration finds the pairs, lowering folds them). A new precision, or a new module kind
for one, is a new `register` call: op discovery, calibration, lowering and the sensitivity all
ask the registry.

Registered here (the order within a precision is the order of precedence):

| precision | module kinds | how |
| --- | --- | --- |
| bf16, fp16 | modules with floating weights of their own | cast; inputs and outputs converted at its boundary |
| int8_dynamic | Linear, transformers' Conv1D | torchao's `Int8DynamicActivationInt8WeightConfig` |
| int8 | Linear, transformers' Conv1D | `QuantizedLinear`: static uint8 activations, int8 weights |
| int8 | Conv1d/2d/3d | `QuantizedConv1d/2d/3d`, the same; a BatchNorm after it folded in |
| int8 | Embedding | weights only (torchao's `IntxWeightOnlyConfig`, per row) |

int8_dynamic: int8 weights per channel, activations quantized per token at run time. Static
int8 is pt2e's x86 representation (see `quantized.py`). transformers' Conv1D becomes a Linear
on its transposed weight. An Embedding's input is indices, so its int8 is weights only.

Left out, with the reason: int4 weight-only (torchao 0.18's `Int4WeightOnlyConfig` has no kernel
on a CPU with the CPU build of torch 2.13: its `plain` packing needs the `mslk` package, which
has no release with kernels, `tile_packed_to_4d` needs CUDA and bf16, `plain_int32` refuses the
CPU); int8_dynamic for convolutions and embeddings (torchao has no such kernel).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from ..space import LOWER_PRECISIONS
from . import import_torchao
from .dtypes import module_dtype
from .modules import CONVOLUTIONS, as_linear, has_floating_weights, is_transposed_linear
from .qparams import OpStats
from .quantized import QuantizedLinear, quantized_conv

Lower = Callable[[nn.Module, OpStats | None], nn.Module]


@dataclass(frozen=True)
class Handler:
    precision: str
    kind: str  # what it takes, in words (for docs and errors)
    accepts: Callable[[nn.Module], bool]
    lower: Lower
    calibrated: bool = False  # needs the op's static activation qparams from calibration
    weight: Callable[[nn.Module], torch.Tensor] | None = None  # the weight quantized per output channel, (out, in, ...)
    folds: bool = False  # absorbs the BatchNorm that directly follows the op (a convolution's, as pt2e folds it)


_HANDLERS: list[Handler] = []


def register(
    precision: str,
    kind: str,
    accepts: Callable[[nn.Module], bool],
    calibrated: bool = False,
    weight: Callable[[nn.Module], torch.Tensor] | None = None,
    folds: bool = False,
) -> Callable[[Lower], Lower]:
    """Decorator: `lower(module, stats)` lowers the modules `accepts` takes to `precision` (see `Handler`)."""
    if precision not in LOWER_PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known lower precisions are {', '.join(LOWER_PRECISIONS)}")

    def add(lower: Lower) -> Lower:
        _HANDLERS.append(Handler(precision, kind, accepts, lower, calibrated, weight, folds))
        return lower

    return add


def handler(precision: str, module: nn.Module) -> Handler | None:
    """The handler that lowers `module` to `precision`, or None when none takes it (the first registered wins)."""
    return next((h for h in _HANDLERS if h.precision == precision and h.accepts(module)), None)


def precisions_of(module: nn.Module) -> tuple[str, ...]:
    """The lower precisions some handler takes `module` to, in the order of LOWER_PRECISIONS."""
    return tuple(p for p in LOWER_PRECISIONS if handler(p, module) is not None)


def calibrated_handler(module: nn.Module, precisions: Iterable[str]) -> Handler | None:
    """The handler of `module` at one of `precisions` that needs its static activation qparams (None: none does)."""
    return next((h for p in precisions if (h := handler(p, module)) is not None and h.calibrated), None)


def needs_calibration(module: nn.Module, precisions: Iterable[str]) -> bool:
    """Whether lowering `module` to one of `precisions` needs its static activation qparams."""
    return calibrated_handler(module, precisions) is not None


def folds(module: nn.Module, precision: str) -> bool:
    """Whether `module` at `precision` absorbs the BatchNorm that follows it (where calibration found one)."""
    found = handler(precision, module)
    return found is not None and found.folds


def lower(module: nn.Module, precision: str, stats: OpStats | None) -> nn.Module:
    """`module` (a copy the caller gives away) at `precision`; the lowered module says its precision in `raytune_precision`."""
    found = handler(precision, module)
    if found is None:
        raise ValueError(f"no handler takes {type(module).__name__} to {precision}")
    if found.calibrated and stats is None:
        raise ValueError(f"{precision} needs the calibrated input range of this {type(module).__name__}, and calibration never reached it")
    lowered = found.lower(module, stats)
    lowered.raytune_precision = precision
    return lowered


def describe() -> list[tuple[str, str]]:
    """(precision, module kind) of every handler, in registration order."""
    return [(h.precision, h.kind) for h in _HANDLERS]


# ---------------------------------------------------------------- bf16, fp16

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class CastBoundary:
    """The forward hooks of a module run in `dtype`: floating inputs cast to it on the way in, outputs cast back to the
    first floating positional input's dtype on the way out (to `out_dtype`, the module's dtype before the cast, where
    there is none: an Embedding's indices, inputs given by keyword). An object rather than closures, so that a lowered model pickles."""

    def __init__(self, dtype: torch.dtype, out_dtype: torch.dtype = torch.float32):
        self.dtype = dtype
        self.out_dtype = out_dtype

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({"out_dtype": torch.float32, **state})  # one pickled before out_dtype was kept

    @staticmethod
    def _cast(x, to: torch.dtype):
        return x.to(to) if isinstance(x, torch.Tensor) and x.is_floating_point() else x

    def before(self, module: nn.Module, args: tuple, kwargs: dict):
        floating = (a.dtype for a in args if isinstance(a, torch.Tensor) and a.is_floating_point())
        module._raytune_out_dtype = next(floating, self.out_dtype)
        return tuple(self._cast(a, self.dtype) for a in args), {k: self._cast(v, self.dtype) for k, v in kwargs.items()}

    def after(self, module: nn.Module, args: tuple, kwargs: dict, out):
        to = module._raytune_out_dtype
        return tuple(self._cast(o, to) for o in out) if isinstance(out, tuple) else self._cast(out, to)


def cast_module(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Run `module` in bf16/fp16, in place: its weights cast, its inputs and outputs converted at its boundary (hooks,
    so names and parents' access to its weights stay as they were)."""
    boundary = CastBoundary(dtype, module_dtype(module) or torch.float32)
    module.to(dtype)
    module.register_forward_pre_hook(boundary.before, with_kwargs=True)
    module.register_forward_hook(boundary.after, with_kwargs=True)
    return module


def _cast_to(dtype: torch.dtype) -> Lower:
    return lambda module, stats: cast_module(module, dtype)


def _castable_to(dtype: torch.dtype) -> Callable[[nn.Module], bool]:
    """A module with floating weights of its own that are not all in `dtype` already (for a module of a bf16 model,
    bf16 would change nothing: it is no precision of it; fp16 is)."""
    return lambda module: has_floating_weights(module) and module_dtype(module) != dtype


for _name, _dtype in DTYPES.items():
    register(_name, "any module with floating weights of its own, not in that dtype already", _castable_to(_dtype))(_cast_to(_dtype))


# ---------------------------------------------------------------- int8_dynamic, int8


def _quantize(module: nn.Module, config) -> nn.Module:
    import_torchao().quantize_(module, config, filter_fn=lambda m, fqn: m is module)
    # torchao binds an extra_repr method to each module it quantizes: a reference cycle that would
    # keep every trial's int8 weights alive until Python's next full collection.
    module.__dict__.pop("extra_repr", None)
    return module


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear)


def _linear(module: nn.Module) -> nn.Linear:
    return as_linear(module) if is_transposed_linear(module) else module


@register("int8_dynamic", "Linear", _is_linear)
@register("int8_dynamic", "transformers' Conv1D (as a Linear)", is_transposed_linear)
def int8_dynamic_linear(module: nn.Module, stats: OpStats | None) -> nn.Module:
    return _quantize(_linear(module), import_torchao().Int8DynamicActivationInt8WeightConfig())


def _weight(module: nn.Module) -> torch.Tensor:
    return module.weight


def _transposed_weight(module: nn.Module) -> torch.Tensor:
    return module.weight.t()  # transformers' Conv1D stores (in, out)


@register("int8", "Linear", _is_linear, calibrated=True, weight=_weight)
@register("int8", "transformers' Conv1D (as a Linear)", is_transposed_linear, calibrated=True, weight=_transposed_weight)
def int8_linear(module: nn.Module, stats: OpStats | None) -> nn.Module:
    return QuantizedLinear(_linear(module), stats)


@register("int8", "Conv1d/2d/3d", lambda m: isinstance(m, CONVOLUTIONS), calibrated=True, weight=_weight, folds=True)
def int8_conv(module: nn.Module, stats: OpStats | None) -> nn.Module:
    return quantized_conv(module, stats)


def embedding_int8_config():
    quantization = import_torchao()
    return quantization.IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=quantization.PerAxis(0))  # per-row int8 weights


@register("int8", "Embedding (weights only)", lambda m: isinstance(m, nn.Embedding))
def int8_embedding(module: nn.Module, stats: OpStats | None) -> nn.Module:
    return _quantize(module, embedding_int8_config())
