"""The facts of a history directory: its run, criterion and baseline, and one row per finished evaluation,
each with its kind (how the report draws it)."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..criterion import AccuracyCriterion
from ..history.files import read_history
from ..history.fingerprint import criterion_from_fingerprint, space_from_fingerprint
from ..history.measures import Measure, read_measures
from ..records import BASELINE_STAGE, CANCELLED, ERROR, LOST, REJECTED, is_wasted, result_of
from ..space import LOWER_PRECISIONS, PRECISION_CODES, PRECISIONS

# Kinds of evaluation, each with its colour (svg.COLOURS): the same in both pictures.
MEETS, FAILS, WASTED, BASELINE, ERRORED, STOPPED = "meets", "fails", "wasted", "baseline", "errored", "stopped"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class Row:
    """One finished evaluation of the history."""

    trial_id: int
    commit_seq: int | None
    config: str
    stage: str
    status: str
    accuracy: float | None  # None where there is none, or it is not finite
    meets: bool | None
    worker: str
    start: float | None  # seconds since the epoch
    end: float | None
    bound: float | None = None  # a rejected evaluation's: the best its accuracy could have been (it surely failed)
    samples: int | None = None  # an evaluation read batch by batch: the samples it read, and those in all
    samples_total: int | None = None

    @property
    def shown(self) -> float | None:
        """The value drawn for it: its accuracy, or for a rejected one the bound it reached."""
        return self.accuracy if self.accuracy is not None else self.bound

    @property
    def is_baseline(self) -> bool:
        return self.stage == BASELINE_STAGE

    @property
    def committed(self) -> bool:
        return self.commit_seq is not None

    @property
    def wasted(self) -> bool:
        return is_wasted(self.status, self.stage, self.commit_seq)

    @property
    def kind(self) -> str:
        if self.status in (CANCELLED, LOST):
            return STOPPED
        if self.status == REJECTED:
            return FAILS if self.committed else WASTED
        if self.status == ERROR or self.accuracy is None:
            return ERRORED
        if self.is_baseline:
            return BASELINE
        if self.committed:
            return MEETS if self.meets else FAILS
        return WASTED

    @property
    def duration(self) -> float | None:
        return None if self.start is None or self.end is None else max(0.0, self.end - self.start)

    def counts(self, precisions: tuple[str, ...] = PRECISIONS) -> dict[str, int]:
        """Ops at each of `precisions`."""
        return {p: self.config.count(PRECISION_CODES[p]) for p in precisions}


@dataclass(frozen=True)
class Facts:
    """What the report says about a history."""

    directory: Path
    run_id: str
    strategy: str
    criterion: AccuracyCriterion
    baseline: float | None
    baseline_given: bool
    baseline_failed: bool
    n_ops: int
    rows: list[Row]
    precisions: tuple[str, ...] = LOWER_PRECISIONS  # the run's lower precisions, in pool order
    measures: list[Measure] = field(default_factory=list)  # latency, size, sensitivity... (tune() with a checkpoint)
    ops: tuple[tuple[str, str], ...] = ()  # (name, type) of each op, in space order

    @property
    def goal(self) -> float | None:
        if self.baseline is None:
            return None
        return self.criterion.goal(self.baseline)

    @property
    def committed(self) -> list[Row]:
        return sorted((r for r in self.rows if r.committed), key=lambda r: r.commit_seq)

    @property
    def result(self) -> Row | None:
        return result_of(self.committed)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.rows)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _seconds(column: pa.ChunkedArray) -> list[float | None]:
    micros = pc.cast(column, pa.int64()).to_pylist()
    return [None if m is None else m / 1e6 for m in micros]


def _text(value: object) -> str:
    """History text on one line."""
    return _CONTROL.sub(" ", "" if value is None else str(value))


def read_facts(directory: str | os.PathLike) -> Facts:
    """The facts of the history in `directory`; raises HistoryError where it holds no history."""
    loaded = read_history(directory)
    fp = loaded.fingerprint
    table = loaded.finished_table()
    names = ("trial_id", "commit_seq", "config", "stage", "status", "accuracy", "meets", "worker", "bound", "samples", "samples_total")
    columns = {name: table[name].to_pylist() for name in names}
    starts, ends = _seconds(table["start_time"]), _seconds(table["end_time"])
    rows = [
        Row(
            trial_id=columns["trial_id"][i],
            commit_seq=columns["commit_seq"][i],
            config=columns["config"][i] or "",
            stage=_text(columns["stage"][i]),
            status=_text(columns["status"][i]),
            accuracy=_finite(columns["accuracy"][i]),
            meets=columns["meets"][i],
            worker=_text(columns["worker"][i]),
            start=starts[i],
            end=ends[i],
            bound=_finite(columns["bound"][i]),
            samples=columns["samples"][i],
            samples_total=columns["samples_total"][i],
        )
        for i in range(table.num_rows)
    ]
    baseline = _finite(loaded.baseline())
    given = fp["baseline"] is not None
    failed = baseline is None and any(r.is_baseline and r.status == ERROR for r in rows)
    return Facts(
        directory=Path(directory),
        run_id=_text(loaded.run_id),
        strategy=_text(fp.get("strategy")),
        criterion=criterion_from_fingerprint(fp),
        baseline=baseline,
        baseline_given=given,
        baseline_failed=failed,
        n_ops=len(space_from_fingerprint(fp)),
        rows=rows,
        precisions=tuple(p for p in LOWER_PRECISIONS if p in fp["precisions"]),
        measures=read_measures(directory),
        ops=tuple((op.name, op.type) for op in space_from_fingerprint(fp)),
    )
