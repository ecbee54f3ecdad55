"""Speculation and the driver's commit logic without Ray: the real driver on a virtual clock."""

from __future__ import annotations

import random

from helpers import committed
from hypothesis import given, settings
from hypothesis import strategies as st

from raytune_inc import AccuracyCriterion, Op, TuningSpace
from raytune_inc.pass_model import PassModel
from raytune_inc.run import TuningRun
from raytune_inc.sequential import SequentialExecutor
from raytune_inc.settings import RunSettings
from raytune_inc.simulation import simulate
from raytune_inc.space import Config
from raytune_inc.speculation import Frontier, Speculator
from raytune_inc.strategies import ConservativeStrategy, Outcome
from raytune_inc.synthetic import AdditiveLossEvaluation, random_space


def make_run(space, evaluate, strategy, tolerable_loss, max_trials, baseline=None):
    return TuningRun(space, evaluate, RunSettings(strategy, AccuracyCriterion(tolerable_loss), max_trials=max_trials), baseline)


@settings(max_examples=150, deadline=None)
@given(
    n_ops=st.integers(1, 16),
    seed=st.integers(0, 100_000),
    strategy=st.sampled_from(["conservative", "auto_mixed_precision", "default_first"]),
    tolerable_loss=st.sampled_from([0.0, 0.001, 0.003, 0.01, 0.05]),
    max_trials=st.integers(1, 40),
    workers=st.integers(1, 8),
    sensitive=st.sampled_from([0.0, 0.2, 0.6]),
    given_baseline=st.booleans(),
)
def test_any_number_of_workers_commits_what_the_sequential_walk_commits(
    n_ops, seed, strategy, tolerable_loss, max_trials, workers, sensitive, given_baseline
):
    space = random_space(n_ops, seed=seed)
    evaluate = AdditiveLossEvaluation(space, seed=seed, sensitive=sensitive)
    baseline = evaluate(space.all_fp32().as_dict()) if given_baseline else None
    sequential = make_run(space, evaluate, strategy, tolerable_loss, max_trials, baseline)
    SequentialExecutor().run(sequential)
    parallel = make_run(space, evaluate, strategy, tolerable_loss, max_trials, baseline)
    simulate(parallel, workers)
    assert committed(parallel.result()) == committed(sequential.result())
    assert parallel.result().config == sequential.result().config
    assert parallel.result().stop_reason == sequential.result().stop_reason
    if workers == 1:
        assert parallel.result().evaluations == sequential.result().evaluations, "one worker has no room to speculate"


def test_more_workers_commit_more_trials_per_evaluation_time():
    rates = {}
    for workers in (1, 4):
        total_trials = total_time = 0.0
        for seed in range(4):
            space = random_space(30, seed=seed)
            run = make_run(space, AdditiveLossEvaluation(space, seed=seed), "conservative", 0.01, 100)
            total_time += simulate(run, workers)
            total_trials += len(run.result().trials)
        rates[workers] = total_trials / total_time
    assert rates[1] <= 1.0
    assert rates[4] > 2.0 * rates[1], rates


def three_op_space():
    return TuningSpace([Op("conv1", "Conv2d", ("int8",)), Op("conv2", "Conv2d", ("int8",)), Op("fc", "Linear", ("int8",))])


def test_the_frontier_candidate_comes_first_then_both_branches():
    space = three_op_space()
    crit = AccuracyCriterion()
    spec = Speculator(ConservativeStrategy(), space, ("int8",), crit, 100)
    model = PassModel(space, crit)
    picks = spec.pick(Frontier((), {}, 0), {}, set(), 3, model)
    configs = [p.config.as_dict() for p in picks]
    assert configs[0] == {"conv1": "int8", "conv2": "int8", "fc": "fp32"}  # the strategy's first trial
    # the next trial if the first meets ({fc} on top of it) and if it fails ({conv1} alone) are both candidates
    assert {"conv1": "int8", "conv2": "int8", "fc": "int8"} in configs[1:]
    assert {"conv1": "int8", "conv2": "fp32", "fc": "fp32"} in configs[1:]


def test_known_results_are_followed_not_guessed_and_busy_configs_are_skipped():
    space = three_op_space()
    crit = AccuracyCriterion()
    spec = Speculator(ConservativeStrategy(), space, ("int8",), crit, 100)
    model = PassModel(space, crit)
    first = Config(space, ("int8", "int8", "fp32"))
    # the first trial's real result is known and fails: the walk must go to the op-wise fallback for sure
    picks = spec.pick(Frontier((), {}, 0), {first: Outcome(0.5, False)}, set(), 1, model)
    assert [p.config for p in picks] == [Config(space, ("int8", "fp32", "fp32"))]
    picks = spec.pick(Frontier((), {}, 0), {first: Outcome(0.5, False)}, {Config(space, ("int8", "fp32", "fp32"))}, 1, model)
    assert picks and picks[0].config != Config(space, ("int8", "fp32", "fp32"))


def test_no_guess_beyond_max_trials():
    space = three_op_space()
    crit = AccuracyCriterion()
    spec = Speculator(ConservativeStrategy(), space, ("int8",), crit, max_trials=1)
    picks = spec.pick(Frontier((), {}, 0), {}, set(), 4, PassModel(space, crit))
    assert [p.config for p in picks] == [Config(space, ("int8", "int8", "fp32"))]


def test_the_additive_model_learns_per_op_losses():
    space = random_space(8, seed=1)
    evaluate = AdditiveLossEvaluation(space, seed=1, sensitive=0.5)
    crit = AccuracyCriterion()
    model = PassModel(space, crit)
    model.set_baseline(evaluate(space.all_fp32().as_dict()))
    singles = [space.all_fp32().replace([op.name], "int8") for op in space if "int8" in op.precisions]
    for config in singles:
        model.observe("int8 op-wise", config, evaluate(config.as_dict()))
    both = singles[0].replace([space.names[space.index(next(iter(n for n, p in singles[1].items() if p == "int8")))]], "int8")
    assert abs(model.predict(both) - evaluate(both.as_dict())) < 1e-3


def test_the_additive_model_fits_the_most_recent_results_only():
    space = random_space(12, seed=2)
    evaluate = AdditiveLossEvaluation(space, seed=2, sensitive=0.5)
    rng = random.Random(0)
    configs = [Config(space, tuple(rng.choice(("fp32", *op.precisions)) for op in space)) for _ in range(PassModel.MAX_FIT + 30)]
    everything, recent = PassModel(space, AccuracyCriterion()), PassModel(space, AccuracyCriterion())
    for model, seen in ((everything, configs), (recent, configs[-PassModel.MAX_FIT :])):
        model.set_baseline(evaluate(space.all_fp32().as_dict()))
        for config in seen:
            model.observe("int8 op-wise", config, evaluate(config.as_dict()))
    for config in configs[:10]:
        assert abs(everything.predict(config) - recent.predict(config)) < 1e-9


def _walk(plan, outcomes):
    """The candidates a plan yields when sent `outcomes` in turn (a list shorter than the outcomes if it ends)."""
    seen = []
    try:
        seen.append(next(plan))
        for outcome in outcomes:
            seen.append(plan.send(outcome))
    except StopIteration:
        pass
    return seen


def test_a_forked_conservative_plan_goes_on_independently():
    space = random_space(12, seed=4)
    strategy = ConservativeStrategy()
    precisions, criterion = ("bf16", "fp16", "int8"), AccuracyCriterion()
    rng = random.Random(0)
    outcomes = [Outcome(0.9, rng.random() < 0.7) for _ in range(60)]
    plan = strategy.plan(space, precisions, criterion)
    _walk(plan, outcomes[:5])
    fork = plan.fork()
    other = [Outcome(0.9, not o.meets) for o in outcomes[5:]]
    # Each goes on as a fresh plan sent the same outcomes would, whatever the other is sent.
    assert _walk_from(plan, outcomes[5:]) == _walk(strategy.plan(space, precisions, criterion), outcomes)[6:]
    assert _walk_from(fork, other) == _walk(strategy.plan(space, precisions, criterion), outcomes[:5] + other)[6:]


def _walk_from(plan, outcomes):
    seen = []
    try:
        for outcome in outcomes:
            seen.append(plan.send(outcome))
    except StopIteration:
        pass
    return seen


def test_speculation_forks_the_plan_instead_of_replaying_the_strategy(monkeypatch):
    calls = []
    original = ConservativeStrategy.plan
    monkeypatch.setattr(ConservativeStrategy, "plan", lambda self, *args: calls.append(1) or original(self, *args))
    space = random_space(40, seed=2)
    evaluate = AdditiveLossEvaluation(space, seed=2, sensitive=0.3)  # many op-wise trials, so many picks
    run = TuningRun(space, evaluate, RunSettings())
    simulate(run, 4)
    assert len(run.result().trials) > 30
    assert len(calls) == 2  # the committed path's plan and the one the speculation keeps at the frontier
