"""The GPU check's machinery: the time budget (and the alarm that cuts a step at its end), the JSON report written
again after every step, and `step`, which runs one step under both, its errors recorded, not raised."""

from __future__ import annotations

import json
import signal
import sys
import time
import traceback
from pathlib import Path


class OutOfBudget(BaseException):
    """Raised by the alarm at the end of the budget (a BaseException, so that no `except Exception` swallows it)."""


class Budget:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.started = time.monotonic()

    def used(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.seconds - self.used()

    def arm(self) -> None:
        def ring(signum, frame):
            raise OutOfBudget(f"time budget of {self.seconds:g} s used up")

        signal.signal(signal.SIGALRM, ring)
        signal.setitimer(signal.ITIMER_REAL, max(1.0, self.left()))

    def disarm(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)

    def skip_reason(self, need: float) -> str | None:
        """Why a step needing about `need` seconds is not started, or None when it fits."""
        if self.left() < need:
            return f"skipped: time budget ({self.used():.0f} s of {self.seconds:g} s used, this step needs about {need:g} s)"
        return None


class Report:
    """The JSON document, written again after every step."""

    def __init__(self, path: Path, budget: Budget):
        self.path, self.budget = path, budget
        self.data: dict = {"script": "scripts/bench/gpu_check.py", "argv": sys.argv[1:], "started": time.strftime("%Y-%m-%d %H:%M:%S")}

    def save(self) -> None:
        self.data["elapsed_s"] = round(self.budget.used(), 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        tmp.replace(self.path)


def error_text(exc: BaseException, lines: int = 12) -> str:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    text = "".join(tb).strip().splitlines()
    return "\n".join(text[-lines:])


def step(out: dict, key: str, budget: Budget, need: float, fn, report: Report):
    """out[key] = fn(entry) (fn fills `entry` as it goes), unless the budget is short; errors recorded, not raised.
    Returns the value of fn, or None."""
    reason = budget.skip_reason(need)
    if reason:
        out[key] = {"status": reason}
        report.save()
        return None
    entry: dict = {}
    out[key] = entry
    t0 = time.perf_counter()
    try:
        value = fn(entry)
        entry.setdefault("status", "ok")
        return value
    except OutOfBudget as exc:
        entry["status"] = f"cut: {exc}"
        raise
    except Exception as exc:
        entry["status"] = "error"
        entry["error"] = error_text(exc)
        return None
    finally:
        entry["seconds"] = round(time.perf_counter() - t0, 2)
        report.save()
