"""The precision registry: one handler per (precision, module kind), as torchao registers a transform per config.

A handler says which modules it takes (`accepts`), whether it needs the activation statistics
of calibration (`calibrated`), and how to lower one module (`lower`: the module, changed in
place or replaced). A new precision, or a new module kind for one, is a new `register` call:
op discovery, calibration and config application all read the registry.

Registered here:

| precision | module kinds | how |
| --- | --- | --- |
| bf16, fp16 | any module with floating weights of its own | cast, with dtype conversion at its boundaries |
| int8 | Linear | torchao's `Int8StaticActivationInt8WeightConfig`: static per-tensor activations, per-channel weights |
| int8 | transformers' Conv1D | the same, as a Linear on the transposed weight |
| int8 | Conv1d/2d/3d | per-channel int8 weights and static per-tensor int8 activations (torchao's primitives) |
| int8 | Embedding | weights only (torchao's `IntxWeightOnlyConfig`, per row): its input is indices |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ..space import LOWER_PRECISIONS
from .calibration import Calibration, OpStats
from .modules import CONVOLUTIONS, as_linear, has_floating_weights, is_transposed_linear

Lower = Callable[[nn.Module, OpStats | None], nn.Module]


@dataclass(frozen=True)
class Handler:
    precision: str
    kind: str  # what it takes, in words (for docs and errors)
    accepts: Callable[[nn.Module], bool]
    lower: Lower
    calibrated: bool = False  # needs the op's activation statistics from calibration


_HANDLERS: list[Handler] = []


def register(precision: str, kind: str, accepts: Callable[[nn.Module], bool], calibrated: bool = False) -> Callable[[Lower], Lower]:
    """Decorator: `lower(module, stats)` lowers the modules `accepts` takes to `precision`."""
    if precision not in LOWER_PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known lower precisions are {', '.join(LOWER_PRECISIONS)}")

    def add(lower: Lower) -> Lower:
        _HANDLERS.append(Handler(precision, kind, accepts, lower, calibrated))
        return lower

    return add


def handler(precision: str, module: nn.Module) -> Handler | None:
    """The handler that lowers `module` to `precision`, or None when none takes it (the first registered wins)."""
    return next((h for h in _HANDLERS if h.precision == precision and h.accepts(module)), None)


def precisions_of(module: nn.Module) -> tuple[str, ...]:
    """The lower precisions some handler takes `module` to, in the order of LOWER_PRECISIONS."""
    return tuple(p for p in LOWER_PRECISIONS if handler(p, module) is not None)


def needs_calibration(module: nn.Module, precisions: tuple[str, ...]) -> bool:
    """Whether lowering `module` to one of `precisions` needs its activation statistics."""
    return any((h := handler(p, module)) is not None and h.calibrated for p in precisions)


def lower(module: nn.Module, precision: str, stats: OpStats | None) -> nn.Module:
    found = handler(precision, module)
    if found is None:
        raise ValueError(f"no handler takes {type(module).__name__} to {precision}")
    lowered = found.lower(module, stats)
    lowered.raytune_precision = precision
    return lowered


# ---------------------------------------------------------------- bf16, fp16

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cast_module(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Run `module` in bf16/fp16, in place: its weights cast, floating inputs cast to `dtype` on the way
    in and outputs cast back to the input's dtype on the way out (hooks, so names and parents' access
    to its weights stay as they were)."""

    def cast(x, to):
        return x.to(to) if isinstance(x, torch.Tensor) and x.is_floating_point() else x

    def before(mod, args, kwargs):
        mod._raytune_out_dtype = next((a.dtype for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()), torch.float32)
        return tuple(cast(a, dtype) for a in args), {k: cast(v, dtype) for k, v in kwargs.items()}

    def after(mod, args, kwargs, out):
        to = mod._raytune_out_dtype
        return tuple(cast(o, to) for o in out) if isinstance(out, tuple) else cast(out, to)

    module.to(dtype)
    module.register_forward_pre_hook(before, with_kwargs=True)
    module.register_forward_hook(after, with_kwargs=True)
    return module


for _name, _dtype in DTYPES.items():
    register(_name, "any module with floating weights of its own", has_floating_weights)(
        lambda module, stats, dtype=_dtype: cast_module(module, dtype)
    )


# ---------------------------------------------------------------- int8


def _quantize(module: nn.Module, config) -> nn.Module:
    from torchao.quantization import quantize_

    quantize_(module, config, filter_fn=lambda m, fqn: m is module)
    # torchao binds an extra_repr method to each module it quantizes: a reference cycle that would
    # keep every trial's int8 weights alive until Python's next full collection.
    module.__dict__.pop("extra_repr", None)
    return module


def linear_int8_config(stats: OpStats | None):
    """The torchao config of an int8 Linear: static activations with the calibrated scale, or dynamic ones
    where calibration never reached it."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8StaticActivationInt8WeightConfig, PerRow, PerTensor

    if stats is None:
        return Int8DynamicActivationInt8WeightConfig()
    scale = torch.tensor(max(stats.absmax, 1e-12) / 127.0).reshape([1] * stats.ndim)
    return Int8StaticActivationInt8WeightConfig(act_quant_scale=scale, granularity=[PerTensor(), PerRow()])


@register("int8", "Linear", lambda m: isinstance(m, nn.Linear), calibrated=True)
def int8_linear(module: nn.Module, stats: OpStats | None) -> nn.Module:
    return _quantize(module, linear_int8_config(stats))


@register("int8", "transformers' Conv1D", is_transposed_linear, calibrated=True)
def int8_transposed_linear(module: nn.Module, stats: OpStats | None) -> nn.Module:
    return int8_linear(as_linear(module), stats)


@register("int8", "Conv1d/2d/3d", lambda m: isinstance(m, CONVOLUTIONS), calibrated=True)
def int8_conv(conv: nn.Module, stats: OpStats | None) -> nn.Module:
    """Per-output-channel int8 weights and a static per-tensor int8 input scale, through torchao's
    quantize/dequantize primitives, in place."""
    from torchao.quantization.quant_primitives import MappingType, choose_qparams_affine, dequantize_affine, quantize_affine

    w = conv.weight.detach()
    block = (1, *w.shape[1:])
    scale, zero = choose_qparams_affine(w, MappingType.SYMMETRIC, block, torch.int8)
    qw = quantize_affine(w, block, scale, zero, torch.int8)
    conv.weight = nn.Parameter(dequantize_affine(qw, block, scale, zero, torch.int8, output_dtype=w.dtype), requires_grad=False)
    if stats is not None:
        input_scale = torch.tensor(max(stats.absmax, 1e-12) / 127.0, device=w.device)

        def quantize_input(module, args):
            x = args[0]
            shape = tuple(x.shape)
            s = input_scale.to(x.dtype).reshape([1] * x.dim())
            z = torch.zeros_like(s, dtype=torch.int32)
            return (
                dequantize_affine(quantize_affine(x, shape, s, z, torch.int8), shape, s, z, torch.int8, output_dtype=x.dtype),
                *args[1:],
            )

        conv.register_forward_pre_hook(quantize_input)
    return conv


def embedding_int8_config():
    from torchao.quantization import IntxWeightOnlyConfig, PerAxis

    return IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0))  # per-row int8 weights


@register("int8", "Embedding (weights only)", lambda m: isinstance(m, nn.Embedding))
def int8_embedding(module: nn.Module, stats: OpStats | None) -> nn.Module:
    return _quantize(module, embedding_int8_config())


def torchao_config(config: Mapping[str, str], calibration: Calibration, model: nn.Module):
    """The torchao `FqnToConfig` of the int8 Linear and Embedding ops of `config` in the FP32 `model`: what torchao
    itself can apply to them."""
    from torchao.quantization import FqnToConfig

    out = {}
    for name, precision in config.items():
        module = model.get_submodule(name)
        if precision != "int8":
            continue
        if isinstance(module, nn.Embedding):
            out[name] = embedding_int8_config()
        elif isinstance(module, nn.Linear):
            out[name] = linear_int8_config(calibration.stats.get(name))
    return FqnToConfig(out)
