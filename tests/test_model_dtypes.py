"""Models as people load them: a decoder in bf16 (or fp16) tunes from its own dtype, and its lowered ops keep it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from raytune_inc import tune
from raytune_inc.examples import decoder
from raytune_inc.history.files import read_history
from raytune_inc.pytorch.dtypes import model_dtype
from raytune_inc.pytorch.ops import discover_ops
from raytune_inc.pytorch.qparams import OpStats
from raytune_inc.pytorch.quantized import QuantizedLinear

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny():
    return decoder.llama_config("tiny")


def test_the_model_dtype_is_that_of_most_of_its_parameter_bytes(tiny):
    assert model_dtype(decoder.build_decoder(tiny)) == "fp32"
    model = decoder.build_decoder(tiny, dtype="bf16")
    assert model_dtype(model) == "bf16" and model.model.embed_tokens.weight.dtype == torch.bfloat16
    assert model_dtype(nn.Linear(4, 4).half()) == "fp16"
    with pytest.raises(ValueError, match="float64 is not a dtype a model is tuned from"):
        model_dtype(nn.Linear(4, 4).double())


def test_bf16_is_no_precision_of_a_bf16_model_s_ops_and_fp16_is(tiny):
    space = discover_ops(decoder.build_decoder(tiny, dtype="bf16"))
    linear = next(op for op in space if op.name.endswith("q_proj"))
    assert "bf16" not in linear.precisions and {"fp16", "int8", "int8_dynamic"} <= set(linear.precisions)
    assert "bf16" in next(op for op in discover_ops(decoder.build_decoder(tiny)) if op.name.endswith("q_proj")).precisions


def test_an_int8_linear_of_a_bf16_model_computes_in_bf16_as_pt2e_does():
    torch.manual_seed(0)
    linear = nn.Linear(16, 8).to(torch.bfloat16)
    x = torch.randn(3, 16).to(torch.bfloat16)
    w = linear.weight.detach().double()
    scale = (w.abs().amax(1) / 127).tolist()
    stats = OpStats(input_scale=float(x.double().abs().max() / 127), input_zero_point=128, weight_scale=scale)
    q = QuantizedLinear(linear, stats)
    out = q(x)
    assert out.dtype == torch.bfloat16 and q.compute_dtype == torch.bfloat16 and q.bias.dtype == torch.bfloat16
    # The reference in float64: the int8 weight and the uint8 input dequantized, the product, one bf16 rounding at the
    # end; the op rounds each operand to bf16 too, so it is within a few bf16 ulps of it.
    s = torch.tensor(scale, dtype=torch.float64)[:, None]
    w_q = torch.clamp(torch.round(w / s), -128, 127) * s
    x_s = stats.input_scale
    x_q = (torch.clamp(torch.round(x.double() / x_s) + 128, 0, 255) - 128) * x_s
    reference = x_q @ w_q.T + linear.bias.double()
    torch.testing.assert_close(out.double(), reference, rtol=2e-2, atol=2e-2 * float(reference.abs().max()))
    # A scale off by 2x is far outside that.
    q.weight_scale.mul_(2)
    assert (q(x).double() - reference).abs().max() > 0.2 * reference.abs().max()


def test_a_bf16_decoder_tunes_from_its_own_dtype(tiny, tmp_path):
    model = decoder.build_decoder(tiny, dtype="bf16")
    ids = decoder.token_batches(tiny.vocab_size, 2, 32, seed=0)
    metric = decoder.NextTokenAgreement(model, ids)
    calib = decoder.calibration_batches(decoder.token_batches(tiny.vocab_size, 2, 32, seed=1))
    res = tune(
        model,
        metric,
        calib,
        precisions=("int8",),
        max_trials=4,
        workers=0,
        checkpoint=tmp_path / "run",
        example_inputs=calib[0],
    )
    assert res.baseline == 1.0 and res.model_dtype == "bf16"
    assert res.config is not None and any(p != "fp32" for p in res.config.values())
    # The tuned model takes and returns the model's dtype; its unchanged ops stay bf16, its int8 ones compute in bf16.
    logits = res.model(**calib[0]).logits
    assert logits.dtype == torch.bfloat16
    lowered = [m for m in res.model.modules() if isinstance(m, QuantizedLinear)]
    assert lowered and all(m.out_dtype == m.compute_dtype == torch.bfloat16 for m in lowered)
    unchanged = [name for name, p in res.config.items() if p == "fp32" and dict(res.model.named_modules())[name]._parameters]
    assert unchanged and all(p.dtype == torch.bfloat16 for name in unchanged for p in res.model.get_submodule(name).parameters())
    assert metric(res.model) == res.accuracy
    # As deployed: compiled, called several times, the same every call and close to the eager model (bf16's own
    # rounding: inductor fuses bf16 ops differently, so a top-1 token near a tie may flip; the result reports it).
    check = res.deployed.check
    assert res.deployed.error is None and check.calls >= 3 and check.repeat_difference == 0 and check.eager_difference < 0.05
    assert res.deployed.compiled is not None and res.deployed.compiled > 0.9
    # The history says which dtype "fp32" names: the run's fingerprint has it (a resume needs the same).
    assert read_history(tmp_path / "run").fingerprint["model_dtype"] == "bf16"
