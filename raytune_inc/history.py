"""The trial history as an Arrow table: one row per evaluation, readable by plain pyarrow."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from .records import Evaluation
from .space import Config

SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("trial_id", pa.int64()),  # dispatch order; the baseline is 0
        ("commit_seq", pa.int64()),  # 1-based order on the committed path; null if never committed
        ("config", pa.map_(pa.string(), pa.string())),
        ("config_key", pa.string()),
        ("config_hash", pa.string()),
        ("strategy", pa.string()),
        ("stage", pa.string()),
        ("status", pa.string()),
        ("accuracy", pa.float64()),
        ("meets", pa.bool_()),
        ("worker", pa.string()),
        ("node", pa.string()),
        ("device", pa.string()),
        ("start_time", pa.timestamp("us", tz="UTC")),
        ("end_time", pa.timestamp("us", tz="UTC")),
        ("error", pa.string()),
    ]
)


@dataclass
class HistoryRow:
    """One evaluation: created when dispatched (trial id = dispatch order), completed when its result is in."""

    trial_id: int
    config: Config
    stage: str
    dispatched: float = 0.0  # time.time() when it was dispatched
    worker: str = ""
    evaluation: Evaluation | None = None
    commit_seq: int | None = None


def history_table(run_id: str, strategy: str, rows: list[HistoryRow], meets: Callable[[float | None], bool]) -> pa.Table:
    """The completed rows as a table; `meets(accuracy)` judges them against the baseline."""
    rows = [r for r in rows if r.evaluation is not None]

    def column(get):
        return [get(r) for r in rows]

    evs = [r.evaluation for r in rows]
    data = {
        "run_id": [run_id] * len(rows),
        "trial_id": column(lambda r: r.trial_id),
        "commit_seq": column(lambda r: r.commit_seq),
        "config": [list(e.config.as_dict().items()) for e in evs],
        "config_key": [e.config.key() for e in evs],
        "config_hash": [e.config.digest() for e in evs],
        "strategy": [strategy] * len(rows),
        "stage": column(lambda r: r.stage),
        "status": [e.status for e in evs],
        "accuracy": [e.accuracy for e in evs],
        "meets": [meets(e.accuracy) for e in evs],
        "worker": [e.worker for e in evs],
        "node": [e.node for e in evs],
        "device": [e.device for e in evs],
        "start_time": [int(e.start * 1e6) for e in evs],
        "end_time": [int(e.end * 1e6) for e in evs],
        "error": [e.error for e in evs],
    }
    return pa.table(data, schema=SCHEMA)
