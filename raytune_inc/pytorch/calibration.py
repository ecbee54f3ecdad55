"""Calibration: the FP32 model run once on the calibration data, recording what the precision handlers need.

- Static int8 activations: each calibrated op's input goes through the observer PyTorch's
  x86 int8 flow uses (`X86InductorQuantizer`'s default config in torchao's pt2e: a histogram
  observer choosing a uint8 range with a zero point that minimises the quantization error),
  and calibration keeps the scale and zero point it chooses.
- The input shape each op saw first (for timing an op alone).
- Which BatchNorm directly follows which convolution (its only input is the convolution's
  output), so that an int8 convolution can absorb it, as pt2e folds it.

What it records is small and plain (floats, ints, names), so that the driver calibrates once
and hands the result to every evaluator.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from .modules import CONVOLUTIONS, fold_batchnorm, is_transposed_linear, model_device


@dataclass(frozen=True)
class OpStats:
    """The static int8 qparams of one op: its input's (uint8 with a zero point, chosen on the calibration data) and
    its weight's (int8, symmetric, one scale per output channel, of the weight the op will have: a folded
    BatchNorm included). Chosen once in the driver, so that an evaluator builds int8 ops without an observer."""

    input_scale: float
    input_zero_point: int
    weight_scale: tuple[float, ...] = ()


@dataclass(frozen=True)
class Calibration:
    """The static activation qparams of each calibrated op, the first input shape of each op, and the BatchNorm
    each convolution absorbs at int8 (conv name -> BatchNorm name)."""

    stats: Mapping[str, OpStats] = field(default_factory=dict)
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    folded: Mapping[str, str] = field(default_factory=dict)

    def as_json(self) -> dict:
        return {
            "stats": {name: asdict(s) for name, s in self.stats.items()},
            "shapes": {name: list(shape) for name, shape in self.shapes.items()},
            "folded": dict(self.folded),
        }

    @classmethod
    def from_json(cls, data: dict) -> Calibration:
        return cls(
            {
                name: OpStats(float(s["input_scale"]), int(s["input_zero_point"]), tuple(float(w) for w in s["weight_scale"]))
                for name, s in data["stats"].items()
            },
            {name: tuple(int(d) for d in shape) for name, shape in data["shapes"].items()},
            {str(k): str(v) for k, v in data["folded"].items()},
        )


def _x86_config():
    from . import import_torchao

    return import_torchao("torchao.quantization.pt2e.quantizer.x86_inductor_quantizer").get_default_x86_inductor_quantization_config()


def activation_observer() -> nn.Module:
    """A new observer of static int8 activations, made as pt2e's prepare makes it from `X86InductorQuantizer`'s
    default quantization config."""
    return observer_of(_x86_config().input_activation)


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


def _to(x, device: torch.device):
    return x.to(device) if isinstance(x, torch.Tensor) else x


def run_batch(model: nn.Module, batch) -> object:
    """`model` on one batch: a tensor, a tuple or list of positional inputs, or a dict of keyword inputs."""
    device = model_device(model)
    if isinstance(batch, Mapping):
        return model(**{k: _to(v, device) for k, v in batch.items()})
    if isinstance(batch, tuple | list):
        return model(*(_to(x, device) for x in batch))
    return model(_to(batch, device))


def rejected(model: nn.Module, batch, exc: Exception) -> ValueError:
    """The error for a calibration batch the FP32 model rejects with `exc`: batches that look like (input, label)
    pairs (two elements, the first of which the model runs on alone) are named as such, with the fix."""
    if isinstance(batch, tuple | list) and len(batch) == 2:
        try:
            with torch.no_grad():
                run_batch(model, batch[0])
        except Exception:
            pass
        else:
            return ValueError(
                "calib_data holds model inputs only, but its batches look like (input, label) pairs: the FP32 model rejects "
                f"a batch of two ({type(exc).__name__}: {exc}) and runs on its first element alone; give the inputs alone, "
                "e.g. calib_data=[x for x, _ in loader]"
            )
    return ValueError(f"the FP32 model rejects the calibration data: {type(exc).__name__}: {exc}")


class _Recorder:
    """The forward hooks of one calibration pass."""

    def __init__(self, model: nn.Module, observed: Iterable[str], shaped: Iterable[str]):
        self.modules = dict(model.named_modules())
        self.observers = {name: activation_observer() for name in observed}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.outputs: dict[int, tuple[str, weakref.ref]] = {}  # id(conv output) -> (conv name, the output)
        self.pairs: dict[str, str | None] = {}  # BatchNorm -> the conv whose output it took every time (None: not always)
        self.hooks = []
        for name in {*self.observers, *shaped}:
            self.hooks.append(self.modules[name].register_forward_pre_hook(self._input(name)))
        for name, module in self.modules.items():
            if isinstance(module, CONVOLUTIONS):
                self.hooks.append(module.register_forward_hook(self._conv_output(name)))
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
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


def _close(a, b) -> bool:
    leaves_a, leaves_b = tree_leaves(a), tree_leaves(b)
    if len(leaves_a) != len(leaves_b):
        return False
    for x, y in zip(leaves_a, leaves_b, strict=True):
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            if (
                not isinstance(y, torch.Tensor)
                or x.shape != y.shape
                or not torch.allclose(x, y, rtol=1e-3, atol=1e-4 * (1 + float(x.abs().max())))
            ):
                return False
    return True


def _foldable(model: nn.Module, pairs: Mapping[str, str], batch, expected) -> dict[str, str]:
    """The pairs whose folding leaves the FP32 model's output as it was (a convolution output that something else
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
def calibrate(model: nn.Module, calib_data: Iterable | None, observed: Iterable[str], shaped: Iterable[str] = ()) -> Calibration:
    """Run the FP32 model on `calib_data` once: the static int8 qparams of the ops in `observed`, the first input
    shape of those and of `shaped`, and the BatchNorms their convolutions absorb."""
    if calib_data is None:
        raise ValueError("int8 needs calibration data: calib_data is None (give a few input batches, or leave int8 out of precisions)")
    observed = list(observed)
    recorder = _Recorder(model, observed, shaped)
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
            raise ValueError("the calibration data is empty: give at least one batch")
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
            inputs[name] = (float(scale), int(zero_point))
    pairs = {conv: norm for norm, conv in recorder.pairs.items() if conv is not None and conv in inputs}
    if pairs:
        model.eval()
        try:
            pairs = _foldable(model, pairs, first, expected)
        finally:
            model.train(was_training)
    stats = {}
    for name, (scale, zero_point) in inputs.items():
        module = recorder.modules[name]
        if name in pairs:
            module = fold_batchnorm(module, recorder.modules[pairs[name]])
        if isinstance(module, (nn.Linear, *CONVOLUTIONS)):
            stats[name] = OpStats(scale, zero_point, weight_scales(module.weight))
        elif is_transposed_linear(module):
            stats[name] = OpStats(scale, zero_point, weight_scales(module.weight.t()))
        else:  # an op whose static int8 (if any) has no weight matrix: its input's qparams only
            stats[name] = OpStats(scale, zero_point)
    return Calibration(stats, dict(recorder.shapes), pairs)
