"""eval_timeout in this process (workers=0, and the baseline): an evaluation past it is interrupted, is an errored
trial whose error says so, and the run goes on; no timer outlives it. On Ray evaluators: tests/test_driver.py."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from helpers import Hangs, committed

from raytune_inc import TuningError, tune_space
from raytune_inc.deadline import EvaluationTimeout, call_with_deadline
from raytune_inc.synthetic import random_space

SEED = 4


@pytest.fixture(scope="module")
def space():
    return random_space(8, seed=SEED)


@pytest.fixture
def victim(space, tmp_path):
    """A config in the middle of the committed walk."""
    plain = tune_space(space, Hangs(space, SEED, {}, tmp_path / "plain.log"), workers=0)
    return plain.trials[len(plain.trials) // 2].config


def check_timed_out(res, failing, hangs: Hangs, victim: dict[str, str], seconds: float) -> None:
    """`res` committed what a run whose victim fails at once (`failing`) commits; its victim's trial is the one
    errored trial, its error says it timed out and where, and the victim was evaluated once."""
    assert committed(res) == committed(failing) and res.config == failing.config  # the strategy saw an error
    [errored] = [t for t in res.trials if t.error]
    assert errored.config == victim and errored.accuracy is None and not errored.meets
    first, *_, last = errored.error.splitlines()
    assert first.startswith(f"the evaluation timed out after {seconds:g} s (eval_timeout={seconds:g}) and was interrupted in __call__ (")
    assert "helpers.py" in first and first.endswith("time.sleep(0.01)")
    assert last == f"EvaluationTimeout: timed out after {seconds:g} s (eval_timeout={seconds:g})"
    assert res.history["status"].to_pylist().count("error") == 1
    assert hangs.calls().count(res.history["config"][0].as_py()) == 1  # the baseline, once
    assert hangs.calls().count(hangs.space.config(victim).key()) == 1


def test_an_evaluation_past_eval_timeout_is_an_errored_trial_and_the_run_goes_on(space, victim, tmp_path):
    failing = tune_space(space, Hangs(space, SEED, victim, tmp_path / "raise.log", "raise"), workers=0)
    hangs = Hangs(space, SEED, victim, tmp_path / "loop.log", "loop")
    start = time.monotonic()
    res = tune_space(space, hangs, workers=0, eval_timeout=0.5)
    assert time.monotonic() - start < 30
    check_timed_out(res, failing, hangs, victim, 0.5)


def test_in_another_thread_the_evaluation_is_interrupted_there(space, victim, tmp_path):
    failing = tune_space(space, Hangs(space, SEED, victim, tmp_path / "raise.log", "raise"), workers=0)
    hangs = Hangs(space, SEED, victim, tmp_path / "loop.log", "loop")
    threads = threading.active_count()
    results = []
    thread = threading.Thread(target=lambda: results.append(tune_space(space, hangs, workers=0, eval_timeout=0.5)))
    thread.start()
    thread.join(60)
    assert not thread.is_alive() and results
    check_timed_out(results[0], failing, hangs, victim, 0.5)
    assert threading.active_count() == threads  # no timer thread left behind


def test_a_deadline_never_reached_changes_nothing_and_leaves_no_timer(space, tmp_path):
    handler = signal.getsignal(signal.SIGALRM)
    plain = tune_space(space, Hangs(space, SEED, {}, tmp_path / "a.log"), workers=0)
    for eval_timeout in (60, 0, None):
        res = tune_space(space, Hangs(space, SEED, {}, tmp_path / "b.log"), workers=0, eval_timeout=eval_timeout)
        assert committed(res) == committed(plain)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is handler


def test_a_baseline_past_eval_timeout_stops_the_run_naming_the_timeout(space, tmp_path):
    hangs = Hangs(space, SEED, space.all_fp32().as_dict(), tmp_path / "log", "loop")
    with pytest.raises(
        TuningError, match=r"baseline evaluation \(all-fp32 config\) failed(?s:.*)timed out after 0\.3 s \(eval_timeout=0\.3\)"
    ):
        tune_space(space, hangs, workers=0, eval_timeout=0.3)
    assert len(hangs.calls()) == 1


def spins() -> str:
    try:
        while True:
            pass
    except Exception:  # an evaluation's own error handling does not swallow the timeout
        return "swallowed"


def test_the_deadline_interrupts_python_code_and_keeps_a_timer_of_the_caller_s():
    assert call_with_deadline(lambda: 7, 0.2) == 7
    with pytest.raises(EvaluationTimeout):
        call_with_deadline(spins, 0.2)
    # The caller's own SIGALRM timer stays armed: the deadline then comes from a timer thread.
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *args: fired.append(True))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30)
        with pytest.raises(EvaluationTimeout):
            call_with_deadline(spins, 0.2)
        assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] < 30 and not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
