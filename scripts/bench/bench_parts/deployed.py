"""The deployed part of run_all.py: tuned models as deployed (deployed.py), eager and compiled against the FP32 model
compiled the same way: its table and notes (the targets, the deployed check's cost, the timing process's share of its
cores); the latency and timing texts the nncf part shares."""

from __future__ import annotations

import json
from pathlib import Path

from common import ms

from . import runner
from .runner import BENCH, PY, relative, run


def ops_text(ops: dict) -> str:
    """ "Linear: 36 int8; Embedding: 3 int8; LayerNorm: 13 fp32" from op type -> precision -> count."""
    return "; ".join(f"{t}: " + ", ".join(f"{n} {p}" for p, n in sorted(c.items(), key=lambda x: -x[1])) for t, c in ops.items())


def latency_text(lat: dict, tuned: str = "tuned_ms") -> str:
    """ "70.1 → 26.7 ms (**2.62x**; rounds 2.5x – 2.7x)": medians, their ratio, and the quartiles of the ratio of the
    two calls of each round of the alternation (how much the machine's load moved the comparison)."""
    text = f"{lat['fp32_ms']:.1f} → {lat[tuned]:.1f} ms (**{lat['speedup']:.2f}x**"
    if per_round := lat.get("speedup_per_round"):
        text += f"; rounds {per_round['q1']:.2f}x – {per_round['q3']:.2f}x"
    return text + ")"


def deployed_rows(report: dict) -> tuple[list[list[str]], list[dict], list[str]]:
    rows, raw, notes = [], [], []
    for name, w in report["workloads"].items():
        target = w["target_compiled_speedup"]
        for v in w["variants"]:
            tuning = f"{ms(v['wall_s'])}, {v['evaluations']} evaluations" if v["tuned"] else "none (every op bf16)"
            rows.append(
                [
                    name,
                    ",".join(v["precisions"]) if v["tuned"] else "bf16 (all)",
                    tuning,
                    ops_text(v["ops"]),
                    f"{v['accuracy_eager']:.4f}",
                    f"{v['accuracy_compiled']:.4f}" + ("" if v["meets_goal_compiled"] else " (**below**)"),
                    f"{w['baseline']:.4f} / {w['goal']:.4f}",
                    latency_text(v["eager"]),
                    latency_text(v["compiled"]),
                ]
            )
            row = {
                "workload": name,
                "variant": v["variant"],
                "tuned": v["tuned"],
                "wall_s": v.get("wall_s"),
                "evaluations": v.get("evaluations"),
                "accuracy_eager": v["accuracy_eager"],
                "accuracy_compiled": v["accuracy_compiled"],
                "fp32_accuracy": w["baseline"],
                "goal": w["goal"],
                "fp32_eager_ms": v["eager"]["fp32_ms"],
                "tuned_eager_ms": v["eager"]["tuned_ms"],
                "fp32_compiled_ms": v["compiled"]["fp32_ms"],
                "tuned_compiled_ms": v["compiled"]["tuned_ms"],
                "calls": min(v["eager"]["calls"], v["compiled"]["calls"]),
            }
            if "compile_and_first_eval_s" in v:  # figures taken before the deployed check existed
                row["compile_and_first_eval_s"] = v["compile_and_first_eval_s"]
            else:
                row.update(compile_and_check_s=v.get("compile_and_check_s"), check_s=v.get("check_s"))
                if v.get("check_failure"):
                    row["check_failure"] = v["check_failure"]
                    notes.append(
                        f"{name} at {v['variant']}: the deployed check refused the compiled model ({v['check_failure']}); "
                        "its figures are those of the model compiled without the check, as tune reports it (res.deployed)."
                    )
            raw.append(row)
        tuned = [v for v in w["variants"] if v["tuned"]]
        same: dict[str, list[dict]] = {}
        for v in tuned:
            if "config" in v:
                same.setdefault(json.dumps(v["config"], sort_keys=True), []).append(v)
        for group in (g for g in same.values() if len(g) > 1):
            speedups = ", ".join(f"{v['compiled']['speedup']:.2f}x" for v in group)
            notes.append(
                f"{name}: precisions {' and '.join(','.join(v['precisions']) for v in group)} gave the same model (every op at the "
                f"same precision): the spread of their compiled speedups ({speedups}) is the measurement's own."
            )
        for v in tuned:
            fast = v["compiled"]["speedup"] >= target
            good = v["meets_goal_compiled"]
            verdict = "met" if fast and good else "**missed**"
            why = []
            if not fast:
                why.append(f"compiled speedup {v['compiled']['speedup']:.2f}x, below {target}x")
            if not good:
                why.append(f"compiled accuracy {v['accuracy_compiled']:.4f}, below the goal {w['goal']:.4f}")
            notes.append(
                f"{name} at {','.join(v['precisions'])}: target (compiled tuned at least {target}x faster than compiled FP32, "
                f"compiled accuracy at or above the goal) {verdict}" + (f": {'; '.join(why)}." if why else ".")
            )
        load = f" Load average (1, 5, 15 min) after its timings: {w['load_average_after']}." if "load_average_after" in w else ""
        if "timing_attempts" in w:
            load += " " + timing_text(w["timing_attempts"])
        notes.append(f"{name}: {w['title']}; latency on {w['latency_on']}.{load}")
    return rows, raw, notes


def deployed_command(args, raw_json: Path, extra: list[str]) -> list[str]:
    command = [PY, str(BENCH / "deployed.py"), "--out", str(raw_json), *extra]
    return command + (["--minilm-precisions", "int8", "--min-calls", "5", "--min-seconds", "0.5"] if args.quick else [])


def deployed_part(args, out: Path) -> dict | None:
    raw_json = args.results_dir / "deployed.json"
    command = deployed_command(args, raw_json, [])
    if runner.RENDER_ONLY and not raw_json.exists():
        return None
    run(command, out / "deployed.log")
    report = json.loads(raw_json.read_text())
    if not runner.RENDER_ONLY:  # kept with the figures, so that --render shows the options they were taken with
        report["run_all_command"] = relative(command)
        raw_json.write_text(json.dumps(report, indent=1))
    rows, raw, notes = deployed_rows(report)
    checked = check_notes(raw)
    if fix := report.get("inplace_fix"):
        checked.append(
            "The fix of inductor's in-place int8 residual add (docs/deployment.md), on the feed-forward block there at int8, "
            f"compiled: {fix['fixed_ms']:.3f} ms with it, {fix['unfixed_ms']:.3f} ms without it (wrong from its second call), "
            f"medians of {fix['calls']} alternated calls ({fix['fixed_ms'] / fix['unfixed_ms']:.3f}x)."
        )
    return {
        "part": "deployed",
        "command": report.get("run_all_command", relative(command)),
        "sections": [
            {
                "title": "Tuned models as deployed: eager and compiled, against the FP32 model compiled the same way",
                "columns": [
                    "model",
                    "precisions",
                    "tuning (wall time, evaluations)",
                    "ops at each precision",
                    "accuracy, eager tuned",
                    "accuracy, compiled tuned",
                    "FP32 / goal (1% relative)",
                    "eager: FP32 → tuned (median)",
                    "compiled: FP32 → tuned (median)",
                ],
                "rows": rows,
                "notes": notes
                + [
                    f"tune(..., workers=0), conservative, {report['threads']} torch threads (all cores); the tuning wall time is "
                    "the tune() call alone. Compiled: raytune_inc.compile_model / res.compile() (torch.compile, inductor "
                    "freezing). Latency: the FP32 model and every model of the workload's rows timed in one alternation, "
                    "call by call, the eager ones together and the compiled ones together (medians of "
                    + ", ".join(sorted({str(r["calls"]) for r in raw}, key=int))
                    + " calls each)."
                    + (" The compiled accuracy is taken after those timing calls, on the same compiled model." if checked else ""),
                    *checked,
                    "Every op bf16 is not tuned (each op whose precisions include bf16 is cast), shown for information: "
                    + cpu_note(report),
                ],
            }
        ],
        "raw": raw,
    }


def check_notes(raw: list[dict]) -> list[str]:
    """What the deployed check cost (figures taken since the check exists)."""
    raw = [r for r in raw if not r.get("check_failure")]
    if not raw or any(r.get("check_s") is None for r in raw):
        return []
    return [
        "Each compiled model is checked on its first call with new inputs (raytune_inc.pytorch.deployment: three "
        "compiled calls and one eager call on copies of the inputs; inputs unchanged, calls equal, outputs within "
        "0.1 of the eager model's): first call, compilation and check included, "
        + ", ".join(f"{r['workload']} {r['variant']} {r['compile_and_check_s']:.1f} s" for r in raw)
        + "; the check alone "
        + ", ".join(f"{r['workload']} {r['variant']} {1e3 * r['check_s']:.0f} ms" for r in raw)
        + "."
    ]


def timing_text(attempts: dict[str, list[dict]]) -> str:
    """What share of its cores the timing process had in each attempt of each alternation (common.py's steady_times)."""
    parts = [
        f"{mode}: " + ", ".join(f"{a['core_share']:.0%}" for a in tried) + f" (kept {max(a['core_share'] for a in tried):.0%})"
        for mode, tried in attempts.items()
    ]
    return "Share of its cores the timing process had, attempt by attempt: " + "; ".join(parts) + "."


def cpu_note(report: dict) -> str:
    features = report["machine"].get("cpu features", "unknown")
    amx = report.get("amx_usable")
    usable = "" if amx is None else f"; torch {'can' if amx else 'cannot'} use AMX here (torch._C._cpu._init_amx())"
    return f"this CPU's low-precision features: {features}{usable}."
