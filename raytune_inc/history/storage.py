"""Where a run keeps its evaluations: one small interface, in memory or in an Arrow checkpoint directory.

The run talks to its storage as an Optuna study talks to its storage: `open` it (and learn
what an earlier session recorded), `append` what finished and what was committed, and ask
for the `table` of every evaluation. The run keeps the trial bookkeeping; the storage keeps
the rows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

from ..criterion import AccuracyCriterion
from ..records import BASELINE_STAGE, EVALUATED, Evaluation
from ..space import Config, TuningSpace
from .files import LoadedHistory, decode_configs
from .table import HistoryRow, finish_table, rows_table
from .writer import HistoryWriter


@dataclass(frozen=True)
class RunInfo:
    """What a storage needs to know of the run whose rows it keeps."""

    run_id: str
    strategy: str
    criterion: AccuracyCriterion
    space: TuningSpace
    fingerprint: dict


@dataclass
class Recorded:
    """What earlier sessions of a run recorded: a resumed run commits these results and never evaluates them again."""

    run_id: str
    results: dict[Config, HistoryRow]  # ok and errored results, baseline excluded, the first of each config
    baseline: float | None  # the given baseline, or the recorded baseline evaluation's accuracy
    next_trial_id: int


class Storage(Protocol):
    def open(self, run: RunInfo) -> Recorded | None:
        """Start keeping the rows of `run`; returns what earlier sessions of it recorded, if any."""

    def append(self, rows: Sequence[HistoryRow], commits: Sequence[tuple[int, int]], baseline: float | None) -> None:
        """Keep completed `rows`, and commits `(trial id, commit seq)` of rows appended before they were committed."""

    def table(self, baseline: float | None) -> pa.Table:
        """Every evaluation kept, earlier sessions' included: the table `load_history` gives for a checkpoint."""

    def close(self) -> None:
        """Release what the storage holds (files, a lock); what was appended stays."""


@dataclass
class MemoryStorage:
    """The rows of one run, in memory (no checkpoint)."""

    run: RunInfo | None = None
    rows: list[HistoryRow] = field(default_factory=list)

    def open(self, run: RunInfo) -> Recorded | None:
        self.run = run
        return None

    def append(self, rows: Sequence[HistoryRow], commits: Sequence[tuple[int, int]], baseline: float | None) -> None:
        self.rows.extend(rows)  # a row committed later carries its commit seq itself

    def table(self, baseline: float | None) -> pa.Table:
        run = self.run
        table = rows_table(run.run_id, run.strategy, self.rows, run.criterion, baseline)
        return finish_table(table, {}, run.criterion, baseline)

    def close(self) -> None:
        pass


class ArrowStorage:
    """The rows of one run in a checkpoint directory: each append durable (see `writer.py`); `resume=True` goes on
    with the history already there."""

    def __init__(self, directory: str | os.PathLike, resume: bool):
        if not isinstance(directory, str | os.PathLike):
            raise TypeError(f"checkpoint must be a directory path (str or os.PathLike), got {type(directory).__name__}")
        self.directory = Path(directory)
        self.resume = resume
        self._memory = MemoryStorage()  # this session's rows, for the table
        self._store: HistoryWriter | None = None
        self._loaded: LoadedHistory | None = None
        self._recorded: Recorded | None = None

    def open(self, run: RunInfo) -> Recorded | None:
        self._memory.open(run)
        self._store, self._loaded = HistoryWriter.open(self.directory, run.run_id, run.fingerprint, self.resume)
        if self._loaded is None:
            return None
        self._memory.run = RunInfo(
            self._loaded.run_id, run.strategy, run.criterion, run.space, run.fingerprint
        )  # a resumed run keeps its id
        self._recorded = _recorded(self._loaded, run.space)
        return self._recorded

    def append(self, rows: Sequence[HistoryRow], commits: Sequence[tuple[int, int]], baseline: float | None) -> None:
        run = self._memory.run
        self._store.append(rows_table(run.run_id, run.strategy, list(rows), run.criterion, baseline) if rows else None, list(commits))
        self._memory.append(rows, commits, baseline)

    def table(self, baseline: float | None) -> pa.Table:
        run = self._memory.run
        table = rows_table(run.run_id, run.strategy, self._memory.rows, run.criterion, baseline)
        commits: dict[int, int] = {}
        if self._loaded is not None:
            table = pa.concat_tables([self._loaded.table, table])
            commits = dict(self._loaded.commits)
            commits.update((r.trial_id, r.commit_seq) for r in self._recorded.results.values() if r.commit_seq is not None)
        return finish_table(table, commits, run.criterion, baseline)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def _recorded(loaded: LoadedHistory, space: TuningSpace) -> Recorded:
    """The results of an earlier session as rows of this run, decoded from Arrow."""
    table = loaded.table
    next_trial_id = int(pc.max(table["trial_id"]).as_py()) + 1 if table.num_rows else 0
    results = table.filter(pc.and_(pc.is_in(table["status"], pa.array(list(EVALUATED))), pc.not_equal(table["stage"], BASELINE_STAGE)))
    configs = decode_configs(space, results["config"])
    names = ("trial_id", "commit_seq", "stage", "status", "accuracy", "error", "worker", "node", "device")
    names += ("samples", "samples_total", "bound")
    columns = {name: results[name].to_pylist() for name in names}
    starts = pc.divide(pc.cast(results["start_time"], pa.int64()), 1e6).to_pylist()
    ends = pc.divide(pc.cast(results["end_time"], pa.int64()), 1e6).to_pylist()
    rows: dict[Config, HistoryRow] = {}
    for i, config in enumerate(configs):
        if config in rows:
            continue
        c = {name: values[i] for name, values in columns.items()}
        evaluation = Evaluation(
            config, c["accuracy"], c["status"], c["error"], starts[i], ends[i], c["worker"], c["node"], c["device"],
            c["samples"], c["samples_total"], c["bound"],
        )  # fmt: skip
        row = HistoryRow(c["trial_id"], config, c["stage"], starts[i], c["worker"], evaluation, c["commit_seq"], saved=True)
        if row.commit_seq is None:
            row.commit_seq = loaded.commits.get(row.trial_id)
        rows[config] = row
    return Recorded(loaded.run_id, rows, loaded.baseline(), next_trial_id)
