"""An in-process evaluation stopped at its deadline (`eval_timeout`): an exception raised in the thread that runs it.

The evaluation is interrupted cooperatively, at its next Python line: on the main thread a
SIGALRM timer raises `EvaluationTimeout` (a `time.sleep` ends at once); on another thread a
timer thread raises it there with `PyThreadState_SetAsyncExc` (once a sleep or native call
returns). A hang inside one native call (a C extension's loop, a blocked read) cannot be
interrupted in its own process: Ray evaluators (workers >= 1) are killed and replaced instead.
"""

from __future__ import annotations

import ctypes
import signal
import threading
import traceback
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class EvaluationTimeout(BaseException):
    """Raised in the evaluating thread at its deadline. A BaseException, as KeyboardInterrupt is, so that an
    `except Exception` in the evaluation does not swallow it."""


def call_with_deadline(call: Callable[[], T], seconds: float | None) -> T:
    """`call()`, interrupted with EvaluationTimeout once it has run `seconds` (None: never); no timer outlives it."""
    if not seconds:
        return call()
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        if signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0):  # not the caller's own timer
            return _with_alarm(call, seconds)
    return _with_timer_thread(call, seconds)


def _with_alarm(call: Callable[[], T], seconds: float) -> T:
    running = True

    def on_alarm(signum, frame) -> None:
        if running:
            raise EvaluationTimeout

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return call()
        finally:
            running = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, previous)


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> None:
    """Raise `exc` in the thread `thread_id` at its next Python line; None takes back one not raised yet."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None if exc is None else ctypes.py_object(exc))


def _with_timer_thread(call: Callable[[], T], seconds: float) -> T:
    target = threading.get_ident()
    lock = threading.Lock()
    running, raised = True, False

    def fire() -> None:
        nonlocal raised
        with lock:
            if running:
                _set_async_exc(target, EvaluationTimeout)
                raised = True

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        return call()
    finally:
        with lock:
            running = False
            if raised:
                _set_async_exc(target, None)  # the call ended before the exception reached it
        timer.cancel()
        timer.join()


def timed_out_after(seconds: float) -> str:
    """How every error of an evaluation past its deadline says so, in this process or on a Ray evaluator."""
    return f"timed out after {seconds:g} s (eval_timeout={seconds:g})"


def timed_out(exc: EvaluationTimeout, seconds: float) -> str:
    """The error text of an evaluation stopped at its deadline: the timeout and where it was, then its traceback."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
    where = f" and was interrupted in {frames[-1].name} ({frames[-1].filename}:{frames[-1].lineno}): {frames[-1].line}" if frames else ""
    summary = timed_out_after(seconds)
    stack = "".join(traceback.format_list(frames))
    return f"the evaluation {summary}{where}\nTraceback (most recent call last):\n{stack}EvaluationTimeout: {summary}"
