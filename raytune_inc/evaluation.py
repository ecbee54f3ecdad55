"""Calling the user's evaluation function on one config, safely, wherever it runs."""

from __future__ import annotations

import math
import numbers
import socket
import time
import traceback
from collections.abc import Callable
from typing import Any

from .deadline import EvaluationTimeout, call_with_deadline, timed_out
from .records import CANCELLED, ERROR, OK, REJECTED, Evaluation
from .running import EvaluationCancelled, Goal, Read, RunningError, cancellable, is_running, read
from .space import Config

EvaluateFn = Callable[[dict[str, str]], float]
MOOT = "cancelled: the committed path can no longer ask for this config (a speculative evaluation made moot)"


def as_accuracy(value: Any, config: Config) -> float:
    """`value` as a float, or TypeError naming the config: an accuracy must be a real number."""
    if isinstance(value, (bool, str, bytes)) or not (isinstance(value, numbers.Real) or hasattr(type(value), "__float__")):
        raise TypeError(
            f"the evaluation function returned {type(value).__name__} {value!r:.80} for config {config.as_dict()}; "
            "it must return the accuracy as a number"
        )
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"the evaluation function returned {type(value).__name__} {value!r:.80} for config {config.as_dict()}, "
            f"which is not a single number: {exc}"
        ) from exc


def evaluate_config(
    evaluate: EvaluateFn,
    config: Config,
    worker: str = "in-process",
    device: str | None = None,
    node: str | None = None,
    timeout: float | None = None,
    goal: Goal | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Evaluation:
    """Run `evaluate` on `config`. An exception or NaN gives an errored Evaluation; a non-number raises TypeError.

    `node`: where it ran (an evaluator gives its Ray node id); this host's name when not given. `timeout`: seconds
    after which the evaluation is interrupted in this thread (see `deadline`), an errored Evaluation that says so.
    An evaluation that returns an iterator of `running.Running` is read to its end, or with a `goal` until it
    certainly misses it: a rejected Evaluation with the bound it reached (a broken protocol raises RunningError).
    `cancelled`: a check the evaluation looks at where it may stop (see `running.cancellable`); once it is true, the
    evaluation stops there, a cancelled Evaluation (its config moot).
    """
    node = node or socket.gethostname()
    start = time.time()

    def call() -> Any:
        value = evaluate(config.as_dict())
        return read(value, goal, "it") if is_running(value) else value

    try:
        with cancellable(cancelled):
            value = call_with_deadline(call, timeout)
    except EvaluationCancelled as exc:
        read_so_far = {"samples": exc.samples, "samples_total": exc.samples_total}
        return Evaluation(config, None, CANCELLED, MOOT, start, time.time(), worker, node, device, **read_so_far)
    except EvaluationTimeout as exc:
        return Evaluation(config, None, ERROR, timed_out(exc, timeout), start, time.time(), worker, node, device)
    except RunningError as exc:  # named here, not per batch: a config of thousands of ops is long to write
        raise RunningError(f"the evaluation of config {config.as_dict()}: {exc}") from None
    except Exception:
        return Evaluation(config, None, ERROR, traceback.format_exc(), start, time.time(), worker, node, device)
    end = time.time()
    samples = {}
    if isinstance(value, Read):
        samples = {"samples": value.samples, "samples_total": value.samples_total}
        if value.rejected:
            return Evaluation(config, None, REJECTED, None, start, end, worker, node, device, bound=value.bound, **samples)
        value = value.accuracy
    accuracy = as_accuracy(value, config)
    if math.isnan(accuracy):
        return Evaluation(config, None, ERROR, "the evaluation returned NaN", start, end, worker, node, device, **samples)
    return Evaluation(config, accuracy, OK, None, start, end, worker, node, device, **samples)
