"""Every benchmark against the peers, in one run, on one machine: writes BENCHMARKS.md and the raw figures.

    .venv/bin/python scripts/bench/run_all.py [--quick] [--parts inc,speculation,ray_tune,scaling]
        [--out-dir runs/bench] [--markdown BENCHMARKS.md]

Parts, each a script of this folder that can also run alone (their commands are in BENCHMARKS.md):
- inc: Intel Neural Compressor 2.6's conservative strategy vs ours (workers=0, one process each, the same
  models, eval functions, calibration data and criterion), through backend.py; INC runs in
  `.venv-inc`, made by setup_inc.sh (run here if it is missing).
- speculation: sequential (workers=0) vs speculative at 1, 2, 4, 8 workers, through driver.py.
- ray_tune: Ray Tune running the same configs as trials vs our driver (ray_tune_compare.py;
  needs the `bench` extra, `pip install -e ".[bench]"`, installed here if missing).
- scaling: time per trial and memory against the number of ops and the history length (scaling.py).

The raw figures of each part, one row per measurement, go to `<results>/<part>.csv` and
`<results>/<part>.arrow` (Arrow IPC file), with each script's own JSON and the machine and date
(`run.json`); they are published with BENCHMARKS.md, and `--render` writes it again from them. Logs
go to `<out-dir>`. Only figures taken
in this run are compared with each other.
`--quick` makes every part smaller (fewer repeats and sizes): for checking the pipeline, not for publishing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, machine, ms, quartiles_text, spread_text

HERE = Path(__file__).resolve().parent
PY = sys.executable
PARTS = ("inc", "speculation", "ray_tune", "scaling")

RENDER_ONLY = False  # --render: the parts' outputs of the last run are read again, nothing is run


def run(command: list[str], log: Path) -> float:
    """Run one part's script, its output to `log` (and a line per step here); returns its wall time."""
    if RENDER_ONLY:
        return 0.0
    print(f"$ {' '.join(command)}", flush=True)
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
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


# --- inc ---------------------------------------------------------------------------------------------------


def inc_part(args, out: Path) -> dict:
    if not (ROOT / ".venv-inc" / "bin" / "python").exists():
        run(["bash", str(HERE / "setup_inc.sh")], out / "setup_inc.log")
    raw_json = args.results_dir / "backend.json"
    models = "three-layer,digits-cnn" + ("" if args.quick else ",minilm")
    command = [PY, str(HERE / "backend.py"), "--skip-memory", "--models", models, "--out", str(raw_json)]
    command += ["--rounds", "1", "--repeats", "2"] if args.quick else ["--rounds", "2", "--repeats", "3", "--encoder-repeats", "1"]
    run(command, out / "inc.log")
    report = json.loads(raw_json.read_text())
    rows, raw, notes = [], [], []
    for model, r in report["overhead"].items():
        ours_runs = report["runs"]["ours"][model]
        inc_runs = [run_ for block in report["runs"]["inc"].get(model, []) for run_ in block]
        sides = [("raytune-inc", ours_runs, r["ours"]), ("INC 2.6", inc_runs, r.get("inc"))]
        for tool, runs, summary in sides:
            if not runs or summary is None:
                continue
            result = summary["result"]
            overhead = summary["overhead_per_trial_s"]
            walls = [x["total_s"] for x in runs]
            trials = sorted({len(x["trials"]) for x in runs})
            accuracy = f"{result['accuracy']:.4f}" if result else f"none met the goal (best trial {summary['best_trial_accuracy']:.4f})"
            rows.append(
                [
                    model,
                    tool,
                    spread_text(walls),
                    ", ".join(map(str, trials)),
                    quartiles_text(overhead),
                    f"{summary['baseline_accuracy']:.4f}",
                    accuracy,
                    str(result["int8_ops"] if result else 0),
                    str(len(runs)),
                ]
            )
            for i, x in enumerate(runs):
                for j, t in enumerate(x["trials"]):
                    raw.append(
                        {
                            "model": model,
                            "tool": tool,
                            "run": i,
                            "trial": j + 1,
                            "run_wall_s": x["total_s"],
                            "overhead_s": t["overhead_s"],
                            "eval_s": t["eval_s"],
                            "accuracy": t["accuracy"],
                        }
                    )
        if "inc" in r:
            ours_wall = statistics.median(x["total_s"] for x in ours_runs)
            inc_wall = statistics.median(x["total_s"] for x in inc_runs)
            inc_result, ours_result = r["inc"]["result"], r["ours"]["result"]
            faster = (
                f"INC takes {inc_wall / ours_wall:.1f}x ours" if inc_wall >= ours_wall else f"ours takes {ours_wall / inc_wall:.1f}x INC's"
            )
            line = (
                f"{model}: per trial outside the evaluation, INC takes {r['ratio']:.0f}x ours ({r['ratio_without_gc']:.0f}x without its "
                f"gc.collect calls); wall time to the tuned model: ours {ms(ours_wall)}, INC {ms(inc_wall)} ({faster})."
            )
            if inc_result is None:
                line += (
                    f" INC made {statistics.median(len(x['trials']) for x in inc_runs):.0f} (median) trials per run and returned no model "
                    f"(no config met the goal); ours made {statistics.median(len(x['trials']) for x in ours_runs):.0f} and returned one."
                )
            elif inc_result["accuracy"] > ours_result["accuracy"] + 1e-12 or inc_result["int8_ops"] > ours_result["int8_ops"]:
                line += (
                    f" **Ours loses on the result**: INC {inc_result['accuracy']:.4f} with {inc_result['int8_ops']} int8 ops, "
                    f"ours {ours_result['accuracy']:.4f} with {ours_result['int8_ops']}."
                )
            if inc_wall < ours_wall:
                line += " **Ours loses on wall time here.**"
            notes.append(line)
    return {
        "part": "inc",
        "command": relative(command),
        "sections": [
            {
                "title": "Intel Neural Compressor 2.6 conservative vs raytune-inc (int8, workers=0, one process each)",
                "columns": [
                    "model",
                    "tool",
                    "wall time to the tuned model (median, min – max)",
                    "trials per run",
                    "per trial outside the evaluation (median, quartiles)",
                    "FP32 accuracy",
                    "tuned accuracy",
                    "int8 ops",
                    "runs",
                ],
                "rows": rows,
                "notes": notes
                + [
                    "Both sides tune the same model with the same eval function, calibration inputs and criterion (1% relative); "
                    "one torch thread each. INC's wall time includes its FX tracing and its two gc.collect calls per trial; ours "
                    "includes op discovery and one calibration. Details: scripts/bench/README.md."
                ],
            }
        ],
        "raw": raw,
    }


# --- speculation -------------------------------------------------------------------------------------------


def speculation_part(args, out: Path) -> dict:
    raw_json = args.results_dir / "driver.json"
    command = [PY, str(HERE / "driver.py"), "--out", str(raw_json)]
    command += ["--spaces", "2", "--overhead-spaces", "2"] if args.quick else ["--spaces", "3", "--repeats", "2"]
    run(command, out / "speculation.log")
    report = json.loads(raw_json.read_text())
    speed = report["speed"]
    cost = report["cost_s"]
    rows, notes = [], []
    for w in sorted({r["workers"] for r in speed}):
        cells = [r for r in speed if r["workers"] == w]
        ref = {(r["ops"], r.get("repeat", 0)): r for r in speed if r["workers"] == 1}
        speedup = [ref[(r["ops"], r.get("repeat", 0))]["tuning_s"] / r["tuning_s"] for r in cells]
        ideal_ratio = [r["tuning_s"] / r["ideal_s"] for r in cells]
        rows.append(
            [
                "0 (in-process)" if w == 0 else str(w),
                str(len(cells)),
                spread_text([r["trials"] for r in cells], fmt=lambda x: f"{x:.0f}"),
                spread_text([r["wasted"] for r in cells], fmt=lambda x: f"{x:.0f}"),
                spread_text([r["tuning_s"] for r in cells]),
                spread_text([r["startup_s"] for r in cells]),
                spread_text([r["ideal_s"] for r in cells]),
                spread_text(ideal_ratio, fmt=lambda x: f"{x:.2f}"),
                spread_text(speedup, fmt=lambda x: f"{x:.2f}x"),
            ]
        )
        if w == 4:
            median = statistics.median(speedup)
            notes.append(
                f"4 workers vs 1: median {median:.2f}x in tuning time"
                + (" (the target is 3x: **below it**; docs/performance.md says why)" if median < 3 else " (target 3x met)")
            )
    overhead = report.get("overhead", {})
    for w, o in sorted(overhead.items()):
        notes.append(
            f"driver cost per committed trial, zero-cost evaluation, workers={w}: median {o['median_ms']:.2f} ms, p90 {o['p90_ms']:.2f} ms"
        )
    raw = [{k: v for k, v in r.items() if not isinstance(v, list | dict)} for r in speed]
    return {
        "part": "speculation",
        "command": relative(command),
        "sections": [
            {
                "title": f"Sequential vs speculative ({cost} s per evaluation, random spaces of 20 to 40 ops, conservative)",
                "columns": [
                    "workers",
                    "runs",
                    "committed trials",
                    "wasted evaluations",
                    "tuning time (after start-up)",
                    "evaluator start-up",
                    "ideal (trials x cost / workers)",
                    "tuning / ideal",
                    "speedup over 1 worker",
                ],
                "rows": rows,
                "notes": notes
                + [
                    "Every parallel run committed exactly the trials of workers=0 (the script checks). "
                    "Medians, min – max over spaces and repeats."
                ],
            }
        ],
        "raw": raw,
    }


# --- helpers' parts ----------------------------------------------------------------------------------------


def ensure_ray_tune(out: Path) -> None:
    try:
        import ray.tune  # noqa: F401
    except ImportError:
        run([PY, "-m", "pip", "install", "-q", "-e", f"{ROOT}[bench]"], out / "pip-bench.log")


def script_part(name: str, script: str, args, out: Path, quick: list[str]) -> dict:
    raw_json = args.results_dir / f"{name}-report.json"
    command = [PY, str(HERE / script), "--out", str(raw_json), *(quick if args.quick else [])]
    run(command, out / f"{name}.log")
    report = json.loads(raw_json.read_text())
    report["command"] = relative(command)
    if "sections" not in report:
        report["sections"] = [{k: report[k] for k in ("title", "columns", "rows", "notes") if k in report}]
    return report


# --- output -----------------------------------------------------------------------------------------------


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


def markdown(reports: list[dict], info: dict, command: str, results: Path, elapsed: float) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{command}` on {info['date']}, in one run of {elapsed / 60:.0f} minutes on one machine; every figure "
        "below was taken in that run, and figures are only compared within it. Raw figures: "
        f"`{os.path.relpath(results, ROOT)}/<part>.csv` and `.arrow` (one row per measurement), machine and date in `run.json`.",
        "",
        "| machine | |",
        "| --- | --- |",
        *(f"| {k} | {v} |" for k, v in info["machine"].items()),
        "",
    ]
    for report in reports:
        for section in report["sections"]:
            lines += [f"## {section['title']}", "", f"`{report['command']}`", ""]
            lines.append("| " + " | ".join(section["columns"]) + " |")
            lines.append("| " + " | ".join("---" for _ in section["columns"]) + " |")
            lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in section["rows"]]
            lines.append("")
            lines += [f"- {n}" for n in section.get("notes", [])]
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    parser.add_argument("--quick", action="store_true", help="smaller runs, to check the pipeline (not for publishing)")
    parser.add_argument("--out-dir", default="runs/bench", help="logs and the scripts' JSON")
    parser.add_argument("--results", default="scripts/bench/results", help="the raw figures published with the Markdown")
    parser.add_argument("--markdown", default="BENCHMARKS.md")
    parser.add_argument("--render", action="store_true", help="write the Markdown again from the last run's outputs; run nothing")
    args = parser.parse_args()
    global RENDER_ONLY
    RENDER_ONLY = args.render
    parts = args.parts.split(",")
    if unknown := set(parts) - set(PARTS):
        raise SystemExit(f"--parts: unknown {sorted(unknown)}; choose from {', '.join(PARTS)}")
    out = (ROOT / args.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = args.results_dir = (ROOT / args.results).resolve()
    results.mkdir(parents=True, exist_ok=True)
    if args.render:
        info = json.loads((results / "run.json").read_text())
    else:
        info = {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine("ray", "torch", "torchao", "pyarrow", "numpy"),
        }
    start = time.perf_counter()
    reports = []
    for part in parts:
        print(f"== {part}", flush=True)
        if part == "inc":
            report = inc_part(args, out)
        elif part == "speculation":
            report = speculation_part(args, out)
        elif part == "ray_tune":
            if not args.render:
                ensure_ray_tune(out)
            report = script_part("ray_tune", "ray_tune_compare.py", args, out, ["--repeats", "1"])
        else:
            report = script_part("scaling", "scaling.py", args, out, ["--ops", "10", "100", "--history", "1000", "--repeats", "1"])
        write_raw(report, out, results)
        reports.append(report)
    if args.render:
        elapsed = info["elapsed_s"]
    else:
        elapsed = info["elapsed_s"] = time.perf_counter() - start
        (results / "run.json").write_text(json.dumps(info, indent=1))
    command = "python scripts/bench/run_all.py"
    command += (f" --parts {args.parts}" if parts != list(PARTS) else "") + (" --quick" if args.quick else "")
    text = markdown(reports, info, command, results, elapsed)
    (ROOT / args.markdown).write_text(text)
    print(f"wrote {args.markdown} and {os.path.relpath(results, ROOT)}/ ({elapsed / 60:.1f} min)")


if __name__ == "__main__":
    main()
