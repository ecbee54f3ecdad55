"""Until the first evaluator is up, the driver's own process evaluates the trials the committed path waits for; it
hands over to the evaluators once one is up, and the run commits what the sequential run commits."""

from __future__ import annotations

import time

import pytest
from helpers import same_trials
from slow_start import START_DELAY, SlowFidelity

from actors.pool import Here
from raytune_inc import AccuracyCriterion, Workers, tune
from raytune_inc.errors import EvaluatorStartError
from raytune_inc.examples import outliers
from raytune_inc.ray_executor import RayExecutor
from raytune_inc.run import TuningRun
from raytune_inc.settings import RunSettings
from raytune_inc.synthetic import AdditiveLossEvaluation, random_space

pytestmark = pytest.mark.usefixtures("ray_local")


def test_the_driver_evaluates_until_an_evaluator_is_up_then_hands_over():
    model = outliers.model()
    eval_fn = SlowFidelity(model)
    kwargs = dict(precisions=("int8",), accuracy=AccuracyCriterion(0.002, "absolute"), sensitivity=True)
    sequential = tune(model, eval_fn, outliers.calibration_batches(), workers=0, **kwargs)
    parallel = tune(model, eval_fn, outliers.calibration_batches(), workers=2, **kwargs)
    assert same_trials(parallel, sequential) and parallel.config == sequential.config
    # Measured in turn with the trials this process evaluated on the same model: as if alone.
    assert parallel.sensitivity == sequential.sensitivity
    rows = [row for row in parallel.history.to_pylist() if row["stage"] != "baseline"]
    here = [row for row in rows if row["worker"].endswith("-driver")]
    there = [row for row in rows if "-evaluator-" in row["worker"]]
    # Evaluators take START_DELAY seconds more than usual to come up: the first committed trials are this process's.
    first = min((row for row in rows if row["commit_seq"] is not None), key=lambda row: row["commit_seq"])
    assert first["worker"].endswith("-driver"), first
    assert there, "the evaluators took over once up"
    # One trial at a time here, each the committed path's next: all begun before any evaluator's first.
    assert all(row["status"] == "ok" and row["commit_seq"] is not None for row in here), here
    assert max(row["start_time"] for row in here) < min(row["start_time"] for row in there)
    for a, b in zip(here, here[1:], strict=False):
        assert a["end_time"] <= b["start_time"]
    assert parallel.first_trial_time < START_DELAY
    # The evaluators that came up say how long they took: START_DELAY and more.
    assert 1 <= len(parallel.evaluator_startup) <= 2 and all(s >= START_DELAY for s in parallel.evaluator_startup.values())


def test_a_driver_lent_still_says_when_no_evaluator_can_start_and_keeps_what_it_committed():
    space = random_space(16, seed=0)
    evaluate = AdditiveLossEvaluation(space, seed=0, cost=0.5)  # more than 2 s of trials
    run = TuningRun(space, evaluate, RunSettings(precisions=("int8",), max_trials=50), baseline=1.0)
    released = []
    executor = RayExecutor([Workers(1, num_cpus=64)], start_timeout=2)
    executor.lend(Here(evaluate, lambda: released.append(True)))
    started = time.monotonic()
    with pytest.raises(EvaluatorStartError, match=r"no evaluator started within 2 s .*\(64, 0\.0\)"):
        try:
            executor.run(run)
        finally:
            executor.close()
    assert time.monotonic() - started < 30
    assert run.path.trials, "the trials this process evaluated before the error are committed"
    committed = [row for row in run.result().history.to_pylist() if row["commit_seq"] is not None]
    assert len(committed) == len(run.path.trials) and all(row["worker"].endswith("-driver") for row in committed)
    assert released == [True]  # what it kept is freed once
