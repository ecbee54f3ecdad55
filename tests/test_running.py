"""Early decisions: an evaluation that yields `Running` after each batch stops once its failure is certain, and the
committed trials, their verdicts and the result are those of full evaluations (raytune_inc/running.py)."""

from __future__ import annotations

import math
import shutil

import pyarrow as pa
import pytest
import torch
from architectures import ARCHITECTURES, main_output
from helpers import committed
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from raytune_inc import AccuracyCriterion, Running, load_history, tune, tune_space
from raytune_inc.history.files import EVALUATION_SCHEMA_BEFORE_SAMPLES
from raytune_inc.pytorch.digest import model_digest
from raytune_inc.run import TuningRun
from raytune_inc.running import Goal, RunningError, read
from raytune_inc.settings import RunSettings
from raytune_inc.simulation import simulate
from raytune_inc.synthetic import PerSampleEvaluation, random_space


def verdicts(res):
    """The committed trials as the strategy saw them: config, verdict, stage (a trial another run read to its end has
    an accuracy where a rejected one has its bound)."""
    return [(t.config, t.meets, t.stage) for t in res.trials]


def running(scores, batch, low=0.0, high=1.0):
    total = 0.0
    for start in range(0, len(scores), batch):
        total += sum(scores[start : start + batch])
        yield Running(total, min(start + batch, len(scores)), len(scores), low, high)


def test_the_bounds_hold_every_final_mean_the_scores_left_allow():
    assert Running(3.0, 4, 10).bounds() == pytest.approx((0.3, 0.9), abs=1e-5)  # widened by rounding's 1e-6 a score
    assert Running(3.0, 4, 10, low=-1.0, high=1.0).bounds() == pytest.approx((-0.3, 0.9), abs=1e-5)
    assert Running(3.0, 4, 10, high=math.inf).bounds() == (pytest.approx(0.3, abs=1e-5), math.inf)
    low, high = Running(3.0, 4, 10).bounds()
    assert low < 0.3 and high > 0.9, "wider, never narrower"
    assert Running(5.0, 10, 10, high=math.inf).bounds() == (0.5, 0.5)  # all read: no inf * 0


def test_the_goal_is_missed_only_when_the_whole_interval_fails():
    assert Goal(0.8).certainly_missed(0.1, 0.79)
    assert not Goal(0.8).certainly_missed(0.1, 0.8)  # a tie meets the goal
    assert not Goal(0.8).certainly_missed(0.1, 0.8 - 1e-12)  # within rounding of the goal: read on
    assert Goal(2.0, higher_is_better=False).certainly_missed(2.1, math.inf)
    assert not Goal(2.0, higher_is_better=False).certainly_missed(1.9, math.inf)


@settings(max_examples=300, deadline=None)
@given(
    scores=st.lists(st.floats(0, 1), min_size=1, max_size=60),
    batch=st.integers(1, 7),
    goal=st.floats(0, 1),
    higher=st.booleans(),
)
def test_a_rejection_is_never_wrong_and_a_full_read_is_the_mean(scores, batch, goal, higher):
    full = sum(scores) / len(scores)
    criterion = AccuracyCriterion(0.0, "absolute", higher_is_better=higher)
    result = read(running(scores, batch), Goal(goal, higher))
    if result.rejected:
        assert not criterion.meets(full, goal), "rejected a trial that meets the goal read to its end"
        assert result.samples < result.samples_total == len(scores)
        assert result.accuracy is None
        assert (result.bound >= full - 1e-12) if higher else (result.bound <= full + 1e-12), "the bound must hold the final mean"
    else:
        assert result.accuracy == pytest.approx(full) and result.samples == len(scores)


def test_a_rejected_evaluation_is_closed_at_once():
    closed = []

    def evaluation():
        try:
            yield Running(0.0, 5, 10)
            yield Running(5.0, 10, 10)
        finally:
            closed.append(True)

    result = read(evaluation(), Goal(0.9))
    assert result.rejected and result.samples == 5 and result.bound == pytest.approx(0.5, abs=1e-5) and closed == [True]


def test_scores_past_their_range_by_float32_rounding_are_taken_and_the_bounds_widened():
    scores = [float(torch.tensor(1.0000001, dtype=torch.float32))] * 4  # a cosine similarity of equal vectors
    assert read(running(scores, 2, low=-1.0), None).accuracy == pytest.approx(1.0)
    low, high = Running(2.0000002, 2, 4, low=-1.0).bounds()
    assert high >= (2.0000002 + 2 * 1.0000001) / 4 and low <= (2.0000002 - 2) / 4


@pytest.mark.parametrize(
    ("steps", "cause"),
    [
        ([0.5], "must yield Running"),
        ([Running(1.0, 2, 4), Running(1.0, 1, 4)], "count went down"),
        ([Running(1.0, 2, 4)], "ended after 2 of 4 samples"),
        ([Running(3.0, 2, 4)], "2 scores in [0.0, 1.0] cannot sum to 3.0"),
        ([Running(1.0, 2, 4), Running(2.0, 4, 5)], "must stay the same"),
        ([Running(1.0, 5, 4)], "0 <= count <= samples"),
        ([Running(float("nan"), 1, 4)], "real numbers"),
    ],
)
def test_a_broken_protocol_stops_the_run_naming_the_cause(steps, cause):
    space = random_space(3, seed=0)

    def evaluate(config):
        return iter(steps)

    with pytest.raises(RunningError, match=f"config .*{cause}".replace("[", r"\[").replace("]", r"\]")):
        tune_space(space, evaluate, precisions=("int8",), workers=0)


@settings(max_examples=40, deadline=None)
@given(
    n_ops=st.integers(1, 16),
    seed=st.integers(0, 10_000),
    strategy=st.sampled_from(["conservative", "default_first", "auto_mixed_precision"]),
    tolerable_loss=st.sampled_from([0.0, 0.002, 0.01, 0.03]),
    precisions=st.sampled_from([("int8",), ("bf16", "int8"), ("fp16",), ("bf16", "fp16", "int8")]),
    batch=st.sampled_from([1, 7, 50]),
    max_trials=st.sampled_from([3, 100]),
)
def test_early_rejection_never_changes_the_committed_trials(n_ops, seed, strategy, tolerable_loss, precisions, batch, max_trials):
    space = random_space(n_ops, seed=seed)
    assume(any(op.supports(p) for op in space for p in precisions))
    if strategy == "auto_mixed_precision":
        assume(any(op.supports(p) for op in space for p in precisions if p in ("bf16", "fp16")))
    runs = {}
    for yields in (True, False):
        evaluate = PerSampleEvaluation(space, seed, samples=200, batch=batch, yields=yields, sensitive=0.4)
        accuracy = AccuracyCriterion(tolerable_loss)
        runs[yields] = (tune_space(space, evaluate, strategy, accuracy, precisions, max_trials, workers=0), evaluate.reads)
    (early, early_reads), (full, full_reads) = runs[True], runs[False]
    assert verdicts(early) == verdicts(full)
    assert early.config == full.config and early.accuracy == full.accuracy and early.stop_reason == full.stop_reason
    for e, f in zip(early.trials, full.trials, strict=True):
        assert e.accuracy == f.accuracy if e.status != "rejected" else (e.accuracy is None and not f.meets)
    assert early_reads <= full_reads
    statuses = early.history["status"].to_pylist()
    if strategy == "auto_mixed_precision":
        assert "rejected" not in statuses, "auto mixed precision compares accuracies: every evaluation is read to its end"
    assert ("rejected" in statuses) == (early_reads < full_reads)


def test_virtual_evaluators_reject_what_the_sequential_run_rejects():
    space = random_space(24, seed=5)
    sequential = tune_space(space, PerSampleEvaluation(space, 5, sensitive=0.4), precisions=("bf16", "int8"), workers=0)
    run = TuningRun(space, PerSampleEvaluation(space, 5, sensitive=0.4), RunSettings(precisions=("bf16", "int8"), workers=0))
    simulate(run, 4)
    assert verdicts(run.result()) == verdicts(sequential) and run.result().config == sequential.config
    assert "rejected" in [t.status for t in sequential.trials] and "rejected" in [t.status for t in run.result().trials]
    for p, s in zip(run.result().trials, sequential.trials, strict=True):  # read to the end where the goal was not known
        assert p.accuracy == s.accuracy or (s.status == "rejected" and not p.meets)


@pytest.mark.slow
def test_ray_evaluators_reject_as_the_sequential_run_does(ray_local):
    space = random_space(16, seed=2)
    kwargs = {"precisions": ("bf16", "int8"), "accuracy": AccuracyCriterion(0.01)}
    sequential = tune_space(space, PerSampleEvaluation(space, 2, sensitive=0.4), workers=0, **kwargs)
    parallel = tune_space(space, PerSampleEvaluation(space, 2, sensitive=0.4, cost=0.05), workers=2, **kwargs)
    assert verdicts(parallel) == verdicts(sequential) and parallel.config == sequential.config
    rows = parallel.history.filter(pa.compute.equal(parallel.history["status"], "rejected")).to_pylist()
    assert rows and all(r["samples"] < r["samples_total"] == 400 and r["accuracy"] is None for r in rows)
    assert all(r["bound"] < parallel.baseline * 0.99 for r in rows), "a rejected row's bound fails the goal"
    assert {r["worker"] for r in rows} - {"in-process"}, "rejected on an evaluator, not only in the driver"


def test_a_resumed_run_takes_its_rejected_rows_as_recorded(tmp_path):
    space = random_space(20, seed=7)
    kwargs = {"precisions": ("int8",), "accuracy": AccuracyCriterion(0.01), "workers": 0, "checkpoint": tmp_path / "run"}
    first = tune_space(space, PerSampleEvaluation(space, 7, sensitive=0.4), **kwargs, max_trials=100)
    assert "rejected" in [t.status for t in first.trials]
    shutil.rmtree(tmp_path / "run" / "lock", ignore_errors=True)
    again = PerSampleEvaluation(space, 7, sensitive=0.4)
    resumed = tune_space(space, again, **kwargs, max_trials=100, resume=True)
    assert committed(resumed) == committed(first) and again.reads == 0, "nothing evaluated again"
    assert [t.bound for t in resumed.trials] == [t.bound for t in first.trials]


def test_a_history_written_before_the_samples_columns_reads_with_them_null(tmp_path):
    space = random_space(6, seed=1)
    kwargs = {"precisions": ("int8",), "workers": 0, "checkpoint": tmp_path / "run"}
    first = tune_space(space, PerSampleEvaluation(space, 1, yields=False), **kwargs)
    segment = tmp_path / "run" / "evaluations-0000.arrows"
    table = pa.ipc.open_stream(pa.OSFile(str(segment))).read_all()
    old = table.select(EVALUATION_SCHEMA_BEFORE_SAMPLES.names).cast(EVALUATION_SCHEMA_BEFORE_SAMPLES)
    with pa.OSFile(str(segment), "wb") as sink, pa.ipc.new_stream(sink, EVALUATION_SCHEMA_BEFORE_SAMPLES) as writer:
        writer.write_table(old)
    loaded = load_history(tmp_path / "run")
    assert loaded.num_rows == first.history.num_rows and loaded["samples"].null_count == loaded.num_rows
    again = PerSampleEvaluation(space, 1)
    resumed = tune_space(space, again, **kwargs, resume=True)
    assert committed(resumed) == committed(first) and again.reads == 0


class RunningFidelity:
    """eval_fn yielding Running: each sample's cosine similarity to the FP32 model's output (in [-1, 1]), `batch`
    samples at a time; `read` counts the samples it read (in this process)."""

    def __init__(self, reference, inputs, batch=2):
        self.inputs, self.batch, self.read = inputs, batch, 0
        with torch.no_grad():
            self.expected = main_output(reference(**inputs)).float().flatten(1)

    def __call__(self, model):
        n, total = len(self.expected), 0.0
        for start in range(0, n, self.batch):
            part = {k: v[start : start + self.batch] for k, v in self.inputs.items()}
            out = main_output(model(**part)).float().flatten(1)
            total += float(torch.nn.functional.cosine_similarity(out, self.expected[start : start + self.batch], dim=-1).sum())
            self.read += len(out)
            yield Running(total, min(start + self.batch, n), n, low=-1.0, high=1.0)


def test_tune_stops_failing_trials_early_and_leaves_the_model_whole():
    case = ARCHITECTURES["gpt2"]()
    digest = model_digest(case.model)
    results = {}
    for early in (True, False):
        fidelity = RunningFidelity(case.model, case.inputs)
        accuracy = AccuracyCriterion(1e-5)
        res = tune(case.model, fidelity, case.calib, accuracy=accuracy, precisions=("int8",), workers=0, early_decisions=early)
        results[early] = (res, fidelity.read)
    (early, early_read), (full, full_read) = results[True], results[False]
    assert verdicts(early) == verdicts(full) and early.config == full.config
    assert "rejected" in [t.status for t in early.trials] and early_read < full_read
    assert "rejected" not in full.history["status"].to_pylist()
    assert model_digest(case.model) == digest, "a rejected trial must leave the model as it was"


@pytest.mark.slow
def test_tune_on_ray_evaluators_and_the_lent_driver_rejects_as_in_process(ray_local):
    case = ARCHITECTURES["gpt2"]()
    kwargs = {"accuracy": AccuracyCriterion(1e-5), "precisions": ("int8",), "sensitivity": False}
    sequential = tune(case.model, RunningFidelity(case.model, case.inputs), case.calib, workers=0, **kwargs)
    parallel = tune(case.model, RunningFidelity(case.model, case.inputs), case.calib, workers=2, **kwargs)
    assert verdicts(parallel) == verdicts(sequential) and parallel.config == sequential.config
    rejected = [r for r in parallel.history.to_pylist() if r["status"] == "rejected"]
    assert rejected and all(r["samples"] < r["samples_total"] == 8 for r in rejected)
