"""A part's figures as run_all.py writes them: the part's report as JSON beside the logs, and its raw rows (one per
measurement) as `<results>/<part>.csv` and `.arrow` (Arrow IPC file)."""

from __future__ import annotations

import json
from pathlib import Path


def write_raw(report: dict, out: Path, results: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rows = report.get("raw") or []
    (out / f"{report['part']}.json").write_text(json.dumps(report, indent=1, default=str))
    if not rows:
        return
    out = results
    keys = list(dict.fromkeys(k for r in rows for k in r))
    table = pa.table({k: [r.get(k) for r in rows] for k in keys})
    pacsv.write_csv(table, out / f"{report['part']}.csv")
    with pa.OSFile(str(out / f"{report['part']}.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
