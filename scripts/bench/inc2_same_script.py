"""One Neural Compressor 2.x script, run on INC 2.6 and on raytune-inc: the same lines but the imports.

    bash scripts/bench/setup_inc.sh   # once: .venv-inc, INC 2.6 on torch 2.13
    .venv/bin/python scripts/bench/inc2_same_script.py [--repeats 3] [--out DIR]

Takes scripts/examples/inc2_migration.py, writes a copy whose `from raytune_inc.neural_compressor`
imports read `from neural_compressor` (the only change), runs each side with `--tune` at
quant_level 0 and "auto" (each run a new process; the median of `--repeats` wall times of `fit`),
and prints a Markdown table: FP32 and tuned accuracy, the trial the tuned config came from, the ops
each side put in int8, and where the two disagree.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "examples" / "inc2_migration.py"
SIDES = {"raytune-inc": ROOT / ".venv" / "bin" / "python", "INC 2.6": ROOT / ".venv-inc" / "bin" / "python"}


def run(python: Path, script: Path, level: str, out: Path) -> dict:
    report = out / f"{python.parent.parent.name}-{level}.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [str(python), str(script), "--tune", "--quant-level", level, "--output", str(out / "saved"), "--json", str(report)]
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(report.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="keep the JSON outcomes here (default: a temporary folder)")
    args = parser.parse_args()
    if not SIDES["INC 2.6"].exists():
        raise SystemExit("no .venv-inc: run `bash scripts/bench/setup_inc.sh` first")
    out = Path(args.out or tempfile.mkdtemp(prefix="inc2_same_script_"))
    out.mkdir(parents=True, exist_ok=True)
    inc_script = out / "inc2_migration_inc.py"
    inc_script.write_text(SCRIPT.read_text().replace("from raytune_inc.neural_compressor", "from neural_compressor"))
    rows, outcomes = [], {}
    for level in ("0", "auto"):
        for side, python in SIDES.items():
            script = SCRIPT if side == "raytune-inc" else inc_script
            runs = [run(python, script, level, out) for _ in range(args.repeats)]
            outcomes[(side, level)] = runs[-1] | {"seconds": statistics.median(r["seconds"] for r in runs)}
        ours, inc = outcomes[("raytune-inc", level)], outcomes[("INC 2.6", level)]
        differ = sorted(op for op in set(ours["ops"]) | set(inc["ops"]) if ours["ops"].get(op) != inc["ops"].get(op))
        differing = ", ".join(f"{op} ({ours['ops'].get(op, '-')} / {inc['ops'].get(op, '-')})" for op in differ) or "none"
        for side in SIDES:
            o = outcomes[(side, level)]
            int8 = ", ".join(sorted(op for op, dtype in o["ops"].items() if dtype == "int8"))
            cells = [
                level,
                side,
                f"{o['fp32_accuracy']:.4f}",
                f"{o['accuracy']:.4f}",
                o["trial_number"],
                f"{o['seconds']:.2f}",
                int8,
                differing,
            ]
            rows.append("| " + " | ".join(str(c) for c in cells) + " |")
    print(
        "| quant_level | run on | FP32 accuracy | tuned accuracy | tuned config's trial | fit wall time (s, median) | int8 ops "
        "| ops that differ (raytune-inc / INC) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    (out / "outcomes.json").write_text(json.dumps({f"{s} {lv}": o for (s, lv), o in outcomes.items()}, indent=2))
    print(f"\nJSON: {out / 'outcomes.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
