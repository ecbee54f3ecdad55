"""The PyTorch backend: op discovery, configs applied with torchao, calibration once, tune()."""

from __future__ import annotations

import threading
import time

import pyarrow.compute as pc
import pytest
import torch
from helpers import same_trials
from torch import nn

from raytune_inc import TuningError, load_history, tune
from raytune_inc.pytorch.calibration import calibrate
from raytune_inc.pytorch.lowering import apply_config
from raytune_inc.pytorch.model_evaluation import ModelEvaluation
from raytune_inc.pytorch.ops import discover_ops
from raytune_inc.pytorch.quantized import QuantizedConv2d, QuantizedLinear


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(8 * 6 * 6, 32), nn.LayerNorm(32), nn.ReLU())
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.body(torch.relu(self.conv(x))))


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return Net().eval()


@pytest.fixture(scope="module")
def data():
    torch.manual_seed(1)
    return torch.randn(128, 1, 8, 8)


def agreement(model_ref, x):
    ref = model_ref(x).argmax(1)

    def eval_fn(model):
        with torch.no_grad():
            return float((model(x).argmax(1) == ref).float().mean())

    return eval_fn


def test_tune_is_the_package_s_model_level_entry_point():
    import raytune_inc
    from raytune_inc.model import result, tuning

    assert raytune_inc.tune is tuning.tune and raytune_inc.ModelTuneResult is result.ModelTuneResult


def test_ops_are_found_in_model_order_with_their_precisions(net):
    space = discover_ops(net)
    assert [(op.name, op.type, op.precisions) for op in space] == [
        ("conv", "Conv2d", ("bf16", "fp16", "int8")),  # no dynamic int8 convolution in torchao
        ("body.1", "Linear", ("bf16", "fp16", "int8_dynamic", "int8")),
        ("body.2", "LayerNorm", ("bf16", "fp16")),  # no int8 of any kind for a LayerNorm
        ("head", "Linear", ("bf16", "fp16", "int8_dynamic", "int8")),
    ]


def test_ops_can_be_restricted_by_name_and_type(net):
    space = discover_ops(net, op_name_dict={"head": ("fp32",)}, op_type_dict={"Conv.*": ("int8",)})
    assert [(op.name, op.precisions) for op in space] == [
        ("conv", ("int8",)),
        ("body.1", ("bf16", "fp16", "int8_dynamic", "int8")),
        ("body.2", ("bf16", "fp16")),
    ]


def test_an_invalid_regex_in_op_name_dict_or_op_type_dict_names_the_argument_the_key_and_the_fix(net, data):
    with pytest.raises(ValueError, match=r"op_name_dict key '\(conv' is not a valid regex \(missing \), unterminated .*re\.escape"):
        tune(net, agreement(net, data), [data[:4]], op_name_dict={"(conv": ("int8",)}, workers=0)
    with pytest.raises(ValueError, match=r"op_type_dict key 'Linear\[' is not a valid regex \(unterminated character set"):
        tune(net, agreement(net, data), [data[:4]], op_type_dict={"Linear[": ("bf16",)}, workers=0)


def test_bad_models_are_refused(net):
    with pytest.raises(TypeError, match="torch.nn.Module"):
        discover_ops(object())
    with pytest.raises(ValueError, match="no tunable op in ReLU"):
        discover_ops(nn.ReLU())
    with pytest.raises(ValueError, match="left by op_name_dict"):
        discover_ops(net, op_name_dict={".*": ("fp32",)})


def test_a_config_is_applied_to_a_copy(net, data):
    calibration = calibrate(net, [data[:32]], discover_ops(net).names)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model = apply_config(net, {"conv": "int8", "body.1": "int8", "body.2": "bf16", "head": "fp16"}, calibration)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items()), "the FP32 model was changed"
    assert isinstance(model.conv, QuantizedConv2d) and model.conv.raytune_precision == "int8"
    assert isinstance(model.body[1], QuantizedLinear) and model.body[1].weight_int8.dtype == torch.int8
    assert model.body[2].weight.dtype == torch.bfloat16 and model.body[2].raytune_precision == "bf16"
    assert model.head.weight.dtype == torch.float16
    assert [n for n, _ in model.named_modules()] == [n for n, _ in net.named_modules()]  # names as in the FP32 model
    dynamic = apply_config(net, {"head": "int8_dynamic"}, calibration).head
    assert type(dynamic.weight).__name__ == "Int8Tensor"  # torchao's int8 tensor subclass
    with torch.no_grad():
        out, ref = model(data), net(data)
    assert out.dtype == torch.float32
    assert 0 < (out - ref).abs().max() < 0.1 * ref.abs().max()  # lowered, and still close


def test_int8_conv_weights_have_at_most_255_levels_per_channel(net, data):
    calibration = calibrate(net, [data], ["conv"])
    conv = apply_config(net, {"conv": "int8"}, calibration).conv
    weight = conv.dequantized_weight()
    for channel, original in zip(weight, net.conv.weight, strict=True):
        levels = torch.unique(channel)
        step = original.abs().max() / 127.5  # symmetric int8: [-128, 127] spans 2 * absmax
        assert len(levels) <= 256
        assert torch.allclose(levels / step, torch.round(levels / step), atol=1e-3)
        assert (channel - original).abs().max() <= step / 2 + 1e-6


def test_calibration_runs_once_in_the_driver_and_never_in_an_evaluation(net, data):
    calls = []

    class Counting(list):
        def __iter__(self):
            calls.append(threading.get_ident())
            return super().__iter__()

    res = tune(net, agreement(net, data), Counting([data[:32]]), precisions=("int8", "bf16"), workers=0, sensitivity=False)
    assert len(res.trials) > 1
    assert len(calls) == 2  # its first batch checked, then the calibration: once, whatever the number of trials
    evaluation = ModelEvaluation(net, agreement(net, data), res.calibration)  # what goes to the evaluators: no data
    for precision in ("int8", "bf16", "int8"):
        evaluation({"conv": precision, "body.1": "fp32", "body.2": "fp32", "head": precision})
    assert len(calls) == 2


def test_calibration_batches_of_input_label_pairs_are_named_with_the_fix(net, data):
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(data, torch.arange(len(data)) % 10), batch_size=32)  # batches [x, y], as for training
    pairs = r"calib_data holds model inputs only, but its batches look like \(input, label\) pairs.*calib_data=\[x for x, _ in loader\]"
    with pytest.raises(ValueError, match=pairs):
        tune(net, agreement(net, data), loader, workers=0)
    with pytest.raises(ValueError, match=pairs):  # a later batch, in the calibration itself
        calibrate(net, [data[:8], (data[:8], torch.zeros(8))], discover_ops(net).names)
    # Two inputs the model rejects, neither alone a batch of it: the model's own error.
    with pytest.raises(ValueError, match=r"the FP32 model rejects the calibration data: .*positional argument"):
        tune(net, agreement(net, data), [(torch.randn(4, 3, 8, 8), torch.zeros(4))], workers=0)
    res = tune(net, agreement(net, data), [x for x, _ in loader], precisions=("int8",), workers=0)  # the fix
    assert res.config is not None


def test_tune_returns_the_model_its_accuracy_was_measured_on(net, data):
    eval_fn = agreement(net, data)
    res = tune(net, eval_fn, [data[:32]], workers=0)
    assert res.config is not None and "int8" in res.config.values()
    assert res.accuracy == eval_fn(res.model)
    assert res.baseline == 1.0
    assert res.history["stage"].to_pylist()[0] == "baseline"


def test_without_int8_no_calibration_data_is_needed(net, data):
    eval_fn = agreement(net, data)
    res = tune(net, eval_fn, None, precisions=("bf16", "fp16"), workers=0)
    assert res.config is not None and set(res.config.values()) <= {"fp32", "bf16", "fp16"} and set(res.config.values()) - {"fp32"}
    assert res.accuracy == eval_fn(res.model)


def test_bad_input_fails_before_any_evaluator_starts(net, data, monkeypatch):
    import raytune_inc.ray_executor as driver

    monkeypatch.setattr(driver, "ray_session", lambda *args, **kwargs: pytest.fail("Ray was started"))

    with pytest.raises(ValueError, match="rejects the calibration data"):
        tune(net, agreement(net, data), [torch.randn(4, 3, 8, 8)], workers=2)
    with pytest.raises(ValueError, match="calibration data is empty"):
        tune(net, agreement(net, data), [], workers=2)
    with pytest.raises(ValueError, match="int8 needs calibration data: calib_data is None"):
        tune(net, agreement(net, data), None, workers=2)
    lock = threading.Lock()
    with pytest.raises(TypeError, match="must be picklable"):
        tune(net, lambda m: lock.locked() or agreement(net, data)(m), [data[:4]], workers=2)
    with pytest.raises(TypeError, match="eval_fn must be callable"):
        tune(net, 3, [data[:4]], workers=0)
    with pytest.raises(ValueError, match=r"max_trials=0 allows no trial.*give max_trials >= 1"):
        tune(net, agreement(net, data), [data[:4]], max_trials=0, workers=2)
    with pytest.raises(ValueError, match=r"eval_timeout must be the seconds one evaluation may take, a number > 0 .* got -1"):
        tune(net, agreement(net, data), [data[:4]], eval_timeout=-1, workers=2)


@pytest.mark.usefixtures("ray_local")
def test_an_eval_fn_that_fails_on_the_fp32_model_stops_the_run_before_any_trial(net, data, tmp_path):
    # The evaluators start while the driver evaluates the baseline: a failed baseline stops them, and no trial runs.
    def broken(model):
        raise RuntimeError("eval_fn broke")

    with pytest.raises(TuningError, match="eval_fn broke"):
        tune(net, broken, [data[:4]], workers=2, checkpoint=tmp_path / "h")
    table = load_history(tmp_path / "h")
    assert table["stage"].to_pylist() == ["baseline"] and table["status"].to_pylist() == ["error"]
    import time

    import ray

    def evaluators():
        return [a for a in ray.util.list_named_actors(all_namespaces=True) if "evaluator" in str(a)]

    deadline = time.monotonic() + 10  # killed actors leave the list of named ones within moments
    while evaluators() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert evaluators() == []


def hangs_on_fp32(model):
    """eval_fn: a loop that never ends on the FP32 model (no op lowered), 1.0 on any other."""
    while not any(hasattr(m, "raytune_precision") for m in model.modules()):
        time.sleep(0.01)
    return 1.0


@pytest.mark.usefixtures("ray_local")
def test_a_baseline_past_eval_timeout_in_the_driver_stops_the_run_naming_the_timeout(net, data, tmp_path):
    # With Ray evaluators the baseline runs in this process, inside the driver's event loop, while they start.
    start = time.monotonic()
    timeout = r"baseline evaluation \(all-fp32 config\) failed(?s:.*)timed out after 1 s(?s:.*)in hangs_on_fp32"
    with pytest.raises(TuningError, match=timeout):
        tune(net, hangs_on_fp32, [data[:4]], workers=2, eval_timeout=1, checkpoint=tmp_path / "h")
    assert time.monotonic() - start < 60
    assert load_history(tmp_path / "h")["status"].to_pylist() == ["error"]


@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
def test_parallel_model_tuning_commits_what_the_sequential_one_commits(net, data):
    eval_fn = agreement(net, data)
    seq = tune(net, eval_fn, [data[:32]], workers=0)
    par = tune(net, eval_fn, [data[:32]], workers=2)
    assert same_trials(par, seq)
    assert par.config == seq.config and par.accuracy == eval_fn(par.model)
    evaluated = par.history.filter(pc.equal(par.history["status"], "ok"))  # cancelled ones never reached a device
    assert set(evaluated["device"].to_pylist()) == {"cpu"}


def test_the_digits_example_trains_once_and_tunes(tmp_path):
    from raytune_inc.examples.digits import TestAccuracy, calibration_batches, trained_model

    model = trained_model(tmp_path / "cnn.pt", epochs=3)
    again = trained_model(tmp_path / "cnn.pt")  # from the cache, loaded without pickle
    retrained = trained_model(tmp_path / "other.pt", epochs=3)  # training is reproducible
    for other in (again, retrained):
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True))
    eval_fn = TestAccuracy()
    assert eval_fn(model) > 0.8
    res = tune(model, eval_fn, calibration_batches(1), precisions=("int8", "bf16"), workers=0)
    assert res.accuracy == eval_fn(res.model) and res.accuracy >= res.baseline * 0.99


@pytest.mark.slow
def test_the_resnet_example_tunes_to_int8_and_meets_the_goal_as_deployed(tmp_path):
    from raytune_inc import AccuracyCriterion
    from raytune_inc.examples.resnet import DigitsResNet, TestAccuracy, calibration_batches, dataset, trained_model

    x, _, test_x, _ = dataset()
    assert x.shape[1:] == test_x.shape[1:] == (1, 32, 32)
    model = trained_model(tmp_path / "resnet.pt", epochs=2, width=16)  # a narrow one: seconds to train
    again = trained_model(tmp_path / "resnet.pt", width=16)  # from the cache, loaded without pickle
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))
    assert isinstance(again, DigitsResNet)
    eval_fn = TestAccuracy()
    assert eval_fn(model) > 0.5  # two epochs: far from chance (0.1)
    criterion = AccuracyCriterion(0.01)
    res = tune(model, eval_fn, calibration_batches(2), precisions=("int8",), accuracy=criterion, workers=0)
    assert res.config is not None and set(res.config.values()) == {"int8"}  # 6 convolutions and the Linear
    assert sum(isinstance(m, nn.Identity) for m in res.model.modules()) == 6  # every BatchNorm folded into its conv
    assert res.accuracy == eval_fn(res.model)
    assert criterion.meets(eval_fn(res.compile()), res.baseline)  # as deployed: compiled, on int8 kernels


class ThreadsSeen:
    """eval_fn that notes, in the evaluator it runs in, its CPU share and torch's thread count."""

    def __init__(self, log, x):
        self.log = str(log)
        self.x = x

    def __call__(self, model):
        import ray

        try:
            cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
        except Exception:  # the driver, which is no actor
            cpus = None
        with open(self.log, "a") as f:
            f.write(f"{cpus} {torch.get_num_threads()}\n")
        with torch.no_grad():
            return float(model(self.x).abs().mean() > 0)


@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
def test_one_pool_holds_evaluators_of_several_shares_each_with_its_threads(net, data, tmp_path, monkeypatch):
    from raytune_inc import Workers

    monkeypatch.setenv("RAYTUNE_INC_DRIVER_EVALUATES", "0")  # every trial on an evaluator, however short the run

    log = tmp_path / "threads"
    res = tune(net, ThreadsSeen(log, data), [data[:8]], precisions=("int8",), workers=[Workers(1, num_cpus=1), Workers(1, num_cpus=2)])
    seen = [line.split() for line in log.read_text().splitlines()]
    in_evaluators = [(float(cpus), int(threads)) for cpus, threads in seen if cpus != "None"]  # not the driver's baseline
    assert in_evaluators and {cpus for cpus, _ in in_evaluators} <= {1.0, 2.0}
    assert all(threads == cpus for cpus, threads in in_evaluators), in_evaluators
    # every evaluation wrote its line, except those the end of the run cancelled before their eval_fn began
    cancelled = res.history.column("status").to_pylist().count("cancelled")
    assert res.evaluations - cancelled <= len(seen) <= res.evaluations
    with pytest.raises(ValueError, match="num_gpus=1"):
        tune(net, ThreadsSeen(log, data), [data[:8]], workers=[Workers(1), Workers(1, num_gpus=1)])


def test_no_op_is_inside_another(data):
    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.out = nn.Linear(8, 4)

        def forward(self, x):
            return self.out(self.attn(x, x, x)[0])

    model = Attn().eval()
    space = discover_ops(model)
    assert [(op.name, op.type, op.precisions) for op in space] == [
        ("attn", "MultiheadAttention", ("bf16", "fp16")),
        ("out", "Linear", ("bf16", "fp16", "int8_dynamic", "int8")),
    ]
    x = torch.randn(2, 5, 8)
    calibration = calibrate(model, [x], space.names)
    lowered = apply_config(model, {"attn": "bf16", "out": "int8"}, calibration)
    assert 0 < (lowered(x) - model(x)).abs().max() < 0.1


def test_a_trial_is_applied_in_place_and_the_model_is_put_back_after_it(data):
    torch.manual_seed(0)
    net = Net().eval()
    before = {name: module for name, module in net.named_modules()}
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    expected = net(data)
    calibration = calibrate(net, [data[:8]], discover_ops(net).names)
    evaluation = ModelEvaluation(net, agreement(net, data), calibration, lowered_cache=1.0)  # room for every module
    seen = []

    def eval_fn(model):
        seen.append((model, model.body[1], model.head, model.body[2], [m.training for m in model.modules()]))
        return float((model(data) - expected).abs().max())

    evaluation.eval_fn = eval_fn
    config = {"conv": "int8", "body.1": "int8", "body.2": "bf16", "head": "int8_dynamic"}
    net.body.train()  # a module in training mode is evaluated in eval mode, and left in training mode after
    first = evaluation(config)
    model, lowered, dynamic, cast, modes = seen[0]
    # The trial ran on the model itself, no copy, with the lowered modules in place of the FP32 ones, in eval mode.
    assert model is net and isinstance(lowered, QuantizedLinear) and lowered is not before["body.1"]
    assert not any(modes) and 0 < first < 1
    # After it, the model is as it was: the same module objects, weights and training flags.
    assert {name: module for name, module in net.named_modules()} == before
    assert net.body.training and net.body[1].training and not net.training
    assert all(torch.equal(v, weights[k]) for k, v in net.state_dict().items())
    torch.testing.assert_close(net.eval()(data), expected, rtol=0, atol=0)
    # Each op's lowered module is built once and reused by the next trial, which gives the same value.
    assert evaluation(config) == first
    assert seen[1][1] is lowered and seen[1][2] is dynamic and seen[1][3] is cast
    stats = evaluation.cache.stats()
    assert stats["modules"] == 4 and stats["hits"] >= 4 and stats["bytes"] <= stats["budget"]


def test_the_lowered_cache_keeps_its_budget_and_evicts_the_least_recently_used(net, data):
    calibration = calibrate(net, [data[:8]], discover_ops(net).names)
    evaluation = ModelEvaluation(net, agreement(net, data), calibration, lowered_cache=0)
    assert evaluation.cache.budget == 0
    value = evaluation({"body.1": "int8", "head": "int8"})
    assert len(evaluation.cache) == 0 and evaluation.cache.evicted == 2  # nothing kept past its trial
    assert evaluation({"body.1": "int8", "head": "int8"}) == value  # built again, the same

    from raytune_inc.pytorch.lowering import LoweredCache

    def module(kib: int) -> nn.Module:  # a module of `kib` KiB of float32 weights
        return nn.Linear(kib * 256, 1, bias=False)

    cache = LoweredCache(budget=3 * 1024)
    cache["a", "int8"], cache["b", "int8"], cache["c", "int8"] = module(1), module(1), module(1)
    cache["a", "int8"]  # used again: now the most recent
    cache["d", "int8"] = module(1)  # over the budget: the least recently used goes as it comes
    assert list(cache) == [("c", "int8"), ("a", "int8"), ("d", "int8")] and cache.evicted == 1
    assert cache.bytes == 3 * 1024 and cache.peak_bytes == 3 * 1024
    # A trial's modules are pinned while it runs: they stay even where they alone are over the budget, and the others
    # go as they come; after the trial the cache is trimmed to its budget again.
    with cache.pin({("e", "int8"), ("f", "int8")}):
        cache["e", "int8"], cache["f", "int8"] = module(2), module(2)
        assert list(cache) == [("e", "int8"), ("f", "int8")] and cache.bytes == 4 * 1024
    assert list(cache) == [("f", "int8")] and cache.bytes == 2 * 1024 and cache.peak_bytes == 4 * 1024
    assert cache.stats() == {"modules": 1, "bytes": 2048, "peak_bytes": 4096, "budget": 3072, "hits": 0, "misses": 0, "evicted": 5}
    with pytest.raises(ValueError, match="lowered_cache"):
        ModelEvaluation(net, agreement(net, data), calibration, lowered_cache=-1)


class TinyEncoder(nn.Module):
    """Token ids -> Embedding -> Linear on 3-D (batch, tokens, features) inputs -> LayerNorm, as in a transformer."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.proj = nn.Linear(16, 16)
        self.norm = nn.LayerNorm(16)

    def forward(self, input_ids, attention_mask):
        hidden = self.norm(self.proj(self.embed(input_ids)))
        return (hidden * attention_mask.unsqueeze(-1)).sum(1)


def test_token_inputs_embeddings_and_3d_linears_take_their_precisions():
    torch.manual_seed(0)
    model = TinyEncoder().eval()
    batch = {"input_ids": torch.randint(0, 50, (4, 7)), "attention_mask": torch.ones(4, 7)}
    space = discover_ops(model)
    assert [(op.name, op.precisions) for op in space] == [
        ("embed", ("bf16", "fp16", "int8")),  # int8: weights only
        ("proj", ("bf16", "fp16", "int8_dynamic", "int8")),
        ("norm", ("bf16", "fp16")),
    ]
    calibration = calibrate(model, [batch], ["proj"], space.names)
    assert set(calibration.stats) == {"proj"} and calibration.shapes == {"proj": (4, 7, 16), "norm": (4, 7, 16)}  # 3-D inputs
    lowered = apply_config(model, {"embed": "fp16", "proj": "int8", "norm": "bf16"}, calibration)
    assert isinstance(lowered.proj, QuantizedLinear)
    with torch.no_grad():
        out, ref = lowered(**batch), model(**batch)
    assert out.dtype == torch.float32  # the Embedding's output is cast back though its input is integer
    assert 0 < (out - ref).abs().max() < 0.05 * ref.abs().max()
