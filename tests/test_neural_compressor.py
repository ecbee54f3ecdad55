"""raytune_inc.neural_compressor: INC 2.6's PyTorch call patterns, written again, run on raytune-inc.

INC 2.6's own tests (test/strategy/test_quant_level.py: a fake eval returning a fixed list of
accuracies on ResNet18), its metrics' unit-test values, and the patterns of scripts written by its
users (Lightning's post-training quantization docs, optimum-intel's INCQuantizer, Intel's oneAPI
sample): calib_func, dynamic without calibration data, (dict of inputs, label) batches, the
returned model used as a module. Each fit is also checked against `tune` with the same settings:
the layer is thin.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from raytune_inc import tune
from raytune_inc.examples import digits
from raytune_inc.neural_compressor import (
    METRICS,
    Metric,
    MixedPrecisionConfig,
    PostTrainingQuantConfig,
    PyTorchModel,
    mix_precision,
    quantization,
)
from raytune_inc.neural_compressor.config import AccuracyCriterion, TuningCriterion
from raytune_inc.neural_compressor.fitting import NOT_BF16
from raytune_inc.neural_compressor.quantization import bf16_supported, fit
from raytune_inc.neural_compressor.utils.pytorch import load
from raytune_inc.strategies import DefaultFirstStrategy

FAST = {"workers": 0, "sensitivity": False}  # raytune-inc's own options, in fit's **kwargs
NO_BF16 = ["bf16"]  # excluded_precisions: int8 alone, whatever the CPU (INC adds bf16 where the CPU has it)


# --- a torchvision-style ResNet18 (torchvision does not load beside this torch): the same module names and types
class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 1000, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        planes, layers = width, []
        for i in range(4):
            out = width * 2**i
            layers.append(nn.Sequential(BasicBlock(planes, out, 1 if i == 0 else 2), BasicBlock(out, out)))
            planes = out
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return ResNet18(num_classes=10, width=16).eval()


class DummyDataset(Dataset):
    """INC's Datasets("pytorch")["dummy"]: random inputs of a shape, label 0; counts the samples read."""

    def __init__(self, shape: tuple[int, ...]):
        self.data = torch.rand(shape, generator=torch.Generator().manual_seed(0))
        self.reads = 0

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        self.reads += 1
        return self.data[i], 0


class FakeEval:
    """INC's _fake_eval: the next of a fixed list of accuracies per call (the first is the FP32 baseline); the last one
    again once the list is spent. Records the models it was given."""

    def __init__(self, accuracies: list[float]):
        self.accuracies, self.calls = list(accuracies), 0

    def __call__(self, model: nn.Module) -> float:
        value = self.accuracies[min(self.calls, len(self.accuracies) - 1)]
        self.calls += 1
        return value


def committed(res) -> list[tuple]:
    return [(t.config, t.accuracy, t.meets, t.stage) for t in res.trials]


def is_int8(module: nn.Module) -> bool:
    return type(module).__name__.startswith("Quantized")


def test_quant_level_0_with_a_fake_eval_on_resnet18_is_conservative():
    model = resnet18()
    loader = DataLoader(DummyDataset((4, 3, 32, 32)), batch_size=2)
    conf = PostTrainingQuantConfig(quant_level=0, excluded_precisions=NO_BF16)
    # baseline 2.0; the type-wise Conv2d trial fails (1.0); every op-wise trial and the Linear meet (>= 2.0 * 0.99)
    q_model = fit(model=model, conf=conf, calib_dataloader=loader, eval_func=FakeEval([2.0, 1.0, 2.1, 2.2, 2.3]), **FAST)
    assert isinstance(q_model, PyTorchModel) and isinstance(q_model, nn.Module)
    res = q_model.result
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert [t.stage for t in res.trials] == ["int8 type-wise"] + ["int8 op-wise"] * (len(convs) - 1) + ["int8 type-wise"]
    # the last op-wise candidate is the failed type-wise config again: dedupe gives it 1.0, so that conv stays FP32
    assert [res.config[c] for c in convs] == ["int8"] * (len(convs) - 1) + ["fp32"]
    assert res.config["fc"] == "int8" and is_int8(q_model.model.fc)
    assert q_model.q_config["op"][("fc", "Linear")]["weight"]["dtype"] == "int8"
    assert q_model.q_config["trial_number"] == res.trials[-1].seq
    # the same settings on tune: the same committed trials
    direct = tune(
        model,
        FakeEval([2.0, 1.0, 2.1, 2.2, 2.3]),
        [x for x, _ in loader],
        strategy="conservative",
        precisions=("int8",),
        **FAST,
    )
    assert committed(direct) == committed(res)


def test_quant_level_auto_tries_the_default_config_then_conservative():
    model = resnet18()
    loader = DataLoader(DummyDataset((4, 3, 32, 32)), batch_size=2)
    # baseline 2.0, the default config (all int8) 1.0, then conservative: Conv2d type-wise 1.1, then every op meets
    q_model = fit(
        model,
        PostTrainingQuantConfig(excluded_precisions=NO_BF16),
        calib_dataloader=loader,
        eval_func=FakeEval([2.0, 1.0, 1.1, 2.2, 2.3]),
        **FAST,
    )
    res = q_model.result
    assert res.trials[0].stage == "default" and set(res.trials[0].config.values()) == {"int8"} and not res.trials[0].meets
    assert res.trials[1].stage == "int8 type-wise"
    assert "Quant" in type(q_model._model.fc).__name__ or is_int8(q_model._model.fc)  # INC's own assertion, and ours
    # a default config that meets is the answer at once
    once = fit(model, PostTrainingQuantConfig(excluded_precisions=NO_BF16), calib_dataloader=loader, eval_func=FakeEval([2.0, 2.0]), **FAST)
    assert [t.stage for t in once.result.trials] == ["default"] and once.result.config == res.trials[0].config


def test_quant_level_auto_with_max_trials_1_returns_none_when_the_default_misses(caplog):
    model = resnet18()
    loader = DataLoader(DummyDataset((4, 3, 32, 32)), batch_size=2)
    conf = PostTrainingQuantConfig(approach="static", tuning_criterion=TuningCriterion(max_trials=1), excluded_precisions=NO_BF16)
    with caplog.at_level("INFO", logger="raytune_inc.neural_compressor"):
        q_model = fit(model, conf, calib_dataloader=loader, eval_func=FakeEval([1.0, 0.9, 1.1, 1.2]), **FAST)
    assert q_model is None
    assert "Not found any quantized model which meet accuracy goal" in caplog.text


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model = digits.trained_model(tmp_path_factory.mktemp("digits") / "digits_cnn.pt")
    xtr, ytr, xte, yte = digits.dataset()
    return model, xtr, ytr, xte, yte


@pytest.mark.parametrize("metric", ["instance", "dict", "Metric"])
def test_a_trained_classifier_with_eval_dataloader_and_topk_is_tuned_as_tune_would(trained, metric):
    model, xtr, ytr, xte, yte = trained
    calib = DataLoader(TensorDataset(xtr, ytr), batch_size=32)
    evaluation = DataLoader(TensorDataset(xte, yte), batch_size=64)
    eval_metric = {"instance": METRICS("pytorch")["topk"](), "dict": {"topk": 1}, "Metric": Metric(name="topk", k=1)}[metric]
    conf = PostTrainingQuantConfig(accuracy_criterion=AccuracyCriterion(tolerable_loss=0.0), excluded_precisions=NO_BF16)
    q_model = fit(model, conf, calib_dataloader=calib, eval_dataloader=evaluation, eval_metric=eval_metric, **FAST)
    res = q_model.result
    top1 = digits.TestAccuracy()
    assert res.baseline == pytest.approx(top1(model), abs=1e-6)  # topk over the loader is top-1 accuracy
    assert res.accuracy == pytest.approx(top1(q_model.model), abs=1e-6)
    assert q_model.q_config["calib_iteration"] == math.ceil(100 / 32)
    direct = tune(
        model,
        top1,
        [x for x, _ in calib][:4],
        strategy=DefaultFirstStrategy(),
        precisions=("int8",),
        accuracy=conf.accuracy_criterion.ours(),
        **FAST,
    )
    assert [(t.config, t.meets) for t in direct.trials] == [(t.config, t.meets) for t in res.trials]
    for ours, fitted in zip(direct.trials, res.trials, strict=True):
        if fitted.status == "rejected":  # topk over a DataLoader stops a trial once it surely fails
            assert metric != "instance" and fitted.bound >= ours.accuracy - 1e-9 and not ours.meets
        else:
            assert fitted.accuracy == pytest.approx(ours.accuracy, abs=1e-6)


def test_topk_over_a_dataloader_stops_failing_trials_early_with_the_same_verdicts(trained):
    model, xtr, ytr, xte, yte = trained
    outlier = xtr.clone()
    outlier[0] *= 1000  # one calibration image far out: static int8 activations of the first op lose the others
    calib = DataLoader(TensorDataset(outlier, ytr), batch_size=32)
    evaluation = DataLoader(TensorDataset(xte, yte), batch_size=20)
    conf = PostTrainingQuantConfig(accuracy_criterion=AccuracyCriterion(tolerable_loss=0.0), excluded_precisions=NO_BF16)
    runs = {}
    for metric in ({"topk": 1}, METRICS("pytorch")["topk"]()):  # a user's instance: read to the end
        res = fit(model, conf, calib_dataloader=calib, eval_dataloader=evaluation, eval_metric=metric, **FAST).result
        runs[type(metric).__name__] = res
    early, full = runs["dict"], runs["TopK"]
    assert [(t.config, t.meets) for t in early.trials] == [(t.config, t.meets) for t in full.trials]
    rejected = [r for r in early.history.to_pylist() if r["status"] == "rejected"]
    assert rejected and all(r["samples"] < r["samples_total"] == len(yte) for r in rejected)
    assert full.history["samples"].null_count == full.history.num_rows


def test_the_same_fit_on_ray_evaluators_commits_the_in_process_trials(trained):
    model, xtr, ytr, xte, yte = trained
    calib = DataLoader(TensorDataset(xtr, ytr), batch_size=32)
    evaluation = DataLoader(TensorDataset(xte, yte), batch_size=128)
    conf = PostTrainingQuantConfig(quant_level=0, accuracy_criterion=AccuracyCriterion(tolerable_loss=0.002))
    args = {"calib_dataloader": calib, "eval_dataloader": evaluation, "eval_metric": {"topk": 1}, "sensitivity": False}
    local = fit(model, conf, workers=0, **args)
    on_ray = fit(model, conf, workers=2, **args)
    assert committed(on_ray.result) == committed(local.result)
    assert on_ray.result.config == local.result.config


class TokenBatches(Dataset):
    """Dict batches as a transformers dataset gives them, labels inside."""

    def __init__(self, n: int = 16, length: int = 12, vocab: int = 100, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, vocab, (n, length), generator=g)
        self.labels = torch.randint(0, 2, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]), "labels": self.labels[i]}


def tiny_bert() -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=2)
    return BertForSequenceClassification(config).eval()


def test_a_transformers_classifier_with_dict_batches_carrying_labels():
    model = tiny_bert()
    loader = DataLoader(TokenBatches(), batch_size=4)
    conf = PostTrainingQuantConfig(
        accuracy_criterion=AccuracyCriterion(criterion="absolute", tolerable_loss=0.25), excluded_precisions=NO_BF16
    )
    q_model = fit(model, conf, calib_dataloader=loader, eval_dataloader=loader, eval_metric=METRICS("pytorch")["Accuracy"](), **FAST)
    assert q_model is not None
    with torch.no_grad():  # the metric read each ModelOutput's logits, with the labels the batches carry
        expected = sum(int((model(**b).logits.argmax(-1) == b["labels"]).sum()) for b in loader) / len(loader.dataset)
    assert q_model.result.baseline == pytest.approx(expected)
    batch = next(iter(loader))
    out = q_model(**batch)  # keyword inputs, labels included: the model computes its loss as INC passes them
    assert out.loss is not None and out.logits.shape == (4, 2)


def test_mix_precision_fit_with_the_default_config_is_auto_mixed_precision(trained):
    model, _, _, xte, yte = trained
    top1 = digits.TestAccuracy()
    conf = MixedPrecisionConfig()
    assert conf.precisions == ["bf16"]
    converted = mix_precision.fit(model, conf, eval_func=top1, **FAST)
    res = converted.result
    assert res.strategy == "auto_mixed_precision"
    # stage 1: every op INC gives bf16 (the Linears) in bf16; the convolutions and the LayerNorm stay FP32
    assert res.trials[0].stage == "model-wise"
    assert {op for op, p in res.trials[0].config.items() if p == "bf16"} == {"fc1", "fc2"}
    assert set(res.config.values()) <= {"bf16", "fp32"} and "bf16" in res.config.values()
    direct = tune(model, top1, None, strategy="auto_mixed_precision", precisions=("bf16",), op_type_dict=NOT_BF16, **FAST)
    assert committed(direct) == committed(res)
    # INC's aliases: precision= for precisions, config= for conf
    alias = mix_precision.fit(model, config=MixedPrecisionConfig(precision="fp16"), eval_func=top1, **FAST)
    assert "fp16" in alias.result.config.values()
    untuned = mix_precision.fit(model, MixedPrecisionConfig())  # no evaluation: every op INC gives bf16, in bf16
    assert untuned.result.config == res.trials[0].config and len(untuned.result.trials) == 1


def test_fit_returns_none_when_no_config_meets_the_goal(trained):
    model, xtr, _, _, _ = trained

    def eval_func(m: nn.Module) -> float:
        lowered = any(is_int8(x) for x in m.modules()) or any(p.dtype != torch.float32 for p in m.parameters())
        return 0.5 if lowered else 1.0

    q_model = fit(model, PostTrainingQuantConfig(quant_level=0), calib_dataloader=[(xtr[:32], None)], eval_func=eval_func, **FAST)
    assert q_model is None


def test_a_lower_is_better_absolute_loss_goal(trained):
    model, xtr, ytr, xte, yte = trained

    class LossModelEval:
        def __call__(self, m: nn.Module) -> float:
            with torch.no_grad():
                return float(nn.functional.cross_entropy(m(xte), yte))

    crit = AccuracyCriterion(higher_is_better=False, criterion="absolute", tolerable_loss=0.02)
    q_model = fit(
        model,
        PostTrainingQuantConfig(quant_level=0, accuracy_criterion=crit, excluded_precisions=NO_BF16),
        calib_dataloader=[xtr[:64]],
        eval_func=LossModelEval(),
        **FAST,
    )
    res = q_model.result
    assert res.accuracy <= res.baseline + 0.02
    assert all(t.meets == (t.accuracy <= res.baseline + 0.02) for t in res.trials)
    # INC's Loss metric: the sum of the predictions over the number of labels
    loss = METRICS("pytorch")["Loss"]()
    loss.update(torch.tensor([1.0, 0, 0, 1]), torch.tensor([0, 0, 0, 0]))
    assert loss.result() == 0.5


def test_save_then_load_rebuilds_the_tuned_model(trained, tmp_path):
    model, xtr, ytr, xte, _ = trained
    q_model = fit(model, PostTrainingQuantConfig(), calib_dataloader=DataLoader(TensorDataset(xtr, ytr), batch_size=50))
    assert [t.stage for t in q_model.result.trials] == ["default"]  # no evaluation: the default config, untuned
    q_model.save(tmp_path / "saved")
    loaded = load(str(tmp_path / "saved"), model)
    assert not isinstance(loaded, PyTorchModel)
    assert torch.equal(loaded(xte[:16]), q_model(xte[:16]))
    with pytest.raises(ValueError, match="the directory PyTorchModel.save"):
        load(tmp_path / "saved" / "best_model.pt", model)


def test_calibration_sampling_size_is_honoured():
    model = resnet18()
    data = DummyDataset((64, 3, 32, 32))
    loader = DataLoader(data, batch_size=8)
    conf = PostTrainingQuantConfig(calibration_sampling_size=[20], excluded_precisions=NO_BF16)
    q_model = fit(model, conf, calib_dataloader=loader, **FAST)
    assert q_model.q_config["calib_iteration"] == math.ceil(20 / 8) == 3
    assert data.reads == 3 * 8  # and nothing more was read of the loader
    # calibrated on those three batches: the same qparams as tune's calibration on them
    direct = tune(
        model,
        lambda m: 1.0,
        [data.data[i : i + 8] for i in (0, 8, 16)],
        strategy=DefaultFirstStrategy(None),
        precisions=("int8",),
        max_trials=1,
        **FAST,
    )
    assert direct.calibration == q_model.result.calibration


@pytest.mark.parametrize(
    "conf, names",
    [
        (lambda: PostTrainingQuantConfig(quant_level=1), ["quant_level=1", "'basic'", "quant_level=0"]),
        (lambda: PostTrainingQuantConfig(quant_level=1, tuning_criterion=TuningCriterion(strategy="mse")), ["'mse'"]),
        (lambda: PostTrainingQuantConfig(recipes={"smooth_quant": True}), ["smooth_quant"]),
        (lambda: PostTrainingQuantConfig(backend="ipex"), ["backend='ipex'"]),
        (lambda: PostTrainingQuantConfig(approach="weight_only"), ["weight_only", "approach='dynamic'"]),
        (lambda: PostTrainingQuantConfig(device="gpu"), ["num_gpus"]),
        (lambda: PostTrainingQuantConfig(tuning_criterion=TuningCriterion(objective="accuracy")), ["objective"]),
    ],
)
def test_what_is_not_here_is_refused_before_any_work(conf, names):
    calls = FakeEval([1.0])
    with pytest.raises(ValueError, match="not available in raytune-inc") as info:
        fit(resnet18(), conf(), calib_dataloader=[torch.rand(2, 3, 32, 32)], eval_func=calls, **FAST)
    for name in names:
        assert name in str(info.value)
    assert calls.calls == 0


def test_invalid_values_are_refused_as_inc_refuses_them():
    with pytest.raises(ValueError, match="strategy='conservative'"):
        TuningCriterion(strategy="conservative")
    with pytest.raises(ValueError, match="approach='int4'"):
        PostTrainingQuantConfig(approach="int4")
    with pytest.raises(ValueError, match="only support metrics"):
        METRICS("pytorch")["ROC"]
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['wokers'\\]"):
        fit(resnet18(), PostTrainingQuantConfig(), calib_dataloader=[torch.rand(2, 3, 32, 32)], wokers=2)
    with pytest.raises(ValueError, match="no evaluation metric"):
        fit(resnet18(), PostTrainingQuantConfig(), calib_dataloader=[torch.rand(2, 3, 32, 32)], eval_dataloader=[torch.rand(2, 3, 32, 32)])
    with pytest.raises(ValueError, match="calib_dataloader .* or calib_func"):
        fit(resnet18(), PostTrainingQuantConfig(), eval_func=lambda m: 1.0)
    assert PostTrainingQuantConfig(approach="dynamic").approach == "post_training_dynamic_quant"


def test_calib_func_calibrates_by_running_the_model_itself():
    model = tiny_bert()
    batches = [TokenBatches(seed=s)[0:4] for s in range(3)]  # dicts of (4, 12) tensors
    batches = [{"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]} for b in batches]

    def calib_func(m: nn.Module) -> None:  # as optimum-intel's does: the model in a "pipeline", called by keyword
        pipeline = lambda **inputs: m(**inputs).logits.softmax(-1)  # noqa: E731
        for b in batches:
            pipeline(**b)

    conf = PostTrainingQuantConfig(excluded_precisions=NO_BF16)
    by_func = fit(model, conf, calib_func=calib_func, **FAST)
    by_loader = fit(model, conf, calib_dataloader=DataLoader(batches, batch_size=None), **FAST)
    assert by_func.result.calibration == by_loader.result.calibration
    assert by_func.result.config == by_loader.result.config
    with pytest.raises(ValueError, match="without calling the model"):
        fit(model, conf, calib_func=lambda m: None, **FAST)


def test_dynamic_with_an_eval_func_and_no_calibration_data():
    model = tiny_bert()
    ids = TokenBatches()[0:8]

    def eval_func(m: nn.Module) -> float:
        with torch.no_grad():
            return float(m(input_ids=ids["input_ids"]).logits.softmax(-1)[:, 0].mean())

    q_model = fit(model, PostTrainingQuantConfig(approach="dynamic", excluded_precisions=NO_BF16), eval_func=eval_func, **FAST)
    assert q_model is not None
    assert set(q_model.result.config.values()) <= {"int8_dynamic", "fp32"} and "int8_dynamic" in q_model.result.config.values()
    lowered = [k for k, v in q_model.result.config.items() if v == "int8_dynamic"]
    assert all(q_model.q_config["op"][(name, "Linear")]["activation"]["quant_mode"] == "dynamic" for name in lowered)


class KeywordNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.image = nn.Linear(64, 32)
        self.extra = nn.Linear(4, 32)
        self.head = nn.Linear(32, 10)

    def forward(self, pixels: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.image(pixels.flatten(1)) + self.extra(extra)))


def test_batches_of_a_dict_of_inputs_and_a_label_and_the_model_used_as_a_module(trained):
    _, xtr, ytr, _, _ = trained
    model = KeywordNet().eval()
    extra = torch.rand(len(ytr), 4, generator=torch.Generator().manual_seed(1))

    class Pairs(Dataset):
        def __len__(self):
            return 256

        def __getitem__(self, i):
            return {"pixels": xtr[i], "extra": extra[i]}, ytr[i]

    loader = DataLoader(Pairs(), batch_size=32)
    conf = PostTrainingQuantConfig(
        accuracy_criterion=AccuracyCriterion(criterion="absolute", tolerable_loss=1.0), excluded_precisions=NO_BF16
    )
    q_model = fit(model, conf, calib_dataloader=loader, eval_dataloader=loader, eval_metric={"topk": 1}, **FAST)
    inputs, _ = next(iter(loader))
    assert q_model.eval() is q_model and q_model.to("cpu") is q_model
    out = q_model(**inputs)
    assert torch.equal(out, q_model.model(**inputs))
    traced = torch.jit.trace(q_model, (inputs["pixels"], inputs["extra"]))
    assert torch.allclose(traced(inputs["pixels"], inputs["extra"]), out, atol=1e-5)
    assert "_fp32_model" not in dict(q_model.named_modules()) and q_model.fp32_model is model


def test_op_type_and_op_name_dicts_in_incs_format(trained):
    model, xtr, ytr, _, _ = trained
    calib = [xtr[:64]]
    keep = {"activation": {"dtype": ["fp32"]}, "weight": {"dtype": ["fp32"]}}
    conf = PostTrainingQuantConfig(
        op_type_dict={"Conv2d": keep}, op_name_dict={"fc.*2": {"weight": {"dtype": "fp32"}}}, excluded_precisions=NO_BF16
    )
    q_model = fit(model, conf, calib_dataloader=calib, **FAST)
    config = q_model.result.config  # the convolutions and fc2 (the regex matched in full) are left out, in FP32
    assert {op for op, p in config.items() if p != "fp32"} == {"fc1"} and not {"conv1", "conv2", "fc2"} & set(config)
    bad = PostTrainingQuantConfig(op_type_dict={"Linear": {"weight": {"dtype": ["int8"], "granularity": ["per_tensor"]}}})
    with pytest.raises(ValueError, match="per_channel"):
        fit(model, bad, calib_dataloader=calib, **FAST)


def test_builtin_metrics_compute_what_incs_compute():
    m = METRICS("pytorch")
    preds = torch.tensor([[0, 0.2, 0.9, 0.3], [0, 0.9, 0.8, 0]])
    onehot = torch.tensor([[0, 1, 0, 0], [0, 0, 1, 0]])
    for k, expected in ((1, 0.0), (2, 0.5), (3, 1.0)):
        top = m["topk"](k=k)
        top.update(preds, onehot)
        assert top.result() == expected
    acc = m["Accuracy"]()
    acc.update(torch.tensor([[0.2, 0.8], [0.1, 0.9], [0.3, 0.7], [0.4, 0.6]]), torch.tensor([0, 1, 0, 0]))
    assert acc.result() == 0.25
    acc.reset()
    acc.update([1, 0, 1, 1], [0, 1, 1, 1])
    assert acc.result() == 0.5
    rmse = m["RMSE"]()
    rmse.update(torch.tensor([1.0, 0, 0, 1]), torch.tensor([1.0, 0, 0, 0]))
    assert rmse.result() == 0.5
    mae, mse = m["MAE"](), m["MSE"]()
    for metric in (mae, mse):
        metric.update(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0]))
    assert (mae.result(), mse.result()) == (1.5, 2.5)
    f1 = m["F1"]()
    f1.update([1, 1], [2, 1, 1])
    assert f1.result() == pytest.approx(0.8)
    with pytest.raises(ValueError, match="compare_label=False"):
        m["MSE"](compare_label=False)


def test_a_users_metric_object_is_used_as_is(trained):
    model, xtr, ytr, xte, yte = trained

    class MyMetric:
        def __init__(self):
            self.resets = 0
            self.reset()

        def reset(self):
            self.resets += 1
            self.right = self.total = 0

        def update(self, preds, labels):
            self.right += int((preds.argmax(1) == labels).sum())
            self.total += len(labels)

        def result(self):
            return self.right / self.total

    q_model = fit(
        model,
        PostTrainingQuantConfig(excluded_precisions=NO_BF16),
        calib_dataloader=[xtr[:64]],
        eval_dataloader=DataLoader(TensorDataset(xte, yte), batch_size=100),
        eval_metric=MyMetric(),
        **FAST,
    )
    assert q_model.result.baseline == pytest.approx(digits.TestAccuracy()(model), abs=1e-6)


def test_the_entry_points_are_where_inc_has_them():
    import raytune_inc.neural_compressor as nc

    for name in ("PostTrainingQuantConfig", "MixedPrecisionConfig", "quantization", "mix_precision", "Metric", "METRICS"):
        assert hasattr(nc, name)
    assert nc.quantization.fit is quantization.fit and callable(nc.mix_precision.fit)
    from raytune_inc.neural_compressor import config, metric
    from raytune_inc.neural_compressor.utils import pytorch

    assert config.TuningCriterion is TuningCriterion and metric.METRICS is METRICS and pytorch.load is load

    assert TuningCriterion().strategy == "basic" and TuningCriterion().max_trials == 100
    conf = PostTrainingQuantConfig()
    assert (conf.quant_level, conf.calibration_sampling_size, conf.accuracy_criterion.tolerable_loss) == ("auto", [100], 0.01)
    assert (conf.excluded_precisions, conf.use_bf16) == ([], True)


def test_static_adds_bf16_where_the_cpu_has_it_as_inc_does():
    from raytune_inc.neural_compressor.quantization import precisions

    assert precisions(PostTrainingQuantConfig()) == (("bf16", "int8") if bf16_supported() else ("int8",))
    assert precisions(PostTrainingQuantConfig(excluded_precisions=["bf16"])) == ("int8",)
    assert precisions(PostTrainingQuantConfig(approach="auto", excluded_precisions=["bf16"])) == ("int8_dynamic", "int8")


def test_the_inc2_migration_example_runs_as_written(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parent.parent / "scripts" / "examples" / "inc2_migration.py"
    out = tmp_path / "outcome.json"
    args = ["--tune", "--quant-level", "0", "--output", str(tmp_path / "saved"), "--json", str(out)]
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    outcome = json.loads(out.read_text())
    assert outcome["found"] and outcome["accuracy"] >= outcome["fp32_accuracy"] * 0.99
    assert "int8" in outcome["ops"].values() and (tmp_path / "saved").is_dir()
    assert "reloaded with utils.pytorch.load: same accuracy" in done.stdout


def test_bf16_goes_where_inc_gives_it_linear_and_recurrent_modules_only(trained, monkeypatch):
    model, xtr, _, _, _ = trained
    monkeypatch.setattr(quantization, "bf16_supported", lambda: True)  # a CPU with native bf16, whatever this one has
    seen = []

    def eval_func(m: nn.Module) -> float:
        seen.append({name: p.dtype for name, p in m.named_parameters()})
        return 1.0

    q_model = fit(model, PostTrainingQuantConfig(quant_level=0), calib_dataloader=[xtr[:64]], eval_func=eval_func, **FAST)
    res = q_model.result
    bf16 = {op for t in res.trials for op, p in t.config.items() if p == "bf16"}
    assert bf16 == {"fc1", "fc2"}  # the Linears; not the convolutions nor the LayerNorm (INC's bf16 list has neither)
    assert [t.stage for t in res.trials][:1] == ["bf16 type-wise"] and res.config["norm"] == "fp32"
    assert any(d["fc1.weight"] == torch.bfloat16 for d in seen)


def test_a_fit_with_a_checkpoint_resumes_without_evaluating_again(trained, tmp_path):
    model, xtr, ytr, xte, yte = trained
    calls = []

    def eval_func(m: nn.Module) -> float:
        calls.append(1)
        return digits.TestAccuracy()(m)

    conf = PostTrainingQuantConfig(quant_level=0, accuracy_criterion=AccuracyCriterion(tolerable_loss=0.002))
    args = {"calib_dataloader": DataLoader(TensorDataset(xtr, ytr), batch_size=32), "eval_func": eval_func, "sensitivity": False}
    first = fit(model, conf, workers=0, checkpoint=tmp_path / "run", **args)
    done = len(calls)
    again = fit(model, conf, workers=0, checkpoint=tmp_path / "run", resume=True, **args)
    assert len(calls) == done  # every trial answered from the history
    assert committed(again.result) == committed(first.result) and again.result.config == first.result.config
