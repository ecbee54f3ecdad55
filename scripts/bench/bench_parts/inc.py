"""The inc part of run_all.py: INC 2.6's conservative strategy vs ours (backend.py, INC in .venv-inc), its table and
notes (the wall time, the per-trial cost, what one of our trials costs, the 10x target)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from common import ROOT, ms, quartiles_text, spread_text

from .runner import BENCH, PY, relative, run


def inc_part(args, out: Path) -> dict:
    if not (ROOT / ".venv-inc" / "bin" / "python").exists():
        run(["bash", str(BENCH / "setup_inc.sh")], out / "setup_inc.log")
    raw_json = args.results_dir / "backend.json"
    models = "three-layer,digits-cnn" + ("" if args.quick else ",minilm")
    command = [PY, str(BENCH / "backend.py"), "--skip-memory", "--models", models, "--out", str(raw_json)]
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
    notes += ours_trial_notes(report)
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


def ours_trial_notes(report: dict) -> list[str]:
    """What one of our trials costs, step by step (from backend.py's breakdown; results of runs before it had
    another breakdown and get no such note), and the 10x target against INC."""
    notes = []
    for model, r in report["overhead"].items():
        ours = r["ours"]
        steps = ours["steps_per_trial_median_s"]
        if "lowered_ops" not in steps:
            continue
        split = [
            f"{what} {ms(ours[key]['median'])} (n={ours[key]['n']})"
            for what, key in (("reusing cached ops only", "overhead_cached_per_trial_s"), ("lowering ops", "overhead_lowering_per_trial_s"))
            if ours.get(key)
        ]
        line = (
            f"{model}: our trial costs {ms(ours['overhead_per_trial_s']['median'])} (median) outside the evaluation: "
            + (
                f"the model's deep copy with the lowered ops swapped in {ms(steps['model_deepcopy'])}, "  # a copy per trial (older runs)
                if "model_deepcopy" in steps
                else "the lowered ops swapped into the model in place (no copy of it), "
            )
            + f"the lowered ops {ms(steps['lowered_ops'])} "
            f"(each (op, precision) is lowered once per process, by the first trial that asks for it, and cached: "
            f"{ours['ops_lowered_per_run']['median']:.0f} lowered per run), the rest of the build {ms(steps['build_other'])}, "
            f"strategy and bookkeeping {ms(steps['rest'])}; trials {', '.join(split)}. Calibration runs once per run, in the "
            f"driver ({ms(ours['calibrate_per_run_s']['median'])})."
        )
        if "ratio" in r:
            verdict = "met" if r["ratio"] >= 10 else "**missed**"
            line += f" Target, ours at least 10x below INC per trial: {verdict} ({r['ratio']:.0f}x)."
        notes.append(line)
    return notes
