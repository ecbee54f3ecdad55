"""`tune()` on architectures from transformers' model classes (tiny configs, random weights), and the model kinds
they hold: BatchNorm, depthwise convolutions, GPT-2's transposed-weight Conv1D, tied weights, Embedding."""

from __future__ import annotations

import collections
import copy

import pytest
import torch
from architectures import ARCHITECTURES, Case, OutputFidelity, gpt2, main_output, mobilenet_v2, resnet
from helpers import same_trials
from torch import nn

from raytune_inc import AccuracyCriterion, tune
from raytune_inc.examples.digits import DigitsCNN
from raytune_inc.pytorch.calibration import calibrate
from raytune_inc.pytorch.deployment import EAGER_TOLERANCE
from raytune_inc.pytorch.digest import model_digest
from raytune_inc.pytorch.lowering import apply_config
from raytune_inc.pytorch.modules import fold_batchnorm
from raytune_inc.pytorch.ops import discover_ops
from raytune_inc.pytorch.quantized import QuantizedLinear

INT8_KINDS = ("Linear", "Conv1d", "Conv2d", "Conv1D", "Embedding")


def op_counts(model: nn.Module) -> dict[str, int]:
    return dict(collections.Counter(op.type for op in discover_ops(model)))


def _case(name: str) -> Case:
    if name == "digits_cnn":
        torch.manual_seed(0)
        x = torch.rand(8, 1, 8, 8)
        return Case(DigitsCNN().eval(), [{"x": torch.rand(16, 1, 8, 8)}], {"x": x}, {"Conv2d": 2, "Linear": 2, "LayerNorm": 1})
    return ARCHITECTURES[name]()


@pytest.mark.parametrize("name", [*ARCHITECTURES, "digits_cnn"])
def test_each_architecture_tunes_to_bf16_and_int8(name):
    case = _case(name)
    assert op_counts(case.model) == case.ops
    eval_fn = OutputFidelity(case.model, case.inputs)
    res = tune(case.model, eval_fn, case.calib, precisions=("bf16", "int8"), accuracy=AccuracyCriterion(0.02), workers=0)
    assert [t for t in res.trials if t.error] == []
    # Every kind that has an int8 kernel was tried at int8 as a whole type.
    int8_types = {t for t in case.ops if t in INT8_KINDS}
    tried = {
        case.model.get_submodule(n).__class__.__name__
        for t in res.trials
        if t.stage == "int8 type-wise"
        for n, p in t.config.items()
        if p == "int8"
    }
    assert tried == int8_types
    assert res.config is not None and "int8" in res.config.values()
    assert res.accuracy == eval_fn(res.model)  # the model returned is the one measured
    with torch.no_grad():
        out = main_output(res.model(**case.inputs))
    assert torch.isfinite(out).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", [*ARCHITECTURES, "digits_cnn"])
def test_each_tuned_architecture_compiled_is_right_on_every_call_and_leaves_its_inputs_alone(name):
    """As deployed: `res.compile()` (checked on the first calibration batch), then called three times on the same
    tensors: the same outputs every call, the inputs as they were, the eager tuned model's outputs within tolerance."""
    case = _case(name)
    res = tune(case.model, OutputFidelity(case.model, case.inputs), case.calib, precisions=("bf16", "int8"), workers=0, sensitivity=False)
    assert res.config is not None and "int8" in res.config.values()
    compiled = res.compile()
    assert len(compiled.checks) == 1  # done before it was handed over
    batch = case.calib[0]
    pristine = {k: v.clone() for k, v in batch.items()}
    with torch.no_grad():
        eager = main_output(res.model(**batch))
        outs = [main_output(compiled(**batch)) for _ in range(3)]
    assert all(torch.equal(batch[k], pristine[k]) for k in batch)
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    error = float((outs[0] - eager).norm() / eager.norm())
    assert error <= EAGER_TOLERANCE, error


@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("build", [gpt2, resnet])
def test_two_architectures_commit_the_same_trials_on_two_evaluators(build):
    case = build()
    eval_fn = OutputFidelity(case.model, case.inputs)
    kwargs = dict(precisions=("bf16", "int8"), accuracy=AccuracyCriterion(0.0002, criterion="absolute"))
    seq = tune(case.model, eval_fn, case.calib, workers=0, **kwargs)
    par = tune(case.model, eval_fn, case.calib, workers=2, **kwargs)
    assert len(seq.trials) > 3  # a tolerance tight enough for some op-wise trials
    assert same_trials(par, seq)
    assert par.config == seq.config and eval_fn(par.model) == par.accuracy


def test_batchnorm_stays_fp32_and_its_network_tunes():
    case = resnet()
    names = {op.name for op in discover_ops(case.model)}
    norms = [n for n, m in case.model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 6 and not names & set(norms)
    calib = calibrate(case.model, case.calib, names)
    # Each BatchNorm follows a convolution: at int8 the convolution absorbs it, as pt2e folds it.
    assert sorted(calib.folded.values()) == sorted(norms)
    lowered = apply_config(case.model, dict.fromkeys(names, "int8"), calib)
    assert all(isinstance(lowered.get_submodule(n), nn.Identity) for n in norms)
    # A convolution left at FP32 keeps its BatchNorm, at FP32.
    conv = next(c for c, n in calib.folded.items())
    partly = apply_config(case.model, {**dict.fromkeys(names, "int8"), conv: "fp32"}, calib)
    bn = partly.get_submodule(calib.folded[conv])
    assert isinstance(bn, nn.BatchNorm2d) and torch.equal(bn.running_var, case.model.get_submodule(calib.folded[conv]).running_var)


def test_depthwise_convolutions_get_per_channel_int8_weights():
    case = mobilenet_v2()
    depthwise = [n for n, m in case.model.named_modules() if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels]
    assert len(depthwise) == 17
    name = depthwise[3]
    calib = calibrate(case.model, case.calib, [name])
    conv = apply_config(case.model, {name: "int8"}, calib).get_submodule(name)
    assert conv.groups == conv.in_channels and isinstance(conv, nn.Conv2d)  # still a depthwise Conv2d, to code that asks
    # Its BatchNorm is folded in first (in FP32), then each output channel gets its own int8 scale.
    folded = fold_batchnorm(case.model.get_submodule(name), case.model.get_submodule(calib.folded[name])).weight
    for channel, ref in zip(conv.weight, folded, strict=True):
        step = max(ref.abs().max() / 127.5, 2**-12)  # X86InductorQuantizer's weight observer keeps a scale >= 2^-12
        assert (channel - ref).abs().max() <= step / 2 + 1e-6


def test_gpt2_projections_go_to_int8_as_linears_with_transposed_weights():
    case = gpt2()
    model = case.model
    space = discover_ops(model)
    conv1d = [op.name for op in space if op.type == "Conv1D"]
    assert len(conv1d) == 8 and all("int8" in op.precisions for op in space if op.type == "Conv1D")
    calib = calibrate(model, case.calib, space.names)
    assert set(conv1d) <= set(calib.stats)  # their activations are calibrated like a Linear's
    lowered = apply_config(model, dict.fromkeys(conv1d, "int8"), calib)
    for name in conv1d:
        module = lowered.get_submodule(name)
        assert isinstance(module, QuantizedLinear) and module.weight_int8.dtype == torch.int8
        assert module.weight.shape == model.get_submodule(name).weight.shape[::-1]
    # The same layer, as a Linear on the transposed weight, computes what Conv1D computes.
    from raytune_inc.pytorch.modules import as_linear

    c_fc = model.transformer.h[0].mlp.c_fc
    x = torch.randn(3, 5, 32)
    torch.testing.assert_close(as_linear(c_fc)(x), c_fc(x))
    fidelity = OutputFidelity(model, case.inputs)
    assert 0.99 < fidelity(lowered) < 1.0


def test_lowering_a_tied_weight_leaves_the_other_module_as_it_was():
    case = gpt2()
    model = case.model
    wte = model.transformer.wte.weight.detach().clone()
    calib = calibrate(model, case.calib, discover_ops(model).names)
    # lm_head at int8: the embedding keeps its FP32 weight.
    lowered = apply_config(model, {"lm_head": "int8"}, calib)
    assert isinstance(lowered.lm_head, QuantizedLinear)
    assert type(lowered.transformer.wte.weight) is nn.Parameter and torch.equal(lowered.transformer.wte.weight, wte)
    # The embedding at bf16: the head keeps its FP32 weight.
    lowered = apply_config(model, {"transformer.wte": "bf16"}, calib)
    assert lowered.transformer.wte.weight.dtype == torch.bfloat16
    assert lowered.lm_head.weight.dtype == torch.float32 and torch.equal(lowered.lm_head.weight, wte)
    # The FP32 model is untouched and still tied.
    assert model.lm_head.weight is model.transformer.wte.weight and torch.equal(model.lm_head.weight, wte)
    assert model.lm_head.weight.dtype == torch.float32


def test_embeddings_take_int8_weights_within_half_a_step_per_row():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(50, 16), nn.Linear(16, 4)).eval()
    space = discover_ops(model)
    assert [(op.name, op.precisions) for op in space] == [("0", ("bf16", "fp16", "int8")), ("1", ("bf16", "fp16", "int8_dynamic", "int8"))]
    lowered = apply_config(model, {"0": "int8", "1": "fp32"}, calibrate(model, [torch.randint(0, 50, (4, 3))], space.names))
    ids = torch.arange(50)
    out, ref = lowered[0](ids), model[0].weight.detach()
    assert out.dtype == torch.float32
    step = ref.abs().amax(dim=1, keepdim=True) / 127.5  # symmetric int8 per row: [-128, 127] spans 2 * absmax
    assert ((out - ref).abs() <= step / 2 + 1e-6).all()
    assert (out - ref).abs().max() > 0  # it was lowered


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_digest_takes_every_kind_of_tensor():
    """The resume fingerprint hashes the model's state_dict. It used to view each tensor as bytes directly, which
    fails for a 0-dim tensor wider than a byte: BatchNorm's `num_batches_tracked` made every BatchNorm network
    crash before its first trial. Every kind of tensor must hash, and a change of any value must change the hash."""

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(3)  # num_batches_tracked: 0-dim int64
            self.register_buffer("flag", torch.tensor([True, False]))
            self.register_buffer("complex", torch.tensor([1 + 2j, 3 - 1j]))
            self.register_buffer("strided", torch.arange(12.0).reshape(3, 4).t())  # not contiguous
            self.register_buffer("scalar", torch.tensor(1.5, dtype=torch.float64))
            self.register_buffer("brain", torch.ones(2, dtype=torch.bfloat16))
            self.register_buffer("quantized", torch.quantize_per_tensor(torch.tensor([0.5, 1.0]), 0.1, 0, torch.qint8))
            self.register_buffer("sparse", torch.eye(3).to_sparse())

    model = Holder()
    digest = model_digest(model)
    assert digest == model_digest(copy.deepcopy(model))
    changes = {
        "bn.num_batches_tracked": lambda m: m.bn.num_batches_tracked.add_(1),
        "flag": lambda m: m.flag.logical_not_(),
        "complex": lambda m: m.complex.mul_(1j),
        "strided": lambda m: m.strided.add_(1),
        "scalar": lambda m: m.scalar.add_(1),
        "brain": lambda m: m.brain.add_(1),
        "quantized": lambda m: setattr(m, "quantized", torch.quantize_per_tensor(torch.tensor([0.5, 1.1]), 0.1, 0, torch.qint8)),
        "sparse": lambda m: setattr(m, "sparse", (2 * torch.eye(3)).to_sparse()),
    }
    for name, change in changes.items():
        other = copy.deepcopy(model)
        change(other)
        assert model_digest(other) != digest, name
    # A torchao int8 weight (a tensor subclass) hashes by its int8 data and scales.
    case = gpt2()
    calib = calibrate(case.model, case.calib, ["lm_head"])
    lowered = apply_config(case.model, {"lm_head": "int8"}, calib)
    assert model_digest(lowered) != model_digest(case.model)
    assert model_digest(resnet().model)  # BatchNorm networks hash


class _Forward(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)


def _fidelity(model):
    return OutputFidelity(model, {"x": torch.randn(3, 4)})


def test_models_that_are_not_plain_fp32_modules_are_refused_before_any_ray_work(monkeypatch):
    import raytune_inc.ray_executor as driver

    monkeypatch.setattr(driver, "ray_session", lambda *args, **kwargs: pytest.fail("Ray was started"))
    model = _Forward().eval()
    calib = [{"x": torch.randn(2, 4)}]
    with pytest.raises(TypeError, match=r"TorchScript module .* pass the Python nn.Module"):
        tune(torch.jit.script(model), _fidelity(model), calib, workers=2)
    with pytest.raises(TypeError, match=r"TorchScript module"):
        tune(torch.jit.trace(model, calib[0]["x"]), _fidelity(model), calib, workers=2)
    with pytest.raises(ValueError, match=r"torch.float64 parameter \('fc.weight'\).*float32, bfloat16 or float16.*model.float\(\)"):
        tune(copy.deepcopy(model).double(), _fidelity(model), calib, workers=2)
    # A bf16 model is tuned from its own dtype: the calibration data it rejects (float32 inputs) names it.
    with pytest.raises(ValueError, match=r"the bf16 model rejects the calibration data: RuntimeError"):
        tune(copy.deepcopy(model).to(torch.bfloat16), _fidelity(model), calib, workers=2)
    with torch.device("meta"):
        meta = _Forward()
    with pytest.raises(ValueError, match=r"meta device \('fc.weight'\).*load the weights first"):
        tune(meta, _fidelity(model), calib, workers=2)
    with pytest.raises(ValueError, match=r"rejects the calibration data: RuntimeError"):
        tune(model, _fidelity(model), [{"x": torch.randn(2, 5)}], workers=2)
    with pytest.raises(ValueError, match=r"rejects the calibration data: TypeError"):
        tune(model, _fidelity(model), [{"y": torch.randn(2, 4)}], workers=2)
