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
from .records import ERROR, OK, Evaluation
from .space import Config

EvaluateFn = Callable[[dict[str, str]], float]


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
) -> Evaluation:
    """Run `evaluate` on `config`. An exception or NaN gives an errored Evaluation; a non-number raises TypeError.

    `node`: where it ran (an evaluator gives its Ray node id); this host's name when not given. `timeout`: seconds
    after which the evaluation is interrupted in this thread (see `deadline`), an errored Evaluation that says so.
    """
    node = node or socket.gethostname()
    start = time.time()
    try:
        value = call_with_deadline(lambda: evaluate(config.as_dict()), timeout)
    except EvaluationTimeout as exc:
        return Evaluation(config, None, ERROR, timed_out(exc, timeout), start, time.time(), worker, node, device)
    except Exception:
        return Evaluation(config, None, ERROR, traceback.format_exc(), start, time.time(), worker, node, device)
    end = time.time()
    accuracy = as_accuracy(value, config)
    if math.isnan(accuracy):
        return Evaluation(config, None, ERROR, "the evaluation returned NaN", start, end, worker, node, device)
    return Evaluation(config, accuracy, OK, None, start, end, worker, node, device)
