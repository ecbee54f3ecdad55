"""The parallel part of run_all.py: tune() on 1, 2, 4 and 8 Ray evaluators with and without the prior (parallel.py),
beside the driver on a virtual clock (simulate_speculation.py): their tables and notes (the targets at 4 evaluators)."""

from __future__ import annotations

import json
from pathlib import Path

from . import runner
from .runner import BENCH, PY, relative, run


def _x(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def parallel_part(args, out: Path) -> dict | None:
    measured, simulated = args.results_dir / "parallel.json", args.results_dir / "parallel-simulated.json"
    commands = [
        [PY, str(BENCH / "parallel.py"), "--out", str(measured), *(["--repeats", "1", "--workers", "1", "4"] if args.quick else [])],
        [
            PY,
            str(BENCH / "simulate_speculation.py"),
            "--prior",
            "none",
            "perfect",
            "noisy",
            "--out",
            str(simulated),
            *(["--spaces", "3"] if args.quick else []),
        ],
    ]
    if runner.RENDER_ONLY and not measured.exists():
        return None
    run(commands[0], out / "parallel.log")
    run(commands[1], out / "parallel-simulated.log")
    report, sim = json.loads(measured.read_text()), json.loads(simulated.read_text())
    rows, raw = [], []
    for r in report["summary"]["rows"]:
        rows.append(
            [
                r["workload"],
                "on" if r["prior"] else "off",
                str(r["workers"]),
                f"{r['wall_s']:.1f} s ({_x(r['wall_speedup'])})",
                f"{r['span_s']:.1f} s ({_x(r['span_speedup'])})",
                f"{r['first_trial_s']:.1f} s (baseline {r['baseline_s']:.1f} s)",
                f"{r['startup_s']:.1f} s",
                f"{r['trials']} / {r['wasted']:g}",
                "-" if r["auc"] is None else f"{r['auc']:.2f}",
            ]
        )
        raw.append({**{k: v for k, v in r.items() if not isinstance(v, list)}, "prior": "on" if r["prior"] else "off"})
    sim_rows = []
    for result in sim["results"]:
        for w, v in result["workers"].items():
            sim_rows.append([result["prior"], w, f"{v['rate']:.2f}", f"{v['ceiling']:.2f}", f"{v['waste_per_trial']:.2f}"])
            raw.append({"workload": "simulated", "prior": result["prior"], "workers": int(w), **v})
    notes = parallel_notes(report["summary"]["rows"])
    return {
        "part": "parallel",
        "command": "; ".join(relative(c) for c in commands),
        "sections": [
            {
                "title": "Parallel model tuning: tune() on Ray evaluators, with and without the sensitivity prior",
                "columns": [
                    "workload",
                    "prior",
                    "evaluators",
                    "wall time of tune (speedup over 1)",
                    "tuning span (speedup over 1)",
                    "call to first trial",
                    "evaluator start-up (median)",
                    "trials / wasted evaluations",
                    "AUC of the prior",
                ],
                "rows": rows,
                "notes": notes,
            },
            {
                "title": "The same driver on a virtual clock: committed trials per evaluation time, with a prior",
                "columns": ["prior", "workers", "committed trials per evaluation time", "ceiling", "wasted per trial"],
                "rows": sim_rows,
                "notes": [
                    f"{sim['spaces']} random spaces of {sim['ops'][0]} to {sim['ops'][1]} ops, additive synthetic losses; the ceiling is "
                    "the number of workers with a perfect prior (perfect foresight), else the op-wise chain's 1 + p + ... + p^(W-1); "
                    f"noisy: each true loss times a log-normal factor of sigma {sim['noise']}. Every run committed what workers=0 commits."
                ],
            },
        ],
        "raw": raw,
    }


def parallel_notes(rows: list[dict]) -> list[str]:
    notes = [
        "Ray started once before the runs, sized to the machine; each evaluation padded to a fixed time (outliers 0.5 s, "
        "MiniLM 1 s). Wall time: the tune() call, calibration, evaluator start-up and the baseline included. Tuning span: "
        "from the first trial's start to the end of the last committed evaluation. Medians over the repeats. Every run "
        "committed exactly what workers=0 commits (the script checks). AUC: how well the prior's summed sensitivity of each "
        "committed trial's config ranks the failing trials above the passing ones (1.0: perfectly)."
    ]
    get = {(r["workload"], r["prior"], r["workers"]): r for r in rows}
    four, eight = get.get(("outliers", True, 4)), get.get(("outliers", True, 8))
    if four:
        span_ok, wall_ok = four["span_speedup"] >= 3.2, four["wall_speedup"] >= 2.0
        first_ok = four["first_trial_s"] <= four["baseline_s"] + four["startup_s"]
        notes.append(
            f"Targets at 4 evaluators against 1, 0.5 s evaluations, with the prior: tuning span at least 3.2x: "
            f"{four['span_speedup']:.2f}x, {'met' if span_ok else '**missed**'}; wall time at least 2.0x: {four['wall_speedup']:.2f}x, "
            f"{'met' if wall_ok else '**missed**'}; call to the first trial at most the baseline plus one evaluator's start-up: "
            f"{four['first_trial_s']:.1f} s against {four['baseline_s'] + four['startup_s']:.1f} s, {'met' if first_ok else '**missed**'}."
        )
    if four and eight:
        notes.append(
            f"8 evaluators against 4 (with the prior): span {eight['span_s']:.1f} s against {four['span_s']:.1f} s, wall "
            f"{eight['wall_s']:.1f} s against {four['wall_s']:.1f} s: on 2 cores 8 evaluators start 2 at a time "
            "(CpuShareWarning), so the extra ones join late and pay only while evaluations wait on the clock."
        )
    return notes
