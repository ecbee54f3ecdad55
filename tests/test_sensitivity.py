"""The sensitivity measurement: each op alone, lowered, on its own captured inputs; a wide Linear on a sample of its
output channels, which gives the same outputs on those channels as the whole lowered op and nearly the same
sensitivity."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from architectures import _quiet, _tokens
from torch import nn

from raytune_inc.pytorch.calibration import calibrate
from raytune_inc.pytorch.lowering import lowered_op
from raytune_inc.pytorch.ops import discover_ops, reachable
from raytune_inc.pytorch.precisions import needs_calibration
from raytune_inc.pytorch.sensitivity import channel_sample, measure_sensitivity, sampled_op

PRECISIONS = ("int8_dynamic", "int8", "bf16")


def calibrated(model: nn.Module, calib: list, precisions=PRECISIONS):
    space = discover_ops(model, None, None)
    ops = [op.name for op in space if needs_calibration(model.get_submodule(op.name), precisions)]
    calibration = calibrate(model, calib, ops, space.names, precisions)
    return reachable(model, space, calibration, ops), calibration


def gpt2(width: int = 64):
    import transformers as T

    config = T.GPT2Config(vocab_size=300, n_embd=width, n_layer=2, n_head=2, n_positions=64, bos_token_id=0, eos_token_id=0)
    return _quiet(lambda: T.GPT2LMHeadModel(config))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_a_sampled_op_computes_the_whole_lowered_op_s_outputs_on_its_channels(precision):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(48, 600), nn.ReLU())
    with torch.no_grad():  # channels of very different sizes, so a per-tensor weight scale would show
        model[0].weight.mul_(torch.logspace(-2, 1, 600).unsqueeze(1))
    calib = [torch.randn(4, 10, 48) for _ in range(2)]
    space, calibration = calibrated(model, calib)
    index = channel_sample(model[0], 64)
    assert index is not None and len(index) == 64 and index[0] == 0 and index[-1] == 599
    x = torch.randn(4, 10, 48) * 3  # beyond the calibrated range too: the same clamping on both
    with torch.no_grad():
        whole = lowered_op(model, "0", precision, calibration)(x)
        sampled = sampled_op(model[0], precision, calibration.stats.get("0"), index)
        assert sampled.weight.shape == (64, 48)
        torch.testing.assert_close(sampled(x), whole.index_select(-1, index), rtol=1e-5, atol=1e-5)


def test_a_transformers_conv1d_is_sampled_as_the_linear_it_is():
    model = gpt2()
    conv = model.transformer.h[0].mlp.c_fc  # Conv1D, weight (64, 256)
    calib, _ = _tokens(2, vocab=300)
    space, calibration = calibrated(model, calib)
    index = channel_sample(conv, 32)
    x = torch.randn(2, 5, 64)
    with torch.no_grad():
        for precision in PRECISIONS:
            whole = lowered_op(model, "transformer.h.0.mlp.c_fc", precision, calibration)(x)
            sampled = sampled_op(conv, precision, calibration.stats.get("transformer.h.0.mlp.c_fc"), index)
            torch.testing.assert_close(sampled(x), whole.index_select(-1, index), rtol=1e-5, atol=1e-5)


def test_only_plain_wide_linears_are_sampled():
    assert channel_sample(nn.Linear(8, 300), 256) is not None
    assert channel_sample(nn.Linear(8, 256), 256) is None  # no wider than the sample
    assert channel_sample(nn.Linear(8, 300), None) is None

    class Scaled(nn.Linear):  # a subclass may compute something else: measured whole
        def forward(self, x):
            return super().forward(x) * 2

    assert channel_sample(Scaled(8, 300), 256) is None
    hooked = nn.Linear(8, 300)
    hooked.register_forward_hook(lambda m, i, o: o * 2)  # a user's hook changes what it returns: measured whole
    assert channel_sample(hooked, 256) is None
    assert channel_sample(nn.Conv2d(3, 300, 3), 256) is None


def test_the_sampled_sensitivity_is_the_whole_one_within_a_few_percent_on_gpt2():
    model = gpt2(width=128)
    calib, _ = _tokens(3, vocab=300, length=16)
    space, calibration = calibrated(model, calib)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = measure_sensitivity(model, space, calibration, calib, PRECISIONS, channels=None)
        sampled = measure_sensitivity(model, space, calibration, calib, PRECISIONS, channels=64)
    assert sampled.keys() == whole.keys()
    wide = {name for name in space.names if channel_sample(model.get_submodule(name), 64) is not None}
    assert {"lm_head", "transformer.h.0.attn.c_attn", "transformer.h.1.mlp.c_fc"} <= wide
    for key, value in whole.items():
        if key[0] in wide:
            assert math.isclose(sampled[key], value, rel_tol=0.35), (key, sampled[key], value)
        else:
            assert sampled[key] == value  # measured whole: the same numbers
    # The order the prior sees: any two ops whose whole sensitivities differ by half or more keep their order.
    for (a, va), (b, vb) in ((x, y) for x in whole.items() for y in whole.items()):
        if a[1] == b[1] and va > 1.5 * vb:
            assert sampled[a] > sampled[b], (a, b)
