"""Every benchmark against the peers, in one run, on one machine: writes BENCHMARKS.md and the raw figures.

    .venv/bin/python scripts/bench/run_all.py [--quick] [--parts inc,speculation,ray_tune,scaling,deployed,nncf,parallel]
        [--out-dir runs/bench] [--markdown BENCHMARKS.md]

Parts, each a script of this folder that can also run alone (their commands are in BENCHMARKS.md):
- inc: Intel Neural Compressor 2.6's conservative strategy vs ours (workers=0, one process each, the same
  models, eval functions, calibration data and criterion), through backend.py; INC runs in
  `.venv-inc`, made by setup_inc.sh (run here if it is missing).
- speculation: sequential (workers=0) vs speculative at 1, 2, 4, 8 workers, through driver.py.
- ray_tune: Ray Tune running the same configs as trials vs our driver (ray_tune_compare.py;
  needs the `bench` extra, `pip install -e ".[bench]"`, installed here if missing).
- scaling: time per trial and memory against the number of ops and the history length (scaling.py).
- deployed: tuned models as deployed (MiniLM at int8, int8_dynamic+int8 and bf16+int8; the ResNet-style network at
  int8; every op bf16 for information): accuracy eager and compiled, latency against the FP32 model compiled the
  same way (deployed.py).
- nncf: OpenVINO NNCF's quantize_with_accuracy_control on MiniLM (nncf_minilm.py in `.venv-nncf`, made by
  setup_nncf.sh if missing) beside ours on the same model, metric, calibration and goal (the deployed part's
  MiniLM figures when it runs too, else deployed.py on MiniLM alone).
- parallel: tune() on 1, 2, 4 and 8 Ray evaluators, with and without the sensitivity prior, on a residual MLP with
  7 int8-sensitive layers (0.5 s evaluations) and on MiniLM (1 s evaluations) (parallel.py); beside it, the same
  driver on a virtual clock with no prior, a perfect one and a noisy one (simulate_speculation.py).

The raw figures of each part, one row per measurement, go to `<results>/<part>.csv` and
`<results>/<part>.arrow` (Arrow IPC file), with each script's own JSON and the machine and date
(`run.json`); they are published with BENCHMARKS.md, and `--render` writes it again from them (a part whose
results are not there renders nothing). Logs
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
PARTS = ("inc", "speculation", "ray_tune", "scaling", "deployed", "nncf", "parallel")  # the order they run in

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
        if "model_deepcopy" not in steps:
            continue
        split = [
            f"{what} {ms(ours[key]['median'])} (n={ours[key]['n']})"
            for what, key in (("reusing cached ops only", "overhead_cached_per_trial_s"), ("lowering ops", "overhead_lowering_per_trial_s"))
            if ours.get(key)
        ]
        line = (
            f"{model}: our trial costs {ms(ours['overhead_per_trial_s']['median'])} (median) outside the evaluation: the model's "
            f"deep copy with the lowered ops swapped in {ms(steps['model_deepcopy'])}, the lowered ops {ms(steps['lowered_ops'])} "
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


# --- deployed ----------------------------------------------------------------------------------------------


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
    command = [PY, str(HERE / "deployed.py"), "--out", str(raw_json), *extra]
    return command + (["--minilm-precisions", "int8", "--min-calls", "5", "--min-seconds", "0.5"] if args.quick else [])


def deployed_part(args, out: Path) -> dict | None:
    raw_json = args.results_dir / "deployed.json"
    command = deployed_command(args, raw_json, [])
    if RENDER_ONLY and not raw_json.exists():
        return None
    run(command, out / "deployed.log")
    report = json.loads(raw_json.read_text())
    if not RENDER_ONLY:  # kept with the figures, so that --render shows the options they were taken with
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
    if any(r.get("check_s") is None for r in raw):
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


# --- nncf --------------------------------------------------------------------------------------------------


def nncf_part(args, out: Path, deployed: dict | None) -> dict | None:
    """NNCF's side runs in .venv-nncf; ours comes from this run's deployed part, or from deployed.py on MiniLM."""
    combined = args.results_dir / "nncf-report.json"
    nncf_json = args.results_dir / "nncf.json"
    command = [str(ROOT / ".venv-nncf" / "bin" / "python"), str(HERE / "nncf_minilm.py"), "--out", str(nncf_json)]
    command += ["--presets", "transformer", "--min-calls", "5", "--min-seconds", "0.5"] if args.quick else []
    ours_json = args.results_dir / "nncf-ours.json"
    ours_command = deployed_command(args, ours_json, ["--workloads", "minilm", "--no-bf16"])
    if RENDER_ONLY:
        if not combined.exists():
            return None
        data = json.loads(combined.read_text())
    else:
        if not (ROOT / ".venv-nncf" / "bin" / "python").exists():
            run(["bash", str(HERE / "setup_nncf.sh")], out / "setup_nncf.log")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        run(command, out / "nncf.log", env=env)
        if deployed is not None and "minilm" in deployed["workloads"]:
            ours, ours_from = deployed["workloads"]["minilm"], "the deployed part of this run"
        else:
            run(ours_command, out / "nncf-ours.log")
            ours, ours_from = json.loads(ours_json.read_text())["workloads"]["minilm"], f"`{relative(ours_command)}`"
        data = {"nncf": json.loads(nncf_json.read_text()), "ours": ours, "ours_from": ours_from, "command": relative(command)}
        combined.write_text(json.dumps(data, indent=1))
    rows, raw, notes = nncf_rows(data)
    return {
        "part": "nncf",
        "command": data.get("command", relative(command)) + f"; ours: {data['ours_from']}",
        "sections": [
            {
                "title": "OpenVINO NNCF quantize_with_accuracy_control vs raytune-inc on all-MiniLM-L6-v2 (1% relative goal)",
                "columns": [
                    "tool, configuration",
                    "wall time to the tuned model",
                    "evaluations",
                    "Linear / MatMul at int8",
                    "metric (FP32 1.0, goal 0.99)",
                    "runtime",
                    "FP32 → tuned, 48 sentences (median)",
                ],
                "rows": rows,
                "notes": notes,
            }
        ],
        "raw": raw,
    }


def nncf_rows(data: dict) -> tuple[list[list[str]], list[dict], list[str]]:
    nncf, ours = data["nncf"], data["ours"]
    rows, raw, notes = [], [], []
    names = {"transformer": "NNCF, ModelType.TRANSFORMER, SmoothQuant off", "default": "NNCF, default preset"}
    runtimes = {
        "f32": "OpenVINO CPU, inference precision f32",
        "default": "OpenVINO CPU, default inference precision ({})",
    }
    tuned_ms = {}
    for preset, r in nncf["presets"].items():
        for hint, lat in r["latency"].items():
            runtime = runtimes[hint].format(lat["int8_compiled"]["inference_precision"])
            metric = r["metric"] if hint == "f32" else r["metric_default_precision"]
            rows.append(
                [
                    names[preset],
                    ms(r["wall_s"]),
                    f"{r['evaluations']} (+{r['per_sentence_calls']} per-sentence calls)",
                    f"{r['int8_matmul']}/{r['matmul']} MatMul",
                    f"{metric:.4f}",
                    runtime,
                    latency_text(lat, "int8_ms"),
                ]
            )
            tuned_ms[f"{names[preset]}, {runtime}"] = lat["int8_ms"]
            raw.append(
                {
                    "tool": "NNCF",
                    "configuration": preset,
                    "runtime": f"openvino:{hint}",
                    "wall_s": r["wall_s"],
                    "evaluations": r["evaluations"],
                    "int8_ops": r["int8_matmul"],
                    "ops": r["matmul"],
                    "metric": metric,
                    "fp32_ms": lat["fp32_ms"],
                    "tuned_ms": lat["int8_ms"],
                    "calls": lat["calls"],
                }
            )
    for v in ours["variants"]:
        if not v["tuned"]:
            continue
        linear = v["ops"].get("Linear", {})
        int8 = linear.get("int8", 0) + linear.get("int8_dynamic", 0)
        lat = v["compiled"]
        label = f"raytune-inc, precisions {','.join(v['precisions'])}"
        runtime = "torch.compile (inductor, freezing), 2.13 CPU"
        rows.append(
            [
                label,
                ms(v["wall_s"]),
                str(v["evaluations"]),
                f"{int8}/{sum(linear.values())} Linear (" + ", ".join(f"{n} {p}" for p, n in linear.items()) + ")",
                f"{v['accuracy_eager']:.4f} eager, {v['accuracy_compiled']:.4f} compiled",
                runtime,
                latency_text(lat),
            ]
        )
        tuned_ms[f"{label}, {runtime}"] = lat["tuned_ms"]
        raw.append(
            {
                "tool": "raytune-inc",
                "configuration": ",".join(v["precisions"]),
                "runtime": "torch.compile",
                "wall_s": v["wall_s"],
                "evaluations": v["evaluations"],
                "int8_ops": int8,
                "ops": sum(linear.values()),
                "metric": v["accuracy_compiled"],
                "fp32_ms": lat["fp32_ms"],
                "tuned_ms": lat["tuned_ms"],
                "calls": lat["calls"],
            }
        )
    fp32_ms = {
        "torch, compiled": statistics.median(v["compiled"]["fp32_ms"] for v in ours["variants"]),
        **{
            f"OpenVINO, {hint if hint == 'f32' else 'default precision'}": statistics.median(
                r["latency"][hint]["fp32_ms"] for r in nncf["presets"].values()
            )
            for hint in ("f32", "default")
            if nncf["presets"]
        },
    }
    notes.append("FP32 model on the 48 sentences (median): " + ", ".join(f"{k} {v:.1f} ms" for k, v in fp32_ms.items()) + ".")
    if tuned_ms:
        best = min(tuned_ms, key=tuned_ms.get)
        ours_best = min((k for k in tuned_ms if k.startswith("raytune-inc")), key=tuned_ms.get, default=None)
        line = f"Fastest tuned model: {best}, {tuned_ms[best]:.1f} ms."
        if ours_best and ours_best != best:
            line += (
                f" **Ours is slower as deployed**: our fastest ({ours_best}) takes {tuned_ms[ours_best]:.1f} ms, "
                f"{tuned_ms[ours_best] / tuned_ms[best]:.2f}x that."
            )
        notes.append(line)
    notes += [
        f"NNCF: the model converted with openvino.convert_model (inputs {', '.join(f'{k} {v}' for k, v in nncf['inputs'].items())}; "
        f"{ms(nncf['convert_s'])}, not in the wall time), FP32 IR metric {nncf['fp32']['metric']:.4f} (f32), "
        f"{nncf['fp32']['metric_default_precision']:.4f} (default precision). Its wall time is the quantize_with_accuracy_control "
        "call; an evaluation is a validation on all 48 sentences (NNCF's own runs use inference precision f32); "
        "per-sentence calls are NNCF's mode detection and op ranking. Int8 MatMul: both inputs quantized.",
        f"Ours: tune(..., precisions, workers=0) on the torch model (from {data['ours_from']}); the wall time is the tune() call "
        "(op discovery, one calibration, the baseline and the trials, eager). Latency: the tuned model compiled against the "
        "FP32 model compiled the same way. Same sentences, metric, 16 calibration sentences (2 batches of 8) and goal on both sides.",
        f"OpenVINO {nncf['machine'].get('openvino', '?')}, NNCF {nncf['machine'].get('nncf', '?')}: the FP32 IR and the int8 IRs timed "
        "in one alternation, inference precision by inference precision (PERFORMANCE_HINT LATENCY, "
        + ", ".join(sorted({str(r["latency"][h]["fp32_compiled"]["threads"]) for r in nncf["presets"].values() for h in r["latency"]}))
        + " threads)"
        + (f"; load average (1, 5, 15 min) after its timings: {nncf['load_average_after']}." if "load_average_after" in nncf else ".")
        + (" " + timing_text(nncf["timing_attempts"]) if "timing_attempts" in nncf else ""),
    ]
    return rows, raw, notes


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


# --- parallel ------------------------------------------------------------------------------------------------


def _x(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def parallel_part(args, out: Path) -> dict | None:
    measured, simulated = args.results_dir / "parallel.json", args.results_dir / "parallel-simulated.json"
    commands = [
        [PY, str(HERE / "parallel.py"), "--out", str(measured), *(["--repeats", "1", "--workers", "1", "4"] if args.quick else [])],
        [
            PY,
            str(HERE / "simulate_speculation.py"),
            "--prior",
            "none",
            "perfect",
            "noisy",
            "--out",
            str(simulated),
            *(["--spaces", "3"] if args.quick else []),
        ],
    ]
    if RENDER_ONLY and not measured.exists():
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
    deployed = None  # the deployed part's figures, for the nncf part's side of ours
    for part in sorted(parts, key=PARTS.index):
        print(f"== {part}", flush=True)
        if part == "inc":
            report = inc_part(args, out)
        elif part == "speculation":
            report = speculation_part(args, out)
        elif part == "deployed":
            report = deployed_part(args, out)
            if report is not None and not args.render:
                deployed = json.loads((args.results_dir / "deployed.json").read_text())
        elif part == "nncf":
            report = nncf_part(args, out, deployed)
        elif part == "parallel":
            report = parallel_part(args, out)
        elif part == "ray_tune":
            if not args.render:
                ensure_ray_tune(out)
            report = script_part("ray_tune", "ray_tune_compare.py", args, out, ["--repeats", "1"])
        else:
            report = script_part("scaling", "scaling.py", args, out, ["--ops", "10", "100", "--history", "1000", "--repeats", "1"])
        if report is None:  # rendering, and this part's results are not there
            continue
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
