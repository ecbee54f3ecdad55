"""The Ray driver: same committed trials and result as workers=0, faults, cancellation."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest
from helpers import Hangs, committed, first_time, own_ray_env, reference, run_on
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raytune_inc import AccuracyCriterion, Op, TuningError, TuningSpace, tune_space
from raytune_inc.synthetic import AdditiveLossEvaluation, random_space

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.mark.slow
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_ops=st.integers(2, 14),
    seed=st.integers(0, 10_000),
    strategy=st.sampled_from(["conservative", "auto_mixed_precision"]),
    tolerable_loss=st.sampled_from([0.0, 0.002, 0.01]),
    max_trials=st.sampled_from([3, 100]),
)
def test_parallel_runs_commit_what_the_sequential_run_commits(n_ops, seed, strategy, tolerable_loss, max_trials):
    space = random_space(n_ops, seed=seed)
    evaluate = AdditiveLossEvaluation(space, seed=seed, sensitive=0.4)
    kwargs = dict(strategy=strategy, accuracy=AccuracyCriterion(tolerable_loss), max_trials=max_trials)
    sequential = tune_space(space, evaluate, workers=0, **kwargs)
    for workers in (1, 2, 4):
        parallel = tune_space(space, evaluate, workers=workers, **kwargs)
        assert committed(parallel) == committed(sequential), f"workers={workers}"
        assert parallel.config == sequential.config
        assert parallel.accuracy == sequential.accuracy
        assert parallel.baseline == sequential.baseline
        assert parallel.stop_reason == sequential.stop_reason
        # every committed trial is a row of the history with its commit sequence
        commits = parallel.history.filter(parallel.history["commit_seq"].is_valid()).sort_by("commit_seq")
        assert commits["commit_seq"].to_pylist() == list(range(1, len(parallel.trials) + 1))
        assert parallel.evaluations == parallel.history.num_rows


@pytest.mark.slow
def test_speculation_evaluates_ahead_and_still_commits_in_order():
    space = random_space(24, seed=3)
    evaluate = AdditiveLossEvaluation(space, seed=3, cost=0.05)
    sequential = tune_space(space, evaluate, workers=0)
    parallel = tune_space(space, evaluate, workers=4)
    assert committed(parallel) == committed(sequential)
    history = parallel.history
    assert history.num_rows > len(sequential.trials) + 1, "4 workers should evaluate ahead of the committed path"
    assert set(history["worker"].to_pylist()) - {""} and len(set(history["worker"].to_pylist())) > 1
    trial_ids = history["trial_id"].to_pylist()
    assert sorted(trial_ids) == list(range(len(trial_ids)))


def test_given_baseline_is_not_evaluated():
    space = random_space(6, seed=1)
    evaluate = AdditiveLossEvaluation(space, seed=1)
    res = tune_space(space, evaluate, workers=2, baseline=0.95)
    assert "baseline" not in res.history["stage"].to_pylist()
    assert committed(res) == committed(tune_space(space, evaluate, workers=0, baseline=0.95))


class FlakyEvaluation:
    """Kills its evaluator process the first time it sees `victim` (`os._exit`, or with `sigkill` as the kernel's
    out-of-memory killer does); evaluations are recorded in `log`."""

    def __init__(self, space: TuningSpace, log: Path, victim: dict | None, always: bool = False, sigkill: bool = False):
        self.inner = AdditiveLossEvaluation(space, seed=7, sensitive=0.4)
        self.log = log
        self.victim = victim
        self.always = always
        self.sigkill = sigkill

    def __call__(self, config):
        if config == self.victim and (self.always or first_time(self.log.with_suffix(".killed"))):
            if self.sigkill:
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(1)
        with open(self.log, "a") as f:
            f.write(repr(sorted(config.items())) + "\n")
        return self.inner(config)


@pytest.mark.slow
def test_an_evaluator_killed_mid_trial_costs_only_that_trial(tmp_path):
    space = random_space(10, seed=7)
    reference = tune_space(space, FlakyEvaluation(space, tmp_path / "ref.log", None), workers=0)
    victim = reference.trials[len(reference.trials) // 2].config
    res = tune_space(space, FlakyEvaluation(space, tmp_path / "run.log", victim), workers=2)
    assert committed(res) == committed(reference)
    assert res.config == reference.config
    statuses = res.history["status"].to_pylist()
    assert statuses.count("lost") == 1
    lost = res.history.filter(pc.equal(res.history["status"], "lost"))
    assert "died" in lost["error"][0].as_py()
    assert lost["config"][0].as_py() == space.config(victim).key()


def test_an_evaluator_killed_as_the_oom_killer_kills_is_replaced_and_its_config_evaluated_again(tmp_path):
    space = random_space(10, seed=7)
    reference = tune_space(space, FlakyEvaluation(space, tmp_path / "ref.log", None), workers=0)
    victim = reference.trials[1].config
    res = tune_space(space, FlakyEvaluation(space, tmp_path / "run.log", victim, sigkill=True), workers=1)
    assert committed(res) == committed(reference) and res.config == reference.config
    history = res.history.sort_by("trial_id")
    key = space.config(victim).key()
    lost = history.filter(pc.equal(history["status"], "lost"))
    assert lost["config"].to_pylist() == [key]
    killed = lost["worker"][0].as_py()
    # The history says that the evaluator died, and why, as Ray tells it.
    error = lost["error"][0].as_py()
    assert error.startswith(f"evaluator {killed} died: ActorDiedError: The actor died unexpectedly"), error
    assert "worker process has died" in error and "OOM killer" in error, error
    # Its one evaluator was killed: a new one, with the same share and a new name, evaluated the config again.
    again = history.filter(pc.and_(pc.equal(history["config"], key), pc.equal(history["status"], "ok")))
    assert again.num_rows == 1 and again["trial_id"][0].as_py() > lost["trial_id"][0].as_py()
    before = set(history.filter(pc.less_equal(history["trial_id"], lost["trial_id"][0]))["worker"].to_pylist())
    assert before == {killed} and again["worker"][0].as_py() not in before
    assert history["status"].to_pylist().count("lost") == 1


@pytest.mark.slow
def test_an_evaluator_killed_by_ray_s_memory_monitor_is_replaced_and_its_config_evaluated_again(tmp_path):
    # A Ray of its own (the job's), whose memory monitor kills at 4 GiB above the memory in use when it starts.
    job = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "oom_job.py"), str(tmp_path / "marker")],
        capture_output=True,
        text=True,
        timeout=300,
        env=own_ray_env(),
    )
    assert job.returncode == 0, job.stderr[-3000:]
    out = json.loads(job.stdout.strip().splitlines()[-1])
    expected = reference(6, 7)
    assert out["config"] == expected["config"] and out["trials"] == expected["trials"]
    victim = [row for row in out["rows"] if row[1] == out["victim"]]
    assert [status for status, *_ in victim] == ["lost", "ok"], victim
    (_, _, killed, error), (_, _, again, _) = victim
    assert error.startswith(f"evaluator {killed} died: OutOfMemoryError: "), error
    assert "killed due to the node running low on memory" in error, error
    assert again != killed  # the replacement evaluator


@pytest.mark.slow
def test_evaluators_that_keep_dying_stop_the_run_with_an_error(tmp_path):
    space = random_space(6, seed=7)
    reference = tune_space(space, FlakyEvaluation(space, tmp_path / "ref.log", None), workers=0)
    victim = reference.trials[1].config
    with pytest.raises(TuningError, match="keep dying") as info:
        tune_space(space, FlakyEvaluation(space, tmp_path / "run.log", victim, always=True), workers=1)
    partial = info.value.result
    assert partial is not None
    assert committed(partial) == committed(reference)[: len(partial.trials)]
    assert len(partial.trials) >= 1


@pytest.mark.parametrize("workers", [1, 2])
def test_an_evaluation_past_eval_timeout_kills_its_evaluator_is_an_errored_trial_and_is_not_run_again(tmp_path, workers):
    from raytune_inc import Workers
    from raytune_inc.ray_executor import RayExecutor

    space = random_space(8, seed=4)
    plain = tune_space(space, Hangs(space, 4, {}, tmp_path / "plain.log"), workers=0)
    victim = plain.trials[1].config  # early: the run has work left for the replacement
    sequential = tune_space(space, Hangs(space, 4, victim, tmp_path / "sequential.log"), workers=0, eval_timeout=1)
    hangs = Hangs(space, 4, victim, tmp_path / "ray.log")  # time.sleep(3600) in the evaluator
    # max_lost=1: one lost evaluation would stop the run, so this also checks that a timed-out one is not lost.
    # timeout=120: should the driver not wake at the deadline, the run stops with "timeout" instead of hanging.
    res = run_on(RayExecutor(Workers(workers), max_lost=1), space, hangs, eval_timeout=1, timeout=120)
    assert res.stop_reason == "finished"
    assert committed(res) == committed(sequential) and res.config == sequential.config
    history = res.history.sort_by("trial_id")
    key = space.config(victim).key()
    assert [s for s in history["status"].to_pylist() if s != "ok"] == ["error"]
    error = history.filter(pc.equal(history["status"], "error"))
    assert error["config"].to_pylist() == [key]
    killed = error["worker"][0].as_py()
    message = r"the evaluation timed out after 1 s \(eval_timeout=1\) on evaluator (\S+), which was killed and replaced"
    assert re.fullmatch(message, error["error"][0].as_py()).group(1) == killed
    assert hangs.calls().count(key) == 1, "the timed-out config was evaluated again"
    if workers == 1:  # the one evaluator was killed: a new one, with a new name, ran what came after
        after = pc.greater(history["trial_id"], error["trial_id"][0])
        before = set(history.filter(pc.invert(after))["worker"].to_pylist())
        later = set(history.filter(after)["worker"].to_pylist())
        assert before == {killed} and len(later) == 1 and later.isdisjoint(before), (before, later)


def test_a_baseline_past_eval_timeout_on_an_evaluator_stops_the_run_naming_the_timeout(tmp_path):
    space = random_space(4, seed=4)
    with pytest.raises(TuningError, match=r"baseline evaluation \(all-fp32 config\) failed(?s:.*)timed out after 1 s"):
        tune_space(space, Hangs(space, 4, space.all_fp32().as_dict(), tmp_path / "log"), workers=1, eval_timeout=1)


class RaisingEvaluation:
    def __init__(self, bad: dict):
        self.bad = bad

    def __call__(self, config):
        if config == self.bad:
            raise ZeroDivisionError("boom in the evaluator")
        return 0.9 - 0.001 * sum(p != "fp32" for p in config.values())


def test_an_evaluation_that_raises_in_an_actor_is_an_errored_trial_with_its_traceback():
    space = TuningSpace([Op("conv1", "Conv2d", ("int8",)), Op("conv2", "Conv2d", ("int8",)), Op("fc", "Linear", ("int8",))])
    bad = {"conv1": "int8", "conv2": "int8", "fc": "fp32"}
    evaluate = RaisingEvaluation(bad)
    sequential = tune_space(space, evaluate, workers=0)
    res = tune_space(space, evaluate, workers=2)
    assert committed(res) == committed(sequential)
    errored = [t for t in res.trials if t.error]
    assert [t.config for t in errored] == [bad]
    assert errored[0].accuracy is None and not errored[0].meets
    assert "ZeroDivisionError: boom in the evaluator" in errored[0].error and "Traceback" in errored[0].error
    assert res.config == {"conv1": "int8", "conv2": "int8", "fc": "int8"} or res.config is not None


def not_a_number(config):
    return "high" if any(p != "fp32" for p in config.values()) else 0.9


def test_an_evaluation_returning_a_non_number_in_an_actor_raises_type_error_naming_the_config():
    space = TuningSpace([Op("conv1", "Conv2d", ("int8",))])
    with pytest.raises(TypeError, match=r"'conv1': 'int8'"):
        tune_space(space, not_a_number, workers=1)


def baseline_fails(config):
    raise ValueError("dataset missing")


def test_a_failing_baseline_in_an_actor_stops_the_run_with_the_cause():
    space = TuningSpace([Op("conv1", "Conv2d", ("int8",))])
    with pytest.raises(TuningError, match="dataset missing"):
        tune_space(space, baseline_fails, workers=2)


class SlowSpeculation:
    """A baseline slow enough for every evaluator to start, a fast first trial, very slow others."""

    def __init__(self, fast: dict):
        self.fast = fast

    def __call__(self, config):
        if all(p == "fp32" for p in config.values()):
            time.sleep(2)
        elif config != self.fast:
            time.sleep(120)
        return 0.9


@pytest.mark.slow
def test_in_flight_work_is_cancelled_when_the_run_stops():
    # One conv group: if its type-wise trial meets, the strategy is done; speculation has meanwhile
    # started the op-wise fallbacks (slow), which can no longer be committed and must be cancelled.
    space = TuningSpace([Op("conv0", "Conv2d", ("int8",)), Op("conv1", "Conv2d", ("int8",))])
    first = {"conv0": "int8", "conv1": "int8"}
    start = time.monotonic()
    res = tune_space(space, SlowSpeculation(first), workers=3)
    elapsed = time.monotonic() - start
    assert [t.config for t in res.trials] == [first]
    assert res.stop_reason == "finished" and res.config == first
    cancelled = res.history.filter(pc.equal(res.history["status"], "cancelled"))
    assert cancelled.num_rows >= 1, res.history["status"].to_pylist()
    assert space.config({"conv0": "int8", "conv1": "fp32"}).key() in cancelled["config"].to_pylist()
    assert all(seq is None for seq in cancelled["commit_seq"].to_pylist())
    assert elapsed < 90, "the run waited for speculative evaluations that could no longer be committed"


def test_timeout_stops_dispatching_and_returns_what_was_committed():
    space = random_space(12, seed=2)
    evaluate = AdditiveLossEvaluation(space, seed=2, cost=0.3)
    res = tune_space(space, evaluate, workers=2, timeout=1.5)
    full = tune_space(space, AdditiveLossEvaluation(space, seed=2), workers=0)
    assert res.stop_reason == "timeout"
    assert committed(res) == committed(full)[: len(res.trials)]
    assert len(res.trials) < len(full.trials)


@pytest.mark.slow
def test_a_run_that_starts_ray_shuts_it_down_and_one_that_finds_ray_leaves_it(tmp_path):
    script = """
import ray
from raytune_inc import Op, TuningSpace, tune_space
space = TuningSpace([Op("a", "Linear", ("int8",)), Op("b", "Linear", ("int8",))])
res = tune_space(space, lambda c: 1.0, workers=1)
assert res.config == {"a": "int8", "b": "int8"}, res.config
assert not ray.is_initialized(), "the run started Ray and left it running"
ray.init(num_cpus=1, include_dashboard=False)
tune_space(space, lambda c: 1.0, workers=1)
assert ray.is_initialized(), "the run shut down a Ray it did not start"
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=own_ray_env())
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


def test_workers_spec_is_checked():
    from raytune_inc import Workers

    with pytest.raises(ValueError, match="workers must be an integer >= 0"):
        Workers(-1)
    with pytest.raises(ValueError, match="num_cpus"):
        Workers(2, num_cpus=0)
    with pytest.raises(ValueError, match="num_gpus"):
        Workers(2, num_gpus=-0.5)
    with pytest.raises(ValueError, match="whole number"):
        Workers(2, num_gpus=1.5)
    with pytest.raises(ValueError, match="in-process"):
        Workers(0, num_gpus=0.5)
    assert Workers.of(3) == Workers(3)


def test_asking_for_gpus_the_cluster_lacks_is_a_clear_error(ray_local):
    from raytune_inc import Workers

    gpus = ray_local.cluster_resources().get("GPU", 0.0)
    space = TuningSpace([Op("conv1", "Conv2d", ("int8",))])
    with pytest.raises(ValueError, match=f"num_gpus={gpus + 1}.*{gpus:g} GPUs"):
        tune_space(space, lambda c: 1.0, workers=Workers(1, num_gpus=gpus + 1))


def test_evaluators_take_the_cpu_share_asked_for_and_record_their_device():
    from raytune_inc import Workers

    space = random_space(6, seed=4)
    evaluate = AdditiveLossEvaluation(space, seed=4)
    res = tune_space(space, evaluate, workers=Workers(2, num_cpus=0.5))
    assert committed(res) == committed(tune_space(space, evaluate, workers=0))
    evaluated = res.history.filter(pc.equal(res.history["status"], "ok"))  # cancelled ones never reached a device
    assert set(evaluated["device"].to_pylist()) == {"cpu"}


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


class CudaEvaluation:
    def __call__(self, config):
        import torch

        x = torch.ones(64, device="cuda")
        return float(x.sum().item()) / 64 - 0.001 * sum(p != "fp32" for p in config.values())


@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA device")
def test_four_evaluators_share_one_gpu():
    from raytune_inc import Workers

    space = random_space(6, seed=5)
    res = tune_space(space, CudaEvaluation(), workers=Workers(4, num_cpus=1, num_gpus=0.25))
    evaluated = res.history.filter(pc.equal(res.history["status"], "ok"))
    assert evaluated.num_rows and all(d.startswith("cuda") for d in evaluated["device"].to_pylist())
    assert committed(res) == committed(tune_space(space, CudaEvaluation(), workers=0))


def test_an_evaluator_process_does_not_import_the_driver_side():
    # Evaluator start-up is on the critical path of short runs: no pyarrow, numpy or driver modules there.
    script = "import sys, actors.evaluator; print(sorted(m for m in ('pyarrow', 'numpy', 'raytune_inc.run') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
