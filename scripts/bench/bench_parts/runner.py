"""What every part of run_all.py uses to run its script: the command run with its output to a log (nothing is run
when rendering), the command as BENCHMARKS.md shows it, and the parts whose script writes its own sections
(ray_tune, scaling)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT

BENCH = Path(__file__).resolve().parents[1]  # scripts/bench: the parts' scripts
PY = sys.executable

RENDER_ONLY = False  # --render: the parts' outputs of the last run are read again, nothing is run


def run(command: list[str], log: Path, env: dict | None = None) -> float:
    """Run one part's script, its output to `log` (and a line per step here); returns its wall time."""
    if RENDER_ONLY:
        return 0.0
    print(f"$ {' '.join(command)}", flush=True)
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode:
        tail = log.read_text()[-4000:]
        raise SystemExit(f"failed ({proc.returncode}) after {elapsed:.0f} s: {' '.join(command)}\n{tail}")
    print(f"  done in {elapsed:.0f} s (log: {log})", flush=True)
    return elapsed


def relative(command: list[str]) -> str:
    return " ".join(os.path.relpath(c, ROOT) if c.startswith(str(ROOT)) else c for c in command).replace(
        os.path.relpath(PY, ROOT), ".venv/bin/python"
    )


def ensure_ray_tune(out: Path) -> None:
    try:
        import ray.tune  # noqa: F401
    except ImportError:
        run([PY, "-m", "pip", "install", "-q", "-e", f"{ROOT}[bench]"], out / "pip-bench.log")


def script_part(name: str, script: str, args, out: Path, quick: list[str]) -> dict | None:
    raw_json = args.results_dir / f"{name}-report.json"
    if RENDER_ONLY and not raw_json.exists():
        return None  # rendering, and this part's results are not there
    command = [PY, str(BENCH / script), "--out", str(raw_json), *(quick if args.quick else [])]
    run(command, out / f"{name}.log")
    report = json.loads(raw_json.read_text())
    report["command"] = relative(command)
    if "sections" not in report:
        report["sections"] = [{k: report[k] for k in ("title", "columns", "rows", "notes") if k in report}]
    return report
