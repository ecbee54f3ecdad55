"""The errors raytune-inc raises for what a user can cause, under one base class.

Each message names the cause and the fix. The command line prints any of them as one line
(`raytune-inc <command>: error: ...`) and exits with status 1. Bad arguments to the library's
functions stay `ValueError` / `TypeError`, as Python's own do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .records import TuneResult


class RaytuneError(Exception):
    """Base of the errors below."""


class TuningError(RaytuneError, RuntimeError):
    """The run cannot go on (the baseline evaluation failed, evaluators keep dying); the message says why.

    `result` holds what was committed before it stopped, where there was a path.
    """

    def __init__(self, message: str, result: TuneResult | None = None):
        super().__init__(message)
        self.result = result


class HistoryError(RaytuneError, ValueError):
    """A checkpoint directory that cannot be used: none there, not a history of ours, or of another run."""


class EvaluatorStartError(RaytuneError, RuntimeError):
    """No evaluator could start: the cluster lacks the resources asked for, or the evaluation does not load there."""


class StrategyError(RaytuneError, RuntimeError):
    """A strategy broke its contract (e.g. it asked for the all-fp32 config, which is never a candidate)."""


class DeploymentError(RaytuneError, RuntimeError):
    """A compiled model that is not the model it was compiled from: it writes into its inputs, changes between calls on
    the same tensors, or strays from the eager model's outputs. The message says what differed."""


class CliError(RaytuneError):
    """Bad input to the command line (a `module:name` that does not import, a missing directory)."""


class CpuShareWarning(UserWarning):
    """More evaluators than the cluster has CPUs: they share them, and start a few at a time."""


class HistoryWarning(UserWarning):
    """Something in a history was dropped on load (a torn last record); the message says what was kept."""
