"""What `tune` returns besides the trials: the tuned model saved and loaded without pickle, exported, compiled, timed
against FP32 and sized; `skip_slower`; and the bad input each of them refuses."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from torch import nn

from raytune_inc import AccuracyCriterion, load, load_history, tune
from raytune_inc.history.measures import MEASURES_FILE, read_measures
from raytune_inc.pytorch import speed
from raytune_inc.report import history_summary


class Small(nn.Module):
    """A conv with its BatchNorm, a LayerNorm and two Linear: every kind of lowering in one model."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.fc1 = nn.Linear(8 * 8 * 8, 32)
        self.norm = nn.LayerNorm(32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc2(self.norm(torch.relu(self.fc1(x.flatten(1)))))


class Agreement:
    """eval_fn: top-1 agreement with the FP32 model's predictions on fixed inputs."""

    def __init__(self, reference: nn.Module, x: torch.Tensor):
        self.x = x
        with torch.no_grad():
            self.expected = reference(x).argmax(1)

    def __call__(self, model):
        with torch.no_grad():
            return float((model(self.x).argmax(1) == self.expected).float().mean())


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    model = Small().eval()
    model.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(64, 1, 8, 8)
    return model, Agreement(model, x), [x[:32], x[32:]], x[:16]


@pytest.fixture(scope="module")
def tuned(small, tmp_path_factory):
    model, eval_fn, calib, example = small
    directory = tmp_path_factory.mktemp("history")
    res = tune(
        model,
        eval_fn,
        calib,
        precisions=("bf16", "int8_dynamic", "int8"),
        accuracy=AccuracyCriterion(0.05),
        workers=0,
        checkpoint=directory,
        example_inputs=example,
    )
    return res, directory


def test_the_tuned_model_is_saved_without_pickle_and_loads_onto_its_fp32_model(small, tuned, tmp_path):
    model, eval_fn, _, example = small
    res, _ = tuned
    assert set(res.config.values()) - {"fp32"}, res.config
    saved = res.save(tmp_path / "tuned")
    assert sorted(p.name for p in saved.iterdir()) == ["tuned.json", "weights.safetensors"]
    record = json.loads((saved / "tuned.json").read_text())
    assert record["config"] == res.config and set(record["calibration"]) == {"stats", "shapes", "folded"}
    assert b"pickle" not in (saved / "weights.safetensors").read_bytes()[:4096]
    again = load(saved, model)
    with torch.no_grad():
        assert torch.equal(again(example), res.model(example))
    assert eval_fn(again) == res.accuracy


def test_loading_onto_another_model_names_what_differs(small, tuned, tmp_path):
    model, _, _, _ = small
    res, _ = tuned
    saved = res.save(tmp_path / "tuned")
    other = Small().eval()  # the same architecture, other weights
    with pytest.raises(ValueError, match=r"saved from another model than the one given: the same ops, other weights"):
        load(saved, other)
    smaller = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(ValueError, match=r"ops missing from the model given: conv, fc1, norm, fc2; ops the saved model does not have: 0"):
        load(saved, smaller)
    with pytest.raises(ValueError, match=r"holds no saved tuned model"):
        load(tmp_path / "nothing", model)


def test_the_tuned_model_exports_compiles_and_pickles(small, tuned):
    _, eval_fn, _, example = small
    res, _ = tuned
    program = res.export(example)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(example), res.model(example))
    restored = pickle.loads(pickle.dumps(res.model))  # the bf16 hooks and int8 modules are plain objects
    with torch.no_grad():
        assert torch.equal(restored(example), res.model(example))


def test_latency_and_size_are_measured_and_kept_beside_the_history(tuned):
    res, directory = tuned
    lat = res.latency
    assert lat.device == "cpu" and lat.calls >= 15
    assert min(lat.fp32_eager_ms, lat.tuned_eager_ms, lat.fp32_compiled_ms, lat.tuned_compiled_ms) > 0
    assert res.size.fp32_bytes > res.size.tuned_bytes > 0
    measures = {(m.what, m.subject): m.value for m in read_measures(directory)}
    assert measures[("latency", "tuned compiled")] == lat.tuned_compiled_ms
    assert measures[("size", "tuned")] == res.size.tuned_bytes
    summary = history_summary(directory)
    assert "latency, compiled" in summary and "model size" in summary
    assert load_history(directory).num_rows == res.history.num_rows  # the measures file is not part of the history


def test_without_example_inputs_nothing_is_timed(small, tmp_path):
    model, eval_fn, calib, _ = small
    res = tune(model, eval_fn, calib, precisions=("bf16",), workers=0, checkpoint=tmp_path / "h")
    assert res.latency is None and res.size.tuned_bytes > 0
    assert "latency" not in {m.what for m in read_measures(tmp_path / "h")}


def test_example_inputs_the_model_rejects_fail_before_any_work(small, monkeypatch):
    import raytune_inc.ray_executor as executor

    monkeypatch.setattr(executor, "ray_session", lambda *a, **k: pytest.fail("Ray was started"))
    model, eval_fn, calib, _ = small
    with pytest.raises(ValueError, match=r"example_inputs: the FP32 model rejects them: RuntimeError"):
        tune(model, eval_fn, calib, workers=2, example_inputs=torch.randn(2, 3, 8, 8))


def test_skip_slower_leaves_out_the_pairs_timed_slower_than_fp32(small, monkeypatch):
    model, eval_fn, calib, _ = small
    timed = []

    def timings(calls, device, min_calls, min_seconds):
        # What each pair measured decides: here bf16 is "slower" for every op type, int8 faster.
        for call in calls:
            call()  # the compiled modules really run on the op's input shape
        precision = ("bf16", "int8")[len(timed) % 2]
        timed.append(precision)
        return ([1.0, 2.0] if precision == "bf16" else [1.0, 0.5]), 7

    monkeypatch.setattr(speed, "alternate_medians", timings)
    res = tune(model, eval_fn, calib, precisions=("bf16", "int8"), accuracy=AccuracyCriterion(0.05), workers=0, skip_slower=True)
    # Pairs are timed in op order: conv bf16, conv int8, fc1 bf16, fc1 int8 (the Linear type), norm bf16.
    assert timed == ["bf16", "int8", "bf16", "int8", "bf16"]
    assert set(res.skipped) == {("Conv2d", "bf16"), ("Linear", "bf16"), ("LayerNorm", "bf16")}
    assert all("compiled, on cpu" in why and "input (" in why for why in res.skipped.values())
    assert {p for t in res.trials for p in t.config.values()} == {"fp32", "int8"}  # no bf16 trial at all
    assert res.config["norm"] == "fp32"


def test_skip_slower_needs_calibration_batches_and_takes_their_shapes_without_int8(small, monkeypatch):
    model, eval_fn, calib, _ = small
    with pytest.raises(ValueError, match="skip_slower needs calib_data"):
        tune(model, eval_fn, None, precisions=("bf16",), workers=0, skip_slower=True)
    shapes = []
    monkeypatch.setattr(speed, "alternate_medians", lambda calls, *a: (shapes.append(calls[0].__defaults__[1].shape), ([1.0, 0.5], 7))[1])
    res = tune(model, eval_fn, calib, precisions=("bf16",), workers=0, skip_slower=True)
    assert shapes == [(32, 1, 8, 8), (32, 512), (32, 32)] and res.skipped == {}


def test_a_measures_file_that_is_not_ours_is_refused(tuned, tmp_path):
    import shutil

    from raytune_inc import HistoryError

    _, directory = tuned
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy)
    (copy / MEASURES_FILE).write_bytes(b"not arrow")
    with pytest.raises(HistoryError, match="not a raytune-inc measures file"):
        read_measures(copy)


@pytest.mark.slow
def test_many_compiled_models_of_one_class_are_all_compiled():
    # torch compiles a function at most 8 times (per input shape, per set of frozen weights) before it runs it eagerly,
    # silently; a process that tunes and times several models of one class compiles more than that.
    from torch._dynamo.utils import counters

    from raytune_inc import compile_model

    torch._dynamo.reset()
    counters.clear()
    x = torch.randn(4, 8)
    for _ in range(10):
        compiled = compile_model(nn.Sequential(nn.Linear(8, 8)).eval())
        compiled(x)
    assert counters["stats"]["unique_graphs"] == 10
