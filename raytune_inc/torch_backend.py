"""The PyTorch backend: the tunable ops of an nn.Module, and a config applied to a copy of it.

- Op discovery: modules in model order, by fully qualified name. Linear, Conv1d/2d/3d
  (grouped and depthwise ones included) and transformers' `Conv1D` (GPT-2's projections: a
  Linear with a transposed weight) take int8, bf16 and fp16; Embedding takes int8 (weights
  only: its input is indices), bf16 and fp16; other modules with floating weights of their
  own take bf16 and fp16. BatchNorm is no op: it stays FP32 (see `LEFT_OUT`).
- Tied weights (GPT-2's `lm_head` shares `wte`'s): each module is its own op, and lowering
  one never changes another. A lowered op gets its own copy of a shared weight; the others
  keep the FP32 tensor.
- int8 with torchao: Linear gets static int8 activations (a per-tensor scale calibrated
  once on the FP32 model) and per-channel int8 weights (`Int8StaticActivationInt8WeightConfig`),
  or dynamic int8 activations where calibration never reached it. torchao has no int8
  convolution on CPU, so a Conv's int8 numerics are emulated with torchao's own
  quantize/dequantize primitives (per-channel weights, static per-tensor activations).
- bf16/fp16: the module is cast, with dtype conversion at its boundaries.

Modules are changed in place on a copy of the model, so the tuned model's module names
and state_dict keys are those of the FP32 model.

Calibration runs once on the FP32 model (`calibrate`); every trial reuses its statistics.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .space import FP32, LOWER_PRECISIONS, Op, TuningSpace

INT8_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Module kinds that are left out of the space on purpose, with the reason.
LEFT_OUT = {
    nn.modules.batchnorm._BatchNorm: "BatchNorm stays FP32: at inference it is a per-channel scale and shift that the int8 "
    "convolution before it absorbs (folded into its weights), and alone it is too cheap to gain from a lower precision",
}


def _own_weights(module: nn.Module) -> bool:
    return any(p is not None for p in module._parameters.values())


def is_transposed_linear(module: nn.Module) -> bool:
    """transformers' `Conv1D` (GPT-2, GPT-Neo's relatives): a Linear whose weight is stored transposed, (in, out)."""
    weight = getattr(module, "weight", None)
    return (
        type(module).__name__ == "Conv1D"
        and type(module).__module__.startswith("transformers")
        and isinstance(weight, torch.Tensor)
        and weight.dim() == 2
    )


def as_linear(module: nn.Module) -> nn.Linear:
    """An nn.Linear computing what the transposed-weight `module` (transformers' Conv1D) computes."""
    n_in, n_out = module.weight.shape
    bias = getattr(module, "bias", None)
    linear = nn.Linear(n_in, n_out, bias=bias is not None, device=module.weight.device, dtype=module.weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(module.weight.detach().t())
        if bias is not None:
            linear.bias.copy_(bias.detach())
    return linear


def takes_int8_activations(module: nn.Module) -> bool:
    """Whether int8 for this module means int8 activations (calibrated) as well as int8 weights."""
    return isinstance(module, INT8_MODULES) or is_transposed_linear(module)


def _int8_capable(module: nn.Module) -> bool:
    return takes_int8_activations(module) or isinstance(module, nn.Embedding)


def discover_ops(
    model: nn.Module,
    op_name_dict: Mapping[str, Sequence[str]] | None = None,
    op_type_dict: Mapping[str, Sequence[str]] | None = None,
) -> TuningSpace:
    """The tunable ops of `model`, in model order.

    `op_name_dict` / `op_type_dict` map a regex (matched in full against the op's name,
    or its module class name) to the precisions allowed for the ops it matches, as
    Neural Compressor's dicts of the same names did; `("fp32",)` leaves an op out. A module
    that holds other ops (MultiheadAttention and its out_proj) is left to them.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    rules = [(re.compile(k), v, "name") for k, v in (op_name_dict or {}).items()]
    rules += [(re.compile(k), v, "type") for k, v in (op_type_dict or {}).items()]
    ops = []
    attention: list[str] = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(m + ".") for m in attention):
            continue
        if isinstance(module, nn.MultiheadAttention):
            attention.append(name)  # it reads its out_proj's weights itself: one op, bf16/fp16
        if isinstance(module, tuple(LEFT_OUT)):
            continue
        if _int8_capable(module):
            allowed = set(LOWER_PRECISIONS)
        elif _own_weights(module) and all(p.is_floating_point() for p in module.parameters(recurse=False)):
            allowed = set(DTYPES)
        else:
            continue
        op_type = type(module).__name__
        for pattern, precisions, what in rules:
            if pattern.fullmatch(name if what == "name" else op_type):
                allowed &= set(precisions)
        precisions = tuple(p for p in LOWER_PRECISIONS if p in allowed)
        if precisions:
            ops.append(Op(name, op_type, precisions))
    # A module with weights of its own that holds other ops (e.g. MultiheadAttention and its
    # out_proj) is not an op itself: its descendants are, so no op is inside another.
    names = [op.name for op in ops]
    ops = [op for op in ops if not any(other.startswith(op.name + ".") for other in names)]
    if not ops:
        raise ValueError(
            f"no tunable op in {type(model).__name__}: it has no Linear, Conv1d/2d/3d or other module with weights"
            + (" left by op_name_dict/op_type_dict" if rules else "")
        )
    return TuningSpace(ops)


@dataclass(frozen=True)
class Calibration:
    """Per int8-capable module: the largest |input| seen on the calibration data, and the input's ndim."""

    absmax: Mapping[str, float]
    ndim: Mapping[str, int]


def model_device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _to(x, device: torch.device):
    return x.to(device) if isinstance(x, torch.Tensor) else x


def _run(model: nn.Module, batch) -> None:
    device = model_device(model)
    if isinstance(batch, Mapping):
        model(**{k: _to(v, device) for k, v in batch.items()})
    elif isinstance(batch, tuple | list):
        model(*(_to(x, device) for x in batch))
    else:
        model(_to(batch, device))


@torch.no_grad()
def calibrate(model: nn.Module, calib_data: Iterable, names: Iterable[str]) -> Calibration:
    """Run the FP32 model on `calib_data` once and record the input range of each module in `names`."""
    modules = dict(model.named_modules())
    absmax: dict[str, float] = {}
    ndim: dict[str, int] = {}
    hooks = []

    def hook(name):
        def record(module, args):
            if args and isinstance(args[0], torch.Tensor) and args[0].is_floating_point():
                absmax[name] = max(absmax.get(name, 0.0), float(args[0].detach().abs().max()))
                ndim[name] = args[0].dim()

        return record

    for name in names:
        if name in modules and takes_int8_activations(modules[name]):
            hooks.append(modules[name].register_forward_pre_hook(hook(name)))
    if calib_data is None:
        raise ValueError("int8 needs calibration data: calib_data is None (give a few input batches, or leave int8 out of precisions)")
    was_training = model.training
    model.eval()
    try:
        n = 0
        for batch in calib_data:
            _run(model, batch)
            n += 1
        if n == 0:
            raise ValueError("the calibration data is empty: give at least one batch")
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"the FP32 model rejects the calibration data: {type(exc).__name__}: {exc}") from exc
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return Calibration(absmax, ndim)


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
    module.raytune_precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    return module


def int8_conv(conv: nn.Conv1d | nn.Conv2d | nn.Conv3d, input_absmax: float | None) -> nn.Module:
    """Give a convolution int8 numerics, in place: per-output-channel int8 weights and a static per-tensor
    int8 input scale, through torchao's quantize/dequantize primitives (torchao has no int8 convolution
    kernel on CPU, so this emulates int8's accuracy, not its speed)."""
    from torchao.quantization.quant_primitives import MappingType, choose_qparams_affine, dequantize_affine, quantize_affine

    w = conv.weight.detach()
    block = (1, *w.shape[1:])
    scale, zero = choose_qparams_affine(w, MappingType.SYMMETRIC, block, torch.int8)
    qw = quantize_affine(w, block, scale, zero, torch.int8)
    conv.weight = nn.Parameter(dequantize_affine(qw, block, scale, zero, torch.int8, output_dtype=w.dtype), requires_grad=False)
    if input_absmax is not None:
        input_scale = torch.tensor(max(input_absmax, 1e-12) / 127.0, device=w.device)

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
    conv.raytune_precision = "int8"
    return conv


def torchao_config(config: Mapping[str, str], calibration: Calibration, model: nn.Module):
    """The torchao `FqnToConfig` of the int8 Linear and Embedding ops of `config` in `model` (what torchao
    itself can apply to them; transformers' Conv1D becomes a Linear first, see `apply_config`)."""
    from torchao.quantization import (
        FqnToConfig,
        Int8DynamicActivationInt8WeightConfig,
        Int8StaticActivationInt8WeightConfig,
        IntxWeightOnlyConfig,
        PerAxis,
        PerRow,
        PerTensor,
    )

    modules = dict(model.named_modules())
    out = {}
    for name, precision in config.items():
        if precision != "int8":
            continue
        if isinstance(modules.get(name), nn.Embedding):
            out[name] = IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0))  # per-row int8 weights
            continue
        if not isinstance(modules.get(name), nn.Linear):
            continue
        if name in calibration.absmax:
            scale = torch.tensor(max(calibration.absmax[name], 1e-12) / 127.0).reshape([1] * calibration.ndim[name])
            out[name] = Int8StaticActivationInt8WeightConfig(act_quant_scale=scale, granularity=[PerTensor(), PerRow()])
        else:
            out[name] = Int8DynamicActivationInt8WeightConfig()
    return FqnToConfig(out)


def apply_config(model: nn.Module, config: Mapping[str, str], calibration: Calibration) -> nn.Module:
    """A copy of the FP32 `model` with each op at its precision in `config` (op name -> precision)."""
    from torchao.quantization import quantize_

    model = copy.deepcopy(model)
    lowered = [name for name, precision in config.items() if precision != FP32]
    untie(model, lowered)
    for name in lowered:
        module = model.get_submodule(name)
        if config[name] == "int8" and is_transposed_linear(module):
            model.set_submodule(name, as_linear(module))  # torchao's int8 Linear, on the transposed weight
    fqn = torchao_config(config, calibration, model)
    if fqn.fqn_to_config:
        quantize_(model, fqn, filter_fn=None)
        for module in model.modules():
            # torchao binds an extra_repr method to each module it quantizes: a reference cycle that
            # would keep every trial's int8 weights alive until Python's next full collection.
            module.__dict__.pop("extra_repr", None)
    for name, precision in config.items():
        if precision == FP32:
            continue
        module = model.get_submodule(name)
        if precision == "int8":
            if isinstance(module, nn.Linear | nn.Embedding):
                module.raytune_precision = "int8"
                continue  # done by torchao above
            int8_conv(module, calibration.absmax.get(name))
        else:
            cast_module(module, DTYPES[precision])
    return model.eval()


def untie(model: nn.Module, names: Iterable[str]) -> None:
    """Give each module of `names` its own copy of every parameter it shares with another module (tied
    weights), in place, so that lowering it leaves the other modules as they were."""
    holders: dict[int, set[int]] = {}
    for module in model.modules():
        for p in module._parameters.values():
            if p is not None:
                holders.setdefault(id(p), set()).add(id(module))
    for name in names:
        module = model.get_submodule(name)
        for key, p in list(module._parameters.items()):
            if p is not None and len(holders[id(p)]) > 1:
                holders[id(p)].discard(id(module))
                setattr(module, key, nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad))


def _assigned_cpus() -> float | None:
    """The CPUs Ray gave this process's actor, if it is one."""
    try:
        import ray

        return ray.get_runtime_context().get_assigned_resources().get("CPU") if ray.is_initialized() else None
    except Exception:
        return None


class ModelEvaluation:
    """The evaluation function `tune` gives the strategy: config -> eval_fn(model with that config).

    Picklable; the model, eval function and calibration data travel with it to each evaluator
    once, and calibration runs once per process, on first use. In an evaluator that holds a
    GPU share the model moves to CUDA (Ray hides the GPUs from the others), and torch uses as
    many threads as the evaluator has CPUs; `eval_fn` gets the model on that device.
    """

    def __init__(
        self, model: nn.Module, eval_fn: Callable[[nn.Module], float], calib_data: Iterable | None, space: TuningSpace, int8: bool = True
    ):
        """`int8=False`: no op goes to int8, so nothing is calibrated and `calib_data` may be None or empty."""
        self.model = model
        self.eval_fn = eval_fn
        self.calib_data = calib_data
        self.names = space.names
        self.int8 = int8
        self._calibration: Calibration | None = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_calibration"] = None  # recomputed once where it runs
        return state

    def __setstate__(self, state):
        # Unpickled where it runs: an evaluator actor (the driver only pickles it).
        self.__dict__.update(state)
        if torch.cuda.is_available():  # Ray shows an actor only the GPUs it was given
            self.model = self.model.to("cuda")
        if cpus := _assigned_cpus():
            torch.set_num_threads(max(1, int(cpus)))

    @property
    def calibration(self) -> Calibration:
        if self._calibration is None:
            self._calibration = calibrate(self.model, self.calib_data, self.names) if self.int8 else Calibration({}, {})
        return self._calibration

    def build(self, config: Mapping[str, str]) -> nn.Module:
        return apply_config(self.model, config, self.calibration)

    def __call__(self, config: Mapping[str, str]) -> float:
        with torch.no_grad():
            return self.eval_fn(self.build(config))
