"""The published benchmark report: BENCHMARKS.md is what scripts/bench/run_all.py makes of the raw figures beside it."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "scripts" / "bench" / "results"


def test_benchmarks_md_is_rendered_from_the_published_results(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    out = tmp_path / "BENCHMARKS.md"
    command = [sys.executable, "scripts/bench/run_all.py", "--render", "--results", str(results), "--out-dir", str(tmp_path / "logs")]
    done = subprocess.run([*command, "--markdown", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]

    def body(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("Written by")]

    rendered = out.read_text().replace(str(results), "scripts/bench/results")
    assert body(rendered) == body((REPO / "BENCHMARKS.md").read_text())
    for part in ("inc", "speculation", "ray_tune", "scaling"):
        raw = json.loads((tmp_path / "logs" / f"{part}.json").read_text())["raw"]
        with open(RESULTS / f"{part}.csv") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == len(raw) > 0, part


def test_a_part_run_again_alone_says_when_and_on_which_machine():
    sys.path.insert(0, str(REPO / "scripts" / "bench"))
    try:
        from bench_parts.markdown import markdown
    finally:
        sys.path.remove(str(REPO / "scripts" / "bench"))
    machine = {"cpu": "CPU A", "cpu features": "avx2", "cores": 2, "memory": "1 GiB", "load average at start": "0.0"}
    machine.update(torch="t", torchao="a", ray="r")
    section = {"title": "T", "columns": ["a"], "rows": [[1]], "notes": []}
    reports = [{"part": p, "command": p, "sections": [section]} for p in ("first", "again")]
    later = {"again": {"date": "2026-01-02 03:04 UTC", "machine": {**machine, "cpu": "CPU B"}, "elapsed_s": 120}}
    text = markdown(reports, {"date": "2026-01-01", "machine": machine, "later": later}, "cmd", RESULTS, 60)
    assert "compared only among themselves: again (2026-01-02 03:04 UTC)." in text
    first, again = text.split("## T")[1:]
    assert "Run on" not in first and "Run on 2026-01-02 03:04 UTC, alone, in 2 minutes, on: CPU B (avx2), 2 cores" in again
    assert "Run again later" not in markdown(reports, {"date": "d", "machine": machine}, "cmd", RESULTS, 60)
