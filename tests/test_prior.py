"""The speculation's prior: each (op, precision)'s expected loss, measured by `tune` (the sensitivity) or given to
`tune_space`. It makes the guesses better and can never change what is committed."""

from __future__ import annotations

import math
import random
import warnings

import pytest
from helpers import same_trials
from hypothesis import given, settings
from hypothesis import strategies as st

from raytune_inc import AccuracyCriterion, Op, TuningSpace, tune, tune_space
from raytune_inc.examples import outliers
from raytune_inc.pass_model import PassModel, Prior
from raytune_inc.report import write_report
from raytune_inc.run import TuningRun
from raytune_inc.sequential import SequentialExecutor
from raytune_inc.settings import RunSettings
from raytune_inc.simulation import simulate
from raytune_inc.strategies import Candidate
from raytune_inc.synthetic import AdditiveLossEvaluation, random_space

PRECISIONS = ("bf16", "fp16", "int8")


def committed(res):
    return [(t.config, t.accuracy, t.meets, t.stage) for t in res.trials]


def make_run(space, evaluate, prior=None):
    return TuningRun(space, evaluate, RunSettings(accuracy=AccuracyCriterion(0.01), precisions=PRECISIONS), prior=prior)


def test_a_prior_naming_what_the_space_does_not_have_is_refused():
    space = TuningSpace([Op("a", "Linear", ("int8",)), Op("b", "LayerNorm", ("bf16",))])
    evaluate = lambda config: 1.0  # noqa: E731
    with pytest.raises(ValueError, match=r"prior names ops the space does not have: \['c', 'd'\]"):
        tune_space(space, evaluate, workers=0, prior={("c", "int8"): 0.1, ("d", "bf16"): 0.0, ("a", "int8"): 0.1})
    with pytest.raises(ValueError, match=r"precisions that these ops or the run \(bf16, fp16, int8\) do not take: \[\('b', 'int8'\)\]"):
        tune_space(space, evaluate, workers=0, prior={("b", "int8"): 0.1})
    with pytest.raises(ValueError, match=r"do not take: \[\('a', 'int8'\)\]"):
        tune_space(space, evaluate, workers=0, precisions=("bf16",), prior={("a", "int8"): 0.1})
    with pytest.raises(ValueError, match="prior values must be numbers"):
        tune_space(space, evaluate, workers=0, prior={("a", "int8"): math.nan})
    with pytest.raises(TypeError, match="prior must map"):
        tune_space(space, evaluate, workers=0, prior=[0.1])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), workers=st.integers(2, 8), kind=st.sampled_from(["random", "adversarial", "perfect"]))
def test_any_prior_commits_what_the_sequential_walk_commits(seed, workers, kind):
    space = random_space(16, seed=seed)
    evaluate = AdditiveLossEvaluation(space, seed=seed, sensitive=0.3)
    rng = random.Random(seed)
    if kind == "random":
        prior = Prior({key: rng.uniform(-0.01, 0.05) for key in evaluate.losses})
    elif kind == "adversarial":  # the sensitive ops look safest, the safe ones most sensitive, in accuracy units
        prior = Prior({key: 0.02 - value for key, value in evaluate.losses.items()}, scale=1.0)
    else:
        prior = Prior(dict(evaluate.losses))
    sequential = make_run(space, evaluate)
    SequentialExecutor().run(sequential)
    parallel = make_run(space, evaluate, prior)
    simulate(parallel, workers)
    assert committed(parallel.result()) == committed(sequential.result())
    assert parallel.result().config == sequential.result().config


def test_a_good_prior_commits_more_trials_per_evaluation_time():
    rates = {}
    for kind in ("none", "perfect"):
        trials = time = 0.0
        for seed in range(6):
            space = random_space(30, seed=seed)
            evaluate = AdditiveLossEvaluation(space, seed=seed)
            run = make_run(space, evaluate, None if kind == "none" else Prior(dict(evaluate.losses)))
            time += simulate(run, 4)
            trials += len(run.result().trials)
        rates[kind] = trials / time
    assert rates["perfect"] > 1.15 * rates["none"], rates  # virtual clock: exact, not timed


def test_the_pass_model_predicts_from_the_first_result_with_a_prior():
    space = TuningSpace([Op(f"op{i}", "Linear", ("int8",)) for i in range(4)])
    criterion = AccuracyCriterion(0.01, "absolute")
    model = PassModel(space, criterion)
    model.set_prior(Prior({("op0", "int8"): 1.0, ("op1", "int8"): 1.0, ("op2", "int8"): 10.0, ("op3", "int8"): 1.0}))
    model.set_baseline(1.0)
    fp32 = space.all_fp32()
    # One result: all four at int8 lose 0.026 (the prior sums to 13: a scale of 0.002 per unit).
    model.observe("int8 type-wise", fp32.replace(space.names, "int8"), 1.0 - 0.026)
    safe, fragile = (Candidate(fp32.replace([name], "int8"), "int8 op-wise") for name in ("op0", "op2"))
    p_safe, predicted_safe = model.estimate(safe)
    p_fragile, predicted_fragile = model.estimate(fragile)
    assert predicted_safe == pytest.approx(1.0 - 0.002, abs=2e-4) and predicted_fragile == pytest.approx(1.0 - 0.02, abs=2e-3)
    assert p_safe > 0.9 and p_fragile < 0.1
    # Without a prior, one result says nothing yet: both get the op-wise stage's pass rate.
    plain = PassModel(space, criterion)
    plain.set_baseline(1.0)
    plain.observe("int8 type-wise", fp32.replace(space.names, "int8"), 1.0 - 0.026)
    assert plain.estimate(safe)[0] == plain.estimate(fragile)[0]


def test_tune_measures_each_op_s_sensitivity_and_the_report_draws_it(tmp_path):
    model = outliers.model()
    res = tune(
        model,
        outliers.OutputFidelity(model),
        outliers.calibration_batches(),
        precisions=("int8_dynamic", "int8"),
        accuracy=AccuracyCriterion(0.002, "absolute"),
        workers=0,
        checkpoint=tmp_path / "h",
    )
    assert set(res.sensitivity) == {(op, p) for op in res.config for p in ("int8_dynamic", "int8")}
    static = sorted(((v, op) for (op, p), v in res.sensitivity.items() if p == "int8"), reverse=True)
    # The 7 layers whose inputs have outlier channels are the 7 most sensitive at static int8, by far.
    assert {op for _, op in static[:7]} == {f"blocks.{i}.fc" for i in outliers.SENSITIVE}
    assert static[6][0] > 5 * static[7][0]
    # Dynamic int8 quantizes each row on its own: the outliers cost it much less.
    assert res.sensitivity[("blocks.2.fc", "int8_dynamic")] < res.sensitivity[("blocks.2.fc", "int8")] / 5
    page = write_report(tmp_path / "h", tmp_path / "report.html").read_text()
    assert "Sensitivity of each op" in page and page.count("blocks.25.fc") >= 1


@pytest.mark.usefixtures("ray_local")
def test_on_ray_the_sensitivity_guides_the_run_and_start_up_is_reported():
    model = outliers.model()
    eval_fn = outliers.OutputFidelity(model)
    kwargs = dict(precisions=("int8",), accuracy=AccuracyCriterion(0.002, "absolute"))
    sequential = tune(model, eval_fn, outliers.calibration_batches(), workers=0, **kwargs)
    parallel = tune(model, eval_fn, outliers.calibration_batches(), workers=2, **kwargs)
    assert same_trials(parallel, sequential) and parallel.config == sequential.config
    assert parallel.sensitivity.keys() == sequential.sensitivity.keys()
    # Each evaluator that came up says how long it took (this short run may end before any is up: the driver evaluates
    # meanwhile; tests/test_here.py has evaluators that come up).
    assert len(parallel.evaluator_startup) <= 2 and all(s > 0 for s in parallel.evaluator_startup.values())
    assert 0 < parallel.first_trial_time < parallel.wall_time


@pytest.mark.usefixtures("ray_local")
def test_more_evaluators_than_cpus_start_a_few_at_a_time_and_say_so():
    import ray

    cpus = int(ray.cluster_resources()["CPU"])
    space = random_space(12, seed=3)
    evaluate = AdditiveLossEvaluation(space, seed=3, cost=0.02)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = tune_space(space, evaluate, workers=cpus + 2)
    messages = [str(w.message) for w in caught if w.category.__name__ == "CpuShareWarning"]
    assert len(messages) == 1 and f"{cpus + 2} evaluators asked for" in messages[0] and f"start {cpus} at a time" in messages[0]
    assert committed(res) == committed(tune_space(space, evaluate, workers=0))
    assert len(res.evaluator_startup) >= 1


def test_prior_is_part_of_neither_the_result_nor_the_fingerprint(tmp_path):
    space = random_space(10, seed=4)
    evaluate = AdditiveLossEvaluation(space, seed=4)
    first = tune_space(space, evaluate, workers=0, checkpoint=tmp_path, max_trials=3)
    prior = {key: value for key, value in evaluate.losses.items() if key[1] in PRECISIONS}
    again = tune_space(space, evaluate, workers=0, checkpoint=tmp_path, resume=True, prior=prior)  # a prior added on resume
    assert committed(again)[:3] == committed(first)
    assert again.config == tune_space(space, evaluate, workers=0).config
