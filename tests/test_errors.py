"""Faults a user causes end in one of raytune-inc's errors (one base class), with a message that names the cause and
the fix; the command line prints any of them as one line."""

from __future__ import annotations

import pytest

import raytune_inc
from raytune_inc import Op, TuningSpace, tune_space
from raytune_inc.errors import CliError, EvaluatorStartError, HistoryError, RaytuneError, StrategyError, TuningError
from raytune_inc.run import TuningRun
from raytune_inc.settings import RunSettings
from raytune_inc.strategies import Candidate, Strategy
from raytune_inc.synthetic import AdditiveLossEvaluation, random_space
from raytune_inc.workers import Workers


def test_every_error_has_one_base_and_is_exported():
    for error in (TuningError, HistoryError, EvaluatorStartError, StrategyError, CliError):
        assert issubclass(error, RaytuneError)
        if error is not CliError:
            assert getattr(raytune_inc, error.__name__) is error
    assert issubclass(HistoryError, ValueError) and issubclass(TuningError, RuntimeError)  # as they were


class AllFp32Strategy(Strategy):
    """A broken strategy: it asks for the baseline config."""

    name = "asks-for-fp32"

    def plan(self, space, precisions, criterion):
        yield Candidate(space.all_fp32().replace([space.names[0]], "int8"), "first")
        yield Candidate(space.all_fp32(), "broken")


def test_a_strategy_that_asks_for_the_all_fp32_config_is_named_a_strategy_error():
    space = TuningSpace([Op("a", "Linear"), Op("b", "Linear")])
    with pytest.raises(StrategyError, match=r"asked for the all-fp32 config \(stage 'broken'\).*must skip"):
        tune_space(space, lambda config: 1.0, strategy=AllFp32Strategy(), workers=0)


class DoesNotLoad:
    """An evaluation whose module is missing where the evaluator runs: it fails to unpickle there."""

    def __call__(self, config):
        return 1.0

    def __reduce__(self):
        return _missing_module, ()


def _missing_module():
    raise ModuleNotFoundError("No module named 'my_models'")


@pytest.mark.usefixtures("ray_local")
def test_an_evaluation_that_does_not_load_in_the_evaluators_names_the_fix():
    space = random_space(4, seed=0)
    with pytest.raises(EvaluatorStartError, match=r"failed to start.*my_models.*importable on every node"):
        tune_space(space, DoesNotLoad(), workers=1, baseline=1.0)


@pytest.mark.usefixtures("ray_local")
def test_no_evaluator_with_the_resources_asked_names_them():
    from raytune_inc.ray_executor import RayExecutor

    space = random_space(4, seed=0)
    run = TuningRun(space, AdditiveLossEvaluation(space), RunSettings(precisions=("int8",), max_trials=10), baseline=1.0)
    executor = RayExecutor([Workers(1, num_cpus=64)], start_timeout=2)
    with pytest.raises(EvaluatorStartError, match=r"no evaluator started within 2 s .*\(64, 0\.0\).*fewer workers or smaller shares"):
        try:
            executor.run(run)
        finally:
            executor.close()


@pytest.mark.parametrize(
    "error",
    [
        EvaluatorStartError("no evaluator started within 120 s: ask for fewer workers"),
        StrategyError("the strategy asked for the all-fp32 config"),
        TuningError("the baseline evaluation failed:\nTraceback ..."),
    ],
)
def test_the_command_line_prints_each_error_in_one_line(error, monkeypatch, capsys):
    from raytune_inc import cli

    def fails(args):
        raise error

    monkeypatch.setattr(cli, "_history", fails)
    assert cli.main(["history", "anywhere"]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("raytune-inc history: error: ") and str(error).splitlines()[0] in err
    assert "Traceback (most recent call last)" not in err
