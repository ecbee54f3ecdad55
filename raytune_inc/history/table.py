"""The trial history as an Arrow table: one row per evaluation, readable by plain pyarrow.

A run builds its rows as evaluations finish (`rows_table`); `finish_table` then fills
in what is only known later, the commit sequence and `meets`, the same way for a run
in memory and for a history loaded from disk, so both give the same table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..criterion import AccuracyCriterion
from ..records import Evaluation
from ..space import Config

SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("trial_id", pa.int64()),  # dispatch order; the baseline is 0
        ("commit_seq", pa.int64()),  # 1-based order on the committed path; null if never committed
        ("config", pa.string()),  # Config.key(): one precision code per op, in the order of the space's ops
        ("config_hash", pa.string()),  # Config.digest(): sha256 of config, 16 hex digits
        ("strategy", pa.string()),
        ("stage", pa.string()),
        ("status", pa.string()),  # ok, error, rejected, cancelled, lost
        ("accuracy", pa.float64()),
        ("meets", pa.bool_()),  # null while the baseline is unknown
        ("worker", pa.string()),
        ("node", pa.string()),
        ("device", pa.string()),
        ("start_time", pa.timestamp("us", tz="UTC")),
        ("end_time", pa.timestamp("us", tz="UTC")),
        ("error", pa.string()),
        # An evaluation that yielded running.Running: the samples it read and those in all (null: it did not); a
        # rejected one (stopped once it surely missed the goal) has the bound it reached, the best its accuracy could be.
        ("samples", pa.int64()),
        ("samples_total", pa.int64()),
        ("bound", pa.float64()),
    ]
)
# The columns of histories written before `samples`, `samples_total` and `bound`: read with those null.
SCHEMA_BEFORE_SAMPLES = pa.schema(list(SCHEMA)[:-3])


@dataclass(eq=False)
class HistoryRow:
    """One evaluation: created when dispatched (trial id = dispatch order), completed when its result is in.

    `saved`: the completed row is in the checkpoint on disk (a later commit of it is saved apart).
    """

    trial_id: int
    config: Config
    stage: str
    dispatched: float = 0.0  # time.time() when it was dispatched
    worker: str = ""
    evaluation: Evaluation | None = None
    commit_seq: int | None = None
    saved: bool = False


def rows_table(run_id: str, strategy: str, rows: list[HistoryRow], criterion: AccuracyCriterion, baseline: float | None) -> pa.Table:
    """The completed `rows` as a table, in the given order."""
    rows = [r for r in rows if r.evaluation is not None]
    evs = [r.evaluation for r in rows]
    data = {
        "run_id": [run_id] * len(rows),
        "trial_id": [r.trial_id for r in rows],
        "commit_seq": [r.commit_seq for r in rows],
        "config": [e.config.key() for e in evs],
        "config_hash": [e.config.digest() for e in evs],
        "strategy": [strategy] * len(rows),
        "stage": [r.stage for r in rows],
        "status": [e.status for e in evs],
        "accuracy": [e.accuracy for e in evs],
        "meets": [None if baseline is None else criterion.meets(e.accuracy, baseline) for e in evs],
        "worker": [e.worker for e in evs],
        "node": [e.node for e in evs],
        "device": [e.device for e in evs],
        "start_time": [int(e.start * 1e6) for e in evs],
        "end_time": [int(e.end * 1e6) for e in evs],
        "error": [e.error for e in evs],
        "samples": [e.samples for e in evs],
        "samples_total": [e.samples_total for e in evs],
        "bound": [e.bound for e in evs],
    }
    return pa.table(data, schema=SCHEMA)


def finish_table(table: pa.Table, commits: Mapping[int, int], criterion: AccuracyCriterion, baseline: float | None) -> pa.Table:
    """`table` sorted by trial id, with the commit sequences of `commits` (trial id -> seq) filled in
    and `meets` judged against `baseline` (null where there is none)."""
    if commits:
        trial_ids = table["trial_id"].to_pylist()
        recorded = table["commit_seq"].to_pylist()
        seqs = [seq if seq is not None else commits.get(t) for t, seq in zip(trial_ids, recorded, strict=True)]
        table = table.set_column(table.schema.get_field_index("commit_seq"), "commit_seq", pa.array(seqs, pa.int64()))
    if baseline is None:
        meets = pa.nulls(table.num_rows, pa.bool_())
    else:
        accuracy = table["accuracy"].to_numpy(zero_copy_only=False).astype(np.float64)  # null -> NaN, never meets
        meets = pa.array(criterion.meets_array(accuracy, baseline), pa.bool_())
    table = table.set_column(table.schema.get_field_index("meets"), "meets", meets)
    trial_ids = table["trial_id"].to_numpy()
    if len(trial_ids) > 1 and not bool(np.all(trial_ids[1:] > trial_ids[:-1])):
        table = table.sort_by("trial_id")
    return table.combine_chunks()
