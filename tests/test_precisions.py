"""Each precision handler's numerics against a reference computed here with plain torch arithmetic, within the error its
format allows; and the registry's rules (which module takes which precision)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from raytune_inc.pytorch.calibration import calibrate, weight_scales
from raytune_inc.pytorch.lowering import apply_config
from raytune_inc.pytorch.ops import discover_ops
from raytune_inc.pytorch.precisions import describe, lower, precisions_of
from raytune_inc.pytorch.qparams import OpStats
from raytune_inc.pytorch.quantized import QuantizedConv2d, QuantizedLinear

# Rounding multiplies by the inverse scale, as the quantize ops define it (it decides the exact halves at the ends).


def fake_quant_activation(x: torch.Tensor, scale: float, zero_point: int, quant_max: int = 255) -> torch.Tensor:
    """uint8 with a zero point, per tensor (7 bits: quant_max 127)."""
    return (torch.clamp(torch.round(x * (1.0 / scale)) + zero_point, 0, quant_max) - zero_point) * scale


def fake_quant_weight(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 symmetric per output channel, as X86InductorQuantizer's weight observer chooses: scale absmax / 127.5, >= 2^-12."""
    scale = torch.clamp(w.abs().flatten(1).amax(1) / 127.5, min=2**-12).reshape(-1, *[1] * (w.dim() - 1))
    return torch.clamp(torch.round(w * (1.0 / scale)), -128, 127) * scale, scale


@pytest.mark.parametrize("bits", [8, 7])
def test_static_activation_scales_span_the_calibrated_range_with_a_zero_point(bits, monkeypatch):
    monkeypatch.setenv("RAYTUNE_INC_REDUCE_RANGE", "1" if bits == 7 else "0")
    top = 2**bits - 1
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 4))
    # uniform on [-1, 3]: uint8 spans 4 / 255 per step, with zero at step 64 (7 bits: 4 / 127, zero at step 32)
    stats = calibrate(model, [torch.rand(64, 16) * 4 - 1 for _ in range(4)], ["0"]).stats["0"]
    assert stats.input_quant_max == top
    assert 4 / top * 0.97 <= stats.input_scale <= 4 / top * 1.01
    assert stats.input_zero_point in {top // 4 - 1, top // 4, top // 4 + 1, top // 4 + 2}
    # all positive on [1, 4]: the range includes 0, so zero sits at step 0 and the steps span [0, 4]
    stats = calibrate(model, [torch.rand(64, 16) * 3 + 1 for _ in range(4)], ["0"]).stats["0"]
    assert stats.input_zero_point == 0 and 4 / top * 0.97 <= stats.input_scale <= 4 / top * 1.01


def test_activations_take_7_bits_on_an_x86_cpu_without_vnni(monkeypatch):
    from raytune_inc.pytorch import calibration

    monkeypatch.delenv("RAYTUNE_INC_REDUCE_RANGE", raising=False)
    for flags, reduced in [({"avx2", "fma"}, True), ({"avx2", "avx512f", "avx512_vnni"}, False), ({"avx2", "avx_vnni"}, False)]:
        monkeypatch.setattr(calibration, "_cpu_flags", lambda flags=flags: flags)
        assert calibration.reduce_range() is reduced
    monkeypatch.setattr(calibration, "_cpu_flags", lambda: set())  # not x86 (or no /proc/cpuinfo)
    assert calibration.reduce_range() is False


@pytest.mark.parametrize("quant_max", [255, 127])
def test_static_int8_linear_computes_its_reference_and_stays_within_its_quantization_error(quant_max):
    torch.manual_seed(1)
    linear = nn.Linear(24, 6)
    x = torch.rand(10, 24) * 4.4 - 1.2  # a little beyond the calibrated [-1, 3]: clamped at both ends
    stats = OpStats(4 / quant_max, (quant_max + 1) // 4, weight_scales(linear.weight), quant_max)
    q = lower(copy.deepcopy(linear), "int8", stats)
    assert isinstance(q, QuantizedLinear)
    wq, w_scale = fake_quant_weight(linear.weight.detach())
    xq = fake_quant_activation(x, stats.input_scale, stats.input_zero_point, quant_max)
    with torch.no_grad():
        out, ref = q(x), xq @ wq.T + linear.bias
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    x = x.clamp(-1, 2.99)  # within the range the qparams span
    with torch.no_grad():
        out, fp32 = q(x), linear(x)
    # Against FP32: each product is off by at most half a step of x times |w| plus half a step of w times |x| (plus both).
    bound = (
        x.abs().sum(1, keepdim=True) * (w_scale.T / 2)
        + (stats.input_scale / 2) * linear.weight.abs().sum(1)
        + x.shape[1] * stats.input_scale * w_scale.T / 4
    )
    assert ((out - fp32).abs() <= bound + 1e-5).all()
    assert (out - fp32).abs().max() > 0


def test_static_int8_conv_folds_its_batchnorm_then_computes_its_reference():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()).eval()
    model[1].running_mean.normal_(0, 0.2)
    model[1].running_var.uniform_(0.5, 2.0)
    model[1].weight.data.uniform_(0.5, 1.5)
    batches = [torch.randn(4, 3, 8, 8) for _ in range(3)]
    calibration = calibrate(model, batches, ["0"])
    assert calibration.folded == {"0": "1"}
    tuned = apply_config(model, {"0": "int8"}, calibration)
    assert isinstance(tuned[0], QuantizedConv2d) and isinstance(tuned[1], nn.Identity)
    fused = torch.nn.utils.fusion.fuse_conv_bn_eval(model[0], model[1])
    wq, _ = fake_quant_weight(fused.weight.detach())
    s = calibration.stats["0"]
    x = batches[0]
    with torch.no_grad():
        ref = torch.relu(nn.functional.conv2d(fake_quant_activation(x, s.input_scale, s.input_zero_point), wq, fused.bias, padding=1))
        torch.testing.assert_close(tuned(x), ref, atol=1e-5, rtol=1e-5)


def test_a_convolution_whose_output_is_read_twice_keeps_its_batchnorm():
    class Branches(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y  # y feeds the BatchNorm and the sum: folding would change the sum

    model = Branches().eval()
    model.bn.running_var.fill_(4.0)
    calibration = calibrate(model, [torch.randn(2, 3, 5, 5)], ["conv"])
    assert calibration.folded == {}
    assert isinstance(apply_config(model, {"conv": "int8"}, calibration).bn, nn.BatchNorm2d)


def test_dynamic_int8_linear_quantizes_each_token_on_the_fly():
    torch.manual_seed(3)
    linear = nn.Linear(32, 8)
    x = torch.randn(2, 5, 32) * torch.tensor([0.1, 1.0, 10.0, 1.0, 0.5]).reshape(1, 5, 1)  # tokens of very different ranges
    q = lower(copy.deepcopy(linear), "int8_dynamic", None)
    assert type(q.weight).__name__ == "Int8Tensor"

    def per_row(t):  # symmetric int8 with a scale per row: absmax / 127.5
        scale = t.abs().amax(-1, keepdim=True) / 127.5
        return torch.clamp(torch.round(t / scale), -128, 127) * scale

    with torch.no_grad():
        torch.testing.assert_close(q(x), per_row(x) @ per_row(linear.weight).T + linear.bias, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("precision", "dtype", "unit"), [("bf16", torch.bfloat16, 2**-8), ("fp16", torch.float16, 2**-11)])
def test_bf16_and_fp16_stay_within_their_rounding_error(precision, dtype, unit):
    torch.manual_seed(4)
    linear = nn.Linear(64, 16)
    x = torch.randn(8, 64)
    q = lower(copy.deepcopy(linear), precision, None)
    assert q.weight.dtype == dtype
    with torch.no_grad():
        out, fp32 = q(x), linear(x)
        scale = x.abs() @ linear.weight.abs().T + linear.bias.abs()
    assert out.dtype == torch.float32  # cast back at the boundary
    assert ((out - fp32).abs() <= 4 * unit * scale).all()  # inputs, weights, the sum and the output each round once
    assert (out - fp32).abs().max() > 0


def test_the_registry_says_which_module_takes_which_precision():
    assert precisions_of(nn.Linear(2, 2)) == ("bf16", "fp16", "int8_dynamic", "int8")
    assert precisions_of(nn.Conv2d(2, 2, 1)) == ("bf16", "fp16", "int8")  # no dynamic int8 convolution in torchao
    assert precisions_of(nn.LayerNorm(2)) == ("bf16", "fp16")  # int8_dynamic asked of a LayerNorm is left out
    assert precisions_of(nn.Embedding(4, 2)) == ("bf16", "fp16", "int8")
    assert precisions_of(nn.ReLU()) == ()
    assert ("int8", "Embedding (weights only)") in describe()
    space = discover_ops(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)), op_type_dict={".*": ("int8_dynamic",)})
    assert [(op.name, op.precisions) for op in space] == [("0", ("int8_dynamic",))]
    with pytest.raises(ValueError, match=r"unknown precision 'int4'; known precisions are fp32, bf16, fp16, int8_dynamic, int8"):
        from raytune_inc import tune

        tune(nn.Sequential(nn.Linear(2, 2)), lambda m: 1.0, [torch.randn(1, 2)], precisions=("int4",), workers=0)


@pytest.mark.slow
def test_compiled_int8_linear_is_its_eager_self_over_the_whole_calibrated_range():
    """oneDNN's int8 kernels on an x86 CPU without VNNI add pairs of uint8 x int8 products in int16, which saturates
    on 8-bit inputs (9% off on such a host); with the activation range calibration chooses for the host it runs on
    (7 bits there), the compiled op is the eager one up to float rounding."""
    from raytune_inc import compile_model

    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(512, 256)).eval()
    batches = [torch.rand(64, 512) * 4 for _ in range(2)]  # non-negative, every input step used
    tuned = apply_config(model, {"0": "int8"}, calibrate(model, batches, ["0"]))
    torch._dynamo.reset()
    with torch.no_grad():
        out, eager = compile_model(tuned)(batches[0]), tuned(batches[0])
    assert float((out - eager).norm() / eager.norm()) < 1e-3


def test_compiled_int8_runs_on_onednn_int8_kernels():
    from torch._dynamo.utils import counters

    from raytune_inc import compile_model

    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 8 * 8, 10)).eval()
    batches = [torch.randn(8, 3, 8, 8) for _ in range(2)]
    calibration = calibrate(model, batches, ["0", "4"])
    tuned = apply_config(model, {"0": "int8", "4": "int8"}, calibration)
    torch._dynamo.reset()
    counters.clear()
    compiled = compile_model(tuned)
    x = batches[0]
    with torch.no_grad():
        out, eager = compiled(x), tuned(x)
    lowered = {k: v for k, v in counters["inductor"].items() if k.endswith("_lower_count")}
    assert any(k.startswith("qconv") for k in lowered) and any(k.startswith("qlinear") for k in lowered), lowered
    # oneDNN computes in int32 and requantizes: the same result as the reference, up to rounding.
    assert (out - eager).abs().max() < 0.05 * eager.abs().max()
