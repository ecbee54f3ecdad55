"""What a run measured besides its trials (latency, size, what was left out and why), kept beside its history.

One Arrow IPC file, `measures.arrow`, of rows (what, subject, precision, value, unit, note),
written atomically once the run has measured them and read back, schema checked, by the
report and the command line. Like the history, it is plain Arrow: nothing is pickled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ..errors import HistoryError
from .writer import write_atomically

MEASURES_FILE = "measures.arrow"
MEASURES_SCHEMA = pa.schema(
    [
        ("what", pa.string()),  # e.g. "latency", "size", "skipped"
        ("subject", pa.string()),  # e.g. "fp32 compiled", an op name, an op type
        ("precision", pa.string()),
        ("value", pa.float64()),
        ("unit", pa.string()),
        ("note", pa.string()),
    ],
    metadata={b"raytune_inc": b"measures"},
)


@dataclass(frozen=True)
class Measure:
    what: str
    subject: str
    value: float | None
    unit: str = ""
    precision: str | None = None
    note: str | None = None


def write_measures(directory: str | os.PathLike, measures: list[Measure]) -> None:
    """Write (replace) the measures of the run whose history is in `directory`, atomically."""
    columns = {name: [getattr(m, name) for m in measures] for name in MEASURES_SCHEMA.names}
    write_atomically(Path(directory) / MEASURES_FILE, pa.table(columns, schema=MEASURES_SCHEMA))


def read_measures(directory: str | os.PathLike) -> list[Measure]:
    """The measures kept in `directory` (none when it has no measures file)."""
    path = Path(directory) / MEASURES_FILE
    if not path.exists():
        return []
    try:
        with pa.OSFile(str(path), "rb") as f:
            table = pa.ipc.open_file(f).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise HistoryError(f"{path} is not a raytune-inc measures file (not an Arrow file: {exc})") from None
    if not table.schema.equals(MEASURES_SCHEMA, check_metadata=True):
        raise HistoryError(f"{path} is not a raytune-inc measures file (its columns are {', '.join(table.schema.names)})")
    return [Measure(r["what"], r["subject"], r["value"], r["unit"], r["precision"], r["note"]) for r in table.to_pylist()]
