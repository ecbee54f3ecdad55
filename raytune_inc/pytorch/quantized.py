"""Static int8 Linear and convolutions in PyTorch's quantized representation: the one pt2e's `convert_pt2e` emits.

Each module holds int8 weights (per output channel, symmetric, chosen by the weight observer
of `X86InductorQuantizer`'s config) and the static activation qparams calibration chose
(uint8 with a zero point, per tensor), and computes

    x -> quantize_per_tensor -> dequantize_per_tensor -> linear / conv(..., dequantize_per_channel(weight))

with the `quantized_decomposed` ops. Eagerly that is int8's accuracy at FP32's speed; under
`torch.compile` with inductor freezing, inductor's x86 passes match the pattern and run the
layer on oneDNN's int8 kernels (`qlinear_pointwise`, `qconv_pointwise`), as for a model
quantized by pt2e with `X86InductorQuantizer`. Module by module, so the rest of the model,
its names and its Python code stay the user's.
"""

from __future__ import annotations

import torch

# The quantized_decomposed ops this representation is written in, which inductor's x86 passes match: registered by
# the op library torch ships, the module torchao's pt2e convert imports to the same end. Imported alone, so that an
# evaluator running static int8 does not pay torchao's seconds of import (the qparams come from the driver's
# calibration, chosen there with torchao's observers).
import torch.ao.quantization.fx._decomposed  # noqa: F401
from torch import nn
from torch.nn import functional as F

from .qparams import OpStats

_qd = torch.ops.quantized_decomposed
U8_MIN, U8_MAX = 0, 255  # activations: uint8 with a zero point (X86InductorQuantizer's default; 0..127 with reduce_range)
I8_MIN, I8_MAX = -128, 127  # weights: int8, symmetric per output channel
# The dtype an op computes in, by the model's dtype (the dtype it takes and returns). A bf16 model's op is pt2e's
# int8-mixed-bf16: the dequantized activation and weight converted to bf16, the linear / conv in bf16 (inductor
# matches that pattern too, with a bf16 output). inductor has no int8-mixed-fp16 pattern: an fp16 model's op computes
# in float32, the int8-mixed-fp32 pattern, its output converted to fp16.
COMPUTE_DTYPES = {torch.float32: torch.float32, torch.bfloat16: torch.bfloat16, torch.float16: torch.float32}


def _to(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return x if x.dtype == dtype else x.to(dtype)


class QuantizedModule(nn.Module):
    """int8 weights per output channel and the static activation qparams of one op.

    The quantized modules below subclass the module they replace (an `isinstance` check still
    holds) and keep its hyperparameters (`in_features`, `kernel_size`, `stride`, ...); `weight`
    reads as the dequantized FP32 weight, for code that looks at it.
    """

    def _quantize_from(self, module: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None, stats: OpStats) -> None:
        nn.Module.__init__(self)
        for key, value in vars(module).items():
            if key == "_reversed_padding_repeated_twice" or (not key.startswith("_") and key != "training"):
                object.__setattr__(self, key, value)  # hyperparameters: plain values
        # The dtype the op takes and returns: the model's (its weight's, before quantization).
        self.out_dtype = weight.dtype if weight.dtype in COMPUTE_DTYPES else torch.float32
        weight = weight.detach().float()
        if len(stats.weight_scale) != weight.shape[0]:
            raise ValueError(
                f"the calibration has {len(stats.weight_scale)} weight scales for a weight of {weight.shape[0]} output channels"
            )
        scale = torch.tensor(stats.weight_scale, dtype=torch.float32, device=weight.device)
        zero_point = torch.zeros(scale.shape, dtype=torch.int64, device=weight.device)
        self.register_buffer("weight_int8", _qd.quantize_per_channel(weight, scale, zero_point, 0, I8_MIN, I8_MAX, torch.int8))
        self.register_buffer("weight_scale", scale.float())
        self.register_buffer("weight_zero_point", zero_point.to(torch.int64))
        bias_dtype = self.compute_dtype
        self.bias = None if bias is None else nn.Parameter(bias.detach().to(bias_dtype, copy=True), requires_grad=False)
        self.input_scale = float(stats.input_scale)
        self.input_zero_point = int(stats.input_zero_point)
        self.input_quant_max = int(stats.input_quant_max)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__({"input_quant_max": U8_MAX, **state})  # one pickled before the range was kept: 8 bits

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype the op computes in: bf16 for a bf16 model (pt2e's int8-mixed-bf16), else float32."""
        return COMPUTE_DTYPES[self.out_dtype]

    @property
    def weight(self) -> torch.Tensor:
        return self.dequantized_weight().to(self.out_dtype)

    def quantized_input(self, x: torch.Tensor) -> torch.Tensor:
        """`x` quantized to uint8 and back, in the dtype the op computes in."""
        s, z, top = self.input_scale, self.input_zero_point, self.input_quant_max
        q = _qd.quantize_per_tensor(x, s, z, U8_MIN, top, torch.uint8)
        return _to(_qd.dequantize_per_tensor(q, s, z, U8_MIN, top, torch.uint8), self.compute_dtype)

    def dequantized_weight(self, weight_int8: torch.Tensor | None = None) -> torch.Tensor:
        """The int8 weight (or `weight_int8`, a view of it) dequantized, in the dtype the op computes in."""
        w = self.weight_int8 if weight_int8 is None else weight_int8
        return _to(
            _qd.dequantize_per_channel(w, self.weight_scale, self.weight_zero_point, 0, I8_MIN, I8_MAX, torch.int8), self.compute_dtype
        )

    def output(self, out: torch.Tensor) -> torch.Tensor:
        """The op's result in the model's dtype."""
        return _to(out, self.out_dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, input_scale={self.input_scale:.4g}, input_zero_point={self.input_zero_point}"


class QuantizedLinear(QuantizedModule, nn.Linear):
    """A Linear with int8 weights and statically quantized int8 (uint8 with a zero point) inputs."""

    def __init__(self, linear: nn.Linear, stats: OpStats):
        self._quantize_from(linear, linear.weight, linear.bias, stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(F.linear(self.quantized_input(x), self.dequantized_weight(), self.bias))


class _QuantizedConv(QuantizedModule):
    """A convolution (grouped and depthwise ones included) with int8 weights and statically quantized inputs."""

    _convolution = staticmethod(F.conv2d)

    def __init__(self, conv: nn.Module, stats: OpStats):
        self._quantize_from(conv, conv.weight, conv.bias, stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, padding = self.quantized_input(x), self.padding
        if self.padding_mode != "zeros":
            x, padding = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode), 0
        return self.output(self._convolution(x, self.dequantized_weight(), self.bias, self.stride, padding, self.dilation, self.groups))


class QuantizedConv1d(_QuantizedConv, nn.Conv1d):
    """Computed as a Conv2d over a height of one (the same values): inductor's int8 lowering of a 1-d convolution
    computes its output's shape from the 4-d prepacked weight in some graphs (torch 2.13: Whisper's encoder fails to
    compile), while the 2-d one is the path pt2e's x86 flow takes for every convolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding = self.padding
        if self.padding_mode != "zeros":
            x, padding = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode), (0,)
        weight = self.dequantized_weight(self.weight_int8.unsqueeze(2))
        out = F.conv2d(
            self.quantized_input(x.unsqueeze(-2)),
            weight,
            self.bias,
            (1, *self.stride),
            padding if isinstance(padding, str) else (0, *padding),
            (1, *self.dilation),
            self.groups,
        )
        return self.output(out.squeeze(-2))


class QuantizedConv2d(_QuantizedConv, nn.Conv2d):
    _convolution = staticmethod(F.conv2d)


class QuantizedConv3d(_QuantizedConv, nn.Conv3d):
    _convolution = staticmethod(F.conv3d)


QUANTIZED_CONVOLUTIONS = {nn.Conv1d: QuantizedConv1d, nn.Conv2d: QuantizedConv2d, nn.Conv3d: QuantizedConv3d}


def quantized_conv(conv: nn.Module, stats: OpStats) -> _QuantizedConv:
    """The static int8 version of a Conv1d/2d/3d."""
    cls = next(q for base, q in QUANTIZED_CONVOLUTIONS.items() if isinstance(conv, base))
    return cls(conv, stats)
