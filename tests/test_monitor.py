"""What a run reports: its counts, the Ray metrics it records, and the progress line."""

from __future__ import annotations

import io
from collections import defaultdict
from types import SimpleNamespace

import pytest

from raytune_inc import monitor, tune_space
from raytune_inc.monitor import ProgressLine, RunMonitor, progress_wanted
from raytune_inc.run import TuningRun
from raytune_inc.settings import RunSettings
from raytune_inc.simulation import simulate
from raytune_inc.synthetic import AdditiveLossEvaluation, random_space


class FakeMetric:
    """Records what a ray.util.metrics object is given, by tags."""

    def __init__(self):
        self.totals: dict[tuple, float] = defaultdict(float)
        self.values: dict[tuple, float] = {}
        self.observed: list[tuple[float, tuple]] = []

    def inc(self, value=1.0, tags=None):
        self.totals[tuple(sorted(tags.items()))] += value

    def set(self, value, tags=None):
        self.values[tuple(sorted(tags.items()))] = value

    def observe(self, value, tags=None):
        self.observed.append((value, tuple(sorted(tags.items()))))


def history_counts(history) -> dict[str, int]:
    rows = history.to_pylist()
    return {
        "committed": sum(r["commit_seq"] is not None for r in rows),
        "evaluated": sum(r["status"] in ("ok", "error") for r in rows),
        "errored": sum(r["status"] == "error" for r in rows),
        "wasted": sum(r["commit_seq"] is None and r["stage"] != "baseline" and r["status"] in ("ok", "error") for r in rows),
        "cancelled": sum(r["status"] == "cancelled" for r in rows),
    }


@pytest.mark.parametrize("seed", range(4))
def test_counts_match_the_history_of_a_parallel_run(seed):
    space = random_space(24, seed=seed)
    run = TuningRun(space, AdditiveLossEvaluation(space, seed=seed), RunSettings())
    simulate(run, 4)
    assert run.monitor.ahead > 0 or run.monitor.committed == len(run.result().trials)
    run.monitor.finished()
    expected = history_counts(run.history())
    m = run.monitor
    assert (m.committed, m.evaluated, m.errored, m.wasted, m.cancelled) == tuple(expected.values())
    assert expected["wasted"] + expected["cancelled"] > 0  # 4 evaluators speculate: some guesses miss (or are made moot)
    assert m.best == run.result().accuracy and m.baseline == run.baseline and m.ahead == 0


class Flaky(AdditiveLossEvaluation):
    """Raises on configs with a multiple of 7 ops lowered."""

    def __call__(self, config):
        lowered = sum(p != "fp32" for p in config.values())
        if lowered and lowered % 7 == 0:
            raise RuntimeError("flaky op")
        return super().__call__(config)


@pytest.mark.usefixtures("ray_local")
def test_ray_metrics_get_every_trial(monkeypatch):
    names = ["trials_committed", "trials_evaluated", "trials_wasted", "trials_errored", "trials_lost", "trials_cancelled"]
    names += ["trials_in_flight", "evaluators_idle", "baseline_accuracy", "best_accuracy", "trial_duration_seconds"]
    fakes = {name: FakeMetric() for name in names}
    monkeypatch.setattr(monitor, "_METRICS", fakes)
    space = random_space(20, seed=3)
    res = tune_space(space, Flaky(space, seed=3, cost=0.05), workers=3)  # long enough that all three evaluators take work
    expected = history_counts(res.history)
    assert expected["errored"] > 0 and expected["wasted"] + expected["cancelled"] > 0

    def total(name, **tags):
        return sum(v for k, v in fakes[name].totals.items() if all((t, tags[t]) in k for t in tags))

    run = res.run_id[:8]
    for name in ("committed", "evaluated", "errored", "wasted", "cancelled"):
        assert total(f"trials_{name}", strategy="conservative", run=run) == expected[name], name
    stages = {dict(k)["stage"] for k in fakes["trials_committed"].totals}
    assert stages == {t.stage for t in res.trials}
    assert len(fakes["trial_duration_seconds"].observed) == expected["evaluated"]
    # Each ok evaluation sleeps 0.01 s; the errored ones raise before that.
    assert sum(v >= 0.01 for v, _ in fakes["trial_duration_seconds"].observed) == expected["evaluated"] - expected["errored"]
    tags = (("run", run), ("strategy", "conservative"))
    assert fakes["baseline_accuracy"].values[tags] == res.baseline
    assert fakes["best_accuracy"].values[tags] == res.accuracy
    assert fakes["trials_in_flight"].values[tags] == 0 and fakes["evaluators_idle"].values[tags] == 0


def test_progress_line_redraws_one_line_and_ends_it():
    stream = io.StringIO()
    m = RunMonitor("conservative", stream=stream)
    assert m.progress is None  # a StringIO is not a terminal
    m.progress = ProgressLine("conservative", stream, interval=0.0)
    m.set_baseline(0.95, 0.9405)
    m.pool(3, 1)
    m.finished()
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert "0 committed, 3 in flight, 0 ahead, best none yet (baseline 0.9500, goal 0.9405)" in text
    assert "0 committed, 0 wasted" in text.split("\r")[-1]


def test_progress_is_wanted_on_a_terminal_or_when_forced(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("RAYTUNE_INC_PROGRESS", raising=False)
    assert progress_wanted(Terminal()) and not progress_wanted(io.StringIO())
    monkeypatch.setenv("RAYTUNE_INC_PROGRESS", "0")
    assert not progress_wanted(Terminal())
    monkeypatch.setenv("RAYTUNE_INC_PROGRESS", "1")
    assert progress_wanted(io.StringIO())


@pytest.mark.usefixtures("ray_local")
def test_an_evaluator_reports_its_lowered_cache_to_the_dashboard(monkeypatch):
    import ray
    import torch
    from ray.util import metrics
    from torch import nn

    from actors.evaluator import Evaluator, RemoteEvaluator
    from raytune_inc.pytorch.model_evaluation import ModelEvaluation
    from raytune_inc.pytorch.ops import discover_ops
    from raytune_inc.pytorch.qparams import Calibration

    gauges: dict[str, FakeMetric] = {}

    def gauge(name, description="", tag_keys=()):
        return gauges.setdefault(name, FakeMetric())

    monkeypatch.setattr(metrics, "Gauge", gauge)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    x = torch.randn(8, 16)
    space = discover_ops(model, None, None)
    evaluation = ModelEvaluation(model, lambda m: float(m(x).sum()), Calibration(), lowered_cache=1.0)
    evaluator = Evaluator("raytune-inc-abcd1234-evaluator-0")  # in this process, so that its gauges are ours to read
    evaluator._context = SimpleNamespace(get_assigned_resources=lambda: {"CPU": 1.0}, is_canceled=lambda: False)  # as on Ray
    evaluator.load(space, evaluation)
    evaluator.evaluate(("int8_dynamic", "fp32"))
    tags = (("evaluator", "raytune-inc-abcd1234-evaluator-0"),)
    stats = evaluator.cache_stats()
    assert stats["modules"] == 1 and stats["bytes"] > 32 * 16  # the int8 weight and its scales
    assert gauges["raytune_inc_lowered_cache_modules"].values[tags] == 1
    assert gauges["raytune_inc_lowered_cache_bytes"].values[tags] == stats["bytes"]
    evaluator.evaluate(("int8_dynamic", "int8_dynamic"))
    assert gauges["raytune_inc_lowered_cache_modules"].values[tags] == 2
    assert gauges["raytune_inc_lowered_cache_bytes"].values[tags] == evaluator.cache_stats()["bytes"] > stats["bytes"]
    # On Ray, the actor answers the same, and an evaluation without a cache (tune_space's) has none.
    remote = RemoteEvaluator.remote("raytune-inc-abcd1234-evaluator-1")
    ray.get(remote.load.remote(space, evaluation))
    ray.get(remote.evaluate.remote(("int8_dynamic", "fp32")))
    assert ray.get(remote.cache_stats.remote())["modules"] == 1
    ray.get(remote.load.remote(space, lambda config: 1.0))
    assert ray.get(remote.cache_stats.remote()) is None
    ray.kill(remote)
