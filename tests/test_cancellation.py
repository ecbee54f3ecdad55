"""Moot speculative evaluations are cancelled: once a commit leaves no path of the strategy that asks for a running
speculative config (`may_ask`), its evaluator stops it where it looks and takes a config that is needed; the committed
trials are those of the sequential run (raytune_inc/driver.py, raytune_inc/running.py)."""

from __future__ import annotations

import pyarrow as pa
import pytest
import torch
from architectures import ARCHITECTURES, main_output
from hypothesis import given, settings
from hypothesis import strategies as st

from raytune_inc import AccuracyCriterion, tune_space
from raytune_inc.committed_path import CommittedPath
from raytune_inc.evaluation import MOOT, evaluate_config
from raytune_inc.pytorch.digest import model_digest
from raytune_inc.pytorch.model_evaluation import ModelEvaluation
from raytune_inc.pytorch.ops import discover_ops
from raytune_inc.pytorch.qparams import Calibration
from raytune_inc.records import Evaluation
from raytune_inc.run import TuningRun
from raytune_inc.running import EvaluationCancelled, Running, cancellable, read
from raytune_inc.settings import RunSettings
from raytune_inc.simulation import simulate
from raytune_inc.space import Op, TuningSpace
from raytune_inc.strategies import ConservativeStrategy, DefaultFirstStrategy, Outcome
from raytune_inc.synthetic import PerSampleEvaluation, random_space

CRITERION = AccuracyCriterion(0.01)


def send(plan, outcome):
    try:
        return plan.send(outcome)
    except StopIteration:
        return None


def given_from_here(plan, pending):
    """Every config the plan may still give (its pending one included), over every sequence of outcomes: the tree
    below it, walked whole."""
    if pending is None:
        return set()
    configs = {pending.config}
    for meets in (True, False):
        fork = plan.fork()
        configs |= given_from_here(fork, send(fork, Outcome(0.5, meets)))
    return configs


@settings(max_examples=60, deadline=None)
@given(
    n_ops=st.integers(1, 5),
    seed=st.integers(0, 10_000),
    strategy=st.sampled_from(["conservative", "default_first"]),
    precisions=st.sampled_from([("int8",), ("bf16", "int8"), ("fp16",), ("bf16", "int8_dynamic", "int8")]),
    path=st.lists(st.booleans(), max_size=12),
)
def test_a_plan_refuses_only_configs_that_no_continuation_gives(n_ops, seed, strategy, precisions, path):
    space = random_space(n_ops, seed=seed)
    if not any(op.supports(p) for op in space for p in precisions):
        return
    make = ConservativeStrategy() if strategy == "conservative" else DefaultFirstStrategy()
    plan = make.plan(space, precisions, CRITERION)
    pending = next(plan)
    everything = given_from_here(plan.fork(), pending)
    refused = 0
    for meets in [*path, None]:
        ahead = given_from_here(plan.fork(), pending)
        for config in everything:
            may = plan.may_ask(config)
            assert may or config not in ahead, f"refused {config} that a continuation gives"
            refused += not may
            if strategy == "conservative" and len(precisions) == 1:
                # One pool: the test is exact on the configs of the tree (nothing moot is kept running).
                assert may == (config in ahead), config
        if pending is None or meets is None:
            break
        pending = send(plan, Outcome(0.5, meets))
    if pending is None:
        assert not any(plan.may_ask(c) for c in everything), "a finished plan gives nothing more"


def test_the_committed_path_refuses_what_dedupe_max_trials_or_the_plan_rules_out():
    space = TuningSpace([Op("c1", "Conv2d", ("int8",)), Op("l1", "Linear", ("int8",)), Op("l2", "Linear", ("int8",))])
    int8 = space.all_fp32().replace
    plan = ConservativeStrategy().plan
    paths = {n: CommittedPath(plan(space, ("int8",), CRITERION), CRITERION, 1.0, space.all_fp32(), n) for n in (2, 100)}
    for path in paths.values():
        first = path.next_trial()
        assert first.config == int8(["c1"], "int8") and path.may_ask(first.config)
        assert path.may_ask(int8(["c1", "l1", "l2"], "int8")) and path.may_ask(int8(["l1", "l2"], "int8")), "either outcome's next"
        assert not path.may_ask(space.all_fp32()), "the baseline: answered by dedupe"
        path.commit(Evaluation(first.config, 0.5))  # c1 misses the goal: it stays fp32 from here on
        assert path.next_trial().config == int8(["l1", "l2"], "int8")
        assert not path.may_ask(int8(["c1", "l1", "l2"], "int8")), "moot: the next trial had c1 met the goal"
        assert not path.may_ask(first.config), "answered by dedupe"
    assert paths[100].may_ask(int8(["l1"], "int8")) and not paths[2].may_ask(int8(["l1"], "int8")), "max_trials=2: one more"
    paths[100].stop("timeout")
    assert not paths[100].may_ask(int8(["l1"], "int8")), "a stopped walk asks nothing"


def verdicts(res):
    return [(t.config, t.meets, t.stage) for t in res.trials]


def cancelled_rows(history: pa.Table) -> list[dict]:
    return [r for r in history.to_pylist() if r["status"] == "cancelled"]


@pytest.mark.parametrize("workers", [2, 4])
def test_virtual_evaluators_cancel_moot_configs_and_commit_what_the_sequential_run_does(workers):
    space = random_space(24, seed=5)
    evaluate = PerSampleEvaluation(space, 5, sensitive=0.4)
    sequential = tune_space(space, evaluate, precisions=("bf16", "int8"), workers=0)
    runs = {}
    for early in (True, False):
        settings = RunSettings(precisions=("bf16", "int8"), workers=0)
        run = TuningRun(space, PerSampleEvaluation(space, 5, sensitive=0.4), settings, early_decisions=early)
        runs[early] = (run, simulate(run, workers))
    (run, time_with), (full, time_without) = runs[True], runs[False]
    assert verdicts(run.result()) == verdicts(full.result()) == verdicts(sequential)
    assert run.result().config == sequential.config
    moot = cancelled_rows(run.result().history)
    assert moot and all(r["error"] == MOOT and r["commit_seq"] is None for r in moot)
    committed_keys = {t.space_config.key() for t in sequential.trials}
    assert not {r["config"] for r in moot} & committed_keys, "a cancelled config is never asked for"
    assert not cancelled_rows(full.result().history), "without early decisions every evaluation runs to its end"
    assert time_with <= time_without


def test_a_cancelled_running_evaluation_stops_after_its_step_and_is_closed():
    closed = []

    def steps():
        try:
            for k in range(1, 6):
                yield Running(0.9 * k, k, 5)
        finally:
            closed.append(True)

    asked = iter([False, False, True])
    with cancellable(lambda: next(asked)), pytest.raises(EvaluationCancelled) as stopped:
        read(steps(), None)
    assert (stopped.value.samples, stopped.value.samples_total) == (3, 5) and closed == [True]
    with cancellable(lambda: True):
        assert read(iter([Running(4.5, 5, 5)]), None).accuracy == 0.9, "a read at its end is not stopped"

    def looks_itself():  # as tune's model does before a forward call
        yield Running(1.0, 1, 5)
        raise EvaluationCancelled

    with cancellable(lambda: False), pytest.raises(EvaluationCancelled) as stopped:
        read(looks_itself(), None)
    assert (stopped.value.samples, stopped.value.samples_total) == (1, 5), "the samples read before it looked"
    space = random_space(4, seed=0)
    evaluation = evaluate_config(PerSampleEvaluation(space, 0), space.all_fp32(), cancelled=lambda: True)
    assert (evaluation.status, evaluation.accuracy, evaluation.error) == ("cancelled", None, MOOT)
    assert (evaluation.samples, evaluation.samples_total) == (20, 400)


def test_a_cancelled_trial_of_a_model_stops_before_a_forward_call_and_leaves_the_model_whole():
    case = ARCHITECTURES["gpt2"]()
    digest = model_digest(case.model)
    calls = []

    def eval_fn(model):  # does not yield: only the model's forward calls are where it may stop
        for _ in range(4):
            calls.append(float(main_output(model(**case.inputs)).float().mean()))
        return 1.0

    space = discover_ops(case.model)
    evaluation = ModelEvaluation(case.model, eval_fn, Calibration())
    config = space.config({op.name: "bf16" if op.supports("bf16") else "fp32" for op in space})  # no calibration needed
    result = evaluate_config(evaluation, config, cancelled=lambda: len(calls) >= 2)
    assert result.status == "cancelled" and len(calls) == 2, "stopped before its third forward call"
    assert model_digest(case.model) == digest and not case.model._forward_pre_hooks, "model whole, no hook left"
    calls.clear()
    assert evaluate_config(evaluation, config).accuracy == 1.0 and len(calls) == 4, "not cancellable: read to its end"
    assert torch.is_grad_enabled()


@pytest.mark.slow
def test_ray_evaluators_stop_moot_evaluations_and_live_on(ray_local):
    space = random_space(16, seed=2)
    kwargs = {"precisions": ("bf16", "int8"), "accuracy": CRITERION}
    sequential = tune_space(space, PerSampleEvaluation(space, 2, sensitive=0.4), workers=0, **kwargs)
    parallel = tune_space(space, PerSampleEvaluation(space, 2, sensitive=0.4, cost=0.4), workers=3, **kwargs)
    assert verdicts(parallel) == verdicts(sequential) and parallel.config == sequential.config
    moot = cancelled_rows(parallel.history)
    assert moot and all(r["error"] == MOOT and r["commit_seq"] is None for r in moot)
    took = [(r["end_time"] - r["start_time"]).total_seconds() for r in moot]
    assert min(took) < 0.3, f"stopped part way, not run to its end (0.4 s): {took}"
    evaluators = {w.rsplit("-", 1)[-1] for w in parallel.history["worker"].to_pylist() if "-evaluator-" in w}
    assert evaluators <= {"0", "1", "2"}, f"no evaluator replaced: {evaluators}"
    assert {r["worker"] for r in moot} <= {w for w in parallel.history["worker"].to_pylist() if "-evaluator-" in w}


class CancelsEverything(ConservativeStrategy):
    """Conservative whose plan says it gives nothing but its pending candidate: every speculative evaluation is
    cancelled at the next commit, those asked for after all included."""

    name = "conservative-cancels-everything"

    def plan(self, space, precisions, criterion):
        plan = super().plan(space, precisions, criterion)
        plan.may_ask = lambda config: False  # forks share it (copy.copy keeps the instance's attributes)
        return plan


def test_a_config_cancelled_wrongly_is_evaluated_again_when_it_is_asked_for():
    space = random_space(24, seed=5)
    sequential = tune_space(space, PerSampleEvaluation(space, 5, sensitive=0.4), precisions=("bf16", "int8"), workers=0)
    settings = RunSettings(strategy=CancelsEverything(), precisions=("bf16", "int8"), workers=0)
    run = TuningRun(space, PerSampleEvaluation(space, 5, sensitive=0.4), settings)
    simulate(run, 4)
    assert verdicts(run.result()) == verdicts(sequential) and run.result().config == sequential.config
    cancelled = {r["config"] for r in cancelled_rows(run.result().history)}
    assert cancelled & {t.space_config.key() for t in run.result().trials}, "cancelled, then asked for and evaluated"
