"""What a run reports while it goes: Ray dashboard metrics and a progress line on the terminal.

A `RunMonitor` is told of every finished evaluation, every commit and the pool's state,
keeps the counts, and passes them on to its sinks: `RayMetrics` (custom metrics through
`ray.util.metrics`, shown in the Ray dashboard and on each node's Prometheus endpoint) and
`ProgressLine` (one line on stderr, only when stderr is a terminal).

The words (evaluated, committed, wasted, errored, cancelled, lost) are those of `records.py`. Wasted
evaluations are counted when the run ends, since until then the strategy may still ask for any
result; evaluations cancelled (made moot, or in flight when the run stopped) are neither evaluated nor wasted.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

from .history.table import HistoryRow
from .records import CANCELLED, ERROR, EVALUATED, LOST, is_wasted

PREFIX = "raytune_inc_"
# Trial durations from a few milliseconds (a toy evaluation) to many minutes (a large model on a big set).
DURATION_BOUNDARIES = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800]
_METRICS: dict[str, Any] = {}


def _metric(kind: str, name: str, description: str, tag_keys: tuple[str, ...], **kwargs: Any) -> Any:
    """One metric object per name and process: Ray registers a name once."""
    metric = _METRICS.get(name)
    if metric is None:
        from ray.util import metrics

        metric = getattr(metrics, kind)(PREFIX + name, description=description, tag_keys=tag_keys, **kwargs)
        _METRICS[name] = metric
    return metric


class RayMetrics:
    """The run's figures as Ray custom metrics, tagged with the strategy, the run (first 8 hex digits of
    its id) and, for trial counts and durations, the stage."""

    TRIAL_TAGS = ("strategy", "stage", "run")
    RUN_TAGS = ("strategy", "run")

    def __init__(self, strategy: str, run_id: str):
        self.tags = {"strategy": strategy, "run": run_id[:8]}
        counter = "Counter"
        self.committed = _metric(counter, "trials_committed", "Trials committed, in strategy order", self.TRIAL_TAGS)
        finished = "Evaluations finished (ok, error or rejected), the baseline included"
        self.evaluated = _metric(counter, "trials_evaluated", finished, self.TRIAL_TAGS)
        self.wasted = _metric(counter, "trials_wasted", "Evaluations finished but never committed (speculative misses)", self.TRIAL_TAGS)
        self.errored = _metric(counter, "trials_errored", "Evaluations that raised", self.TRIAL_TAGS)
        self.lost = _metric(counter, "trials_lost", "Evaluations lost with their evaluator (evaluated again)", self.TRIAL_TAGS)
        cancelled = "Evaluations cancelled: made moot by a commit, or in flight when the run stopped"
        self.cancelled = _metric(counter, "trials_cancelled", cancelled, self.TRIAL_TAGS)
        self.in_flight = _metric("Gauge", "trials_in_flight", "Evaluations running now", self.RUN_TAGS)
        self.idle = _metric("Gauge", "evaluators_idle", "Evaluators up and waiting for work", self.RUN_TAGS)
        self.baseline = _metric("Gauge", "baseline_accuracy", "Accuracy of the all-fp32 config", self.RUN_TAGS)
        self.best = _metric("Gauge", "best_accuracy", "Accuracy of the config the run would return now", self.RUN_TAGS)
        self.duration = _metric(
            "Histogram", "trial_duration_seconds", "Wall time of one evaluation", self.TRIAL_TAGS, boundaries=DURATION_BOUNDARIES
        )

    def _trial(self, stage: str) -> dict[str, str]:
        return {**self.tags, "stage": stage}

    def completed(self, row: HistoryRow) -> None:
        ev = row.evaluation
        tags = self._trial(row.stage)
        if ev.status in EVALUATED:
            self.evaluated.inc(1, tags=tags)
            self.duration.observe(max(0.0, ev.end - ev.start), tags=tags)
        if ev.status == ERROR:
            self.errored.inc(1, tags=tags)
        elif ev.status == LOST:
            self.lost.inc(1, tags=tags)
        elif ev.status == CANCELLED:
            self.cancelled.inc(1, tags=tags)

    def committed_trial(self, row: HistoryRow) -> None:
        self.committed.inc(1, tags=self._trial(row.stage))

    def accuracies(self, baseline: float | None, best: float | None) -> None:
        if baseline is not None:
            self.baseline.set(baseline, tags=self.tags)
        if best is not None:
            self.best.set(best, tags=self.tags)

    def pool(self, in_flight: int, idle: int) -> None:
        self.in_flight.set(in_flight, tags=self.tags)
        self.idle.set(idle, tags=self.tags)

    def finished(self, wasted: list[HistoryRow]) -> None:
        for row in wasted:
            self.wasted.inc(1, tags=self._trial(row.stage))
        self.pool(0, 0)


def progress_wanted(stream: TextIO) -> bool:
    """RAYTUNE_INC_PROGRESS=1 or 0 forces the progress line on or off; else it shows on a terminal."""
    forced = os.environ.get("RAYTUNE_INC_PROGRESS", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class ProgressLine:
    """One line on `stream`, redrawn at most every `interval` s: committed, in flight, done ahead, best accuracy."""

    def __init__(self, strategy: str, stream: TextIO, interval: float = 0.2):
        self.strategy = strategy
        self.stream = stream
        self.interval = interval
        self.started = time.monotonic()
        self._last = 0.0
        self._width = 0

    def _write(self, text: str, end: str = "") -> None:
        pad = max(0, self._width - len(text))
        self.stream.write("\r" + text + " " * pad + end)
        self.stream.flush()
        self._width = 0 if end else len(text)

    def show(self, monitor: RunMonitor, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        m = monitor
        parts = [f"{m.committed} committed", f"{m.in_flight} in flight", f"{m.ahead} ahead"]
        if m.errored:
            parts.append(f"{m.errored} errored")
        self._write(f"raytune-inc {self.strategy}: " + ", ".join(parts) + f", {m.accuracy_text()}, {now - self.started:.0f} s")

    def close(self, monitor: RunMonitor) -> None:
        m = monitor
        text = f"raytune-inc {self.strategy}: {m.committed} committed, {m.wasted} wasted"
        if m.errored:
            text += f", {m.errored} errored"
        self._write(text + f", {m.accuracy_text()}, {time.monotonic() - self.started:.1f} s", end="\n")


class RunMonitor:
    """The counts of one run, passed on to Ray metrics (when attached) and the progress line (when wanted)."""

    def __init__(self, strategy: str, tolerance: float | None = None, stream: TextIO | None = None):
        self.strategy = strategy
        self.evaluated = self.committed = self.errored = self.lost = self.wasted = 0
        self.cancelled = 0  # evaluations stopped once moot (or in flight when the run stopped)
        self.in_flight = self.idle = 0
        self.baseline: float | None = None
        self.goal: float | None = None
        self.best: float | None = None
        self._finished_rows: dict[int, HistoryRow] = {}  # evaluated, not committed yet: trial id -> row
        self.metrics: RayMetrics | None = None
        self._done = False
        stream = sys.stderr if stream is None else stream
        self.progress = ProgressLine(strategy, stream) if progress_wanted(stream) else None

    @property
    def ahead(self) -> int:
        """Evaluations finished before the strategy asked for them (committed later, or wasted)."""
        return len(self._finished_rows)

    def attach_metrics(self, run_id: str) -> None:
        self.metrics = RayMetrics(self.strategy, run_id)
        self.metrics.accuracies(self.baseline, self.best)

    def accuracy_text(self) -> str:
        if self.baseline is None:
            return "baseline pending"
        best = "none yet" if self.best is None else f"{self.best:.4f}"
        return f"best {best} (baseline {self.baseline:.4f}, goal {self.goal:.4f})"

    def set_baseline(self, baseline: float, goal: float) -> None:
        self.baseline, self.goal = baseline, goal
        if self.metrics:
            self.metrics.accuracies(baseline, None)
        self._show()

    def completed(self, row: HistoryRow, baseline_stage: bool) -> None:
        status = row.evaluation.status
        self.evaluated += status in EVALUATED
        if status in EVALUATED and not baseline_stage:
            self._finished_rows[row.trial_id] = row
        self.errored += status == ERROR
        self.lost += status == LOST
        self.cancelled += status == CANCELLED
        if self.metrics:
            self.metrics.completed(row)
        self._show()

    def committed_trial(self, row: HistoryRow, best: float | None) -> None:
        self.committed += 1
        self._finished_rows.pop(row.trial_id, None)
        if best is not None:
            self.best = best
            if self.metrics:
                self.metrics.accuracies(None, best)
        if self.metrics:
            self.metrics.committed_trial(row)
        self._show()

    def pool(self, in_flight: int, idle: int) -> None:
        self.in_flight, self.idle = in_flight, idle
        if self.metrics:
            self.metrics.pool(in_flight, idle)
        self._show()

    def _show(self) -> None:
        if self.progress:
            self.progress.show(self)

    def finished(self) -> None:
        """The run is over: what was evaluated and not committed is wasted. Once; later calls do nothing."""
        if self._done:
            return
        self._done = True
        wasted = [r for r in self._finished_rows.values() if is_wasted(r.evaluation.status, r.stage, r.commit_seq)]
        self.wasted += len(wasted)
        self._finished_rows.clear()
        self.in_flight = self.idle = 0
        if self.metrics:
            self.metrics.finished(wasted)
        if self.progress:
            self.progress.close(self)
