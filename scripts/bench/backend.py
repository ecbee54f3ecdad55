"""Benchmark of the PyTorch backend: per-trial cost outside the evaluation, beside INC 2.6; evaluator memory.

    .venv/bin/python scripts/bench/backend.py [--rounds 2] [--repeats 5] [--threads 1]
        [--models three-layer,digits-cnn,minilm] [--encoder-repeats 1] [--encoder-max-trials 100]
        [--inc-python .venv-inc/bin/python] [--skip-inc] [--skip-memory] [--out runs/bench/backend.json]

Part 1, per-trial overhead. On each model (inc_example.py's three-layer model, the digits CNN of digits_example.py
and the MiniLM sentence encoder of encoder_example.py, all in this folder, with their evaluation and calibration
data), `tune(model, eval_fn, calib_inputs, strategy="conservative", precisions=("int8",), workers=0)` runs
`--repeats` times, and INC 2.6's conservative strategy runs `--repeats` fits through inc_conservative.py in
`.venv-inc` (a subprocess), alternately (ours, INC, ours, INC, ... `--rounds` times each). Both time a trial the
same way: the eval function is wrapped, and a trial's overhead is the time from the end of one evaluation to the
start of the next. For ours that is the trial's build (the lowered ops swapped into the model in place, no copy
of it; each (op, precision) is lowered once per process, by the first trial that asks for it, and cached
within the lowered-module budget), the strategy and the bookkeeping; calibration runs once per run, in the
driver, before the baseline evaluation.
Figures are medians and quartiles over all trials of all runs; torch uses `--threads` intra-op threads on both
sides. The encoder's runs are long (an evaluation takes about 0.7 s): it gets `--encoder-repeats` runs per block
instead, and INC at most `--encoder-max-trials` trials per fit. INC's figure is also given without its two
gc.collect calls per trial, whose cost grows with the number of live objects in the process, not with the model.

Part 2, evaluator memory (backend_memory.py). `tune(..., workers=2)` on a local Ray instance, with an eval function
that appends, per call, the evaluator process's peak RSS (getrusage ru_maxrss) and current RSS to a file per PID. Run
on the digits CNN and on a wide MLP (6 x Linear(1024, 1024) + a head, 24 MiB) that makes a per-trial copy visible if one
were kept. The evaluation there is minus the mean |logit difference| from the FP32 model with a zero tolerance:
every lowered config fails, so conservative tries every op at every precision (the most trials a space allows).
Reported per evaluator: RSS once it holds the evaluation (model included; torchao imported), after its first and
last evaluation, peak RSS, the RSS growth per evaluation over the second half of its evaluations, and the copies
of the model alive at the end of each evaluation (live Linear/Conv modules over the model's count: 1 = the held
model, plus the share of its ops whose lowered modules are cached; a copy per trial would add 1).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import statistics
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import torch
from backend_memory import memory_part, print_memory_table  # part 2; this folder is first on sys.path
from common import PHASES, ROOT, machine, ms, quartiles_text, spread, timed, timed_phase, write_json

from raytune_inc import tune
from raytune_inc.model import tuning
from raytune_inc.pytorch import lowering

HERE = Path(__file__).resolve().parent

# name -> (module in scripts/bench, --models key)
MODELS = {
    "three-layer": ("inc_example", "three-layer"),
    "digits CNN": ("digits_example", "digits-cnn"),
    "MiniLM encoder": ("encoder_example", "minilm"),
}
ENCODER = "MiniLM encoder"
OPS_LOWERED = "ops_lowered"  # a count kept beside the phases' seconds

# --- part 1: per-trial overhead --------------------------------------------------------------------------


def instrument_ours() -> None:
    """Time the backend's steps: calibration (once per run), a trial's build (`lowering.replacements`: the modules
    swapped into the model in place for the trial) and, within it, the lowered ops themselves (`lowered_op`: a cache
    look-up, or on the first use of an (op, precision) its copy and lowering); count the ops lowered."""
    tuning.calibrate = timed_phase(tuning.calibrate, "calibrate")  # the model level's one calibration of the run
    lowering.replacements = timed_phase(lowering.replacements, "build")  # a trial's build, called by `applied`
    lowering.lowered_op = timed_phase(lowering.lowered_op, "lowered_ops")
    lower = lowering.lower
    PHASES[OPS_LOWERED] = 0

    def counted(*args, **kwargs):
        PHASES[OPS_LOWERED] += 1
        return lower(*args, **kwargs)

    lowering.lower = counted


def ours_once(mod) -> dict:
    model = mod.model()
    calib = [x for x, _ in mod.calib_data()]  # the same tensors INC calibrates on, without the labels
    calls: list = []
    calibrated_before = PHASES["calibrate"]  # the phases add up over the process
    t0 = time.perf_counter()
    res = tune(model, timed(mod.evaluate, calls), calib, strategy="conservative", precisions=("int8",), workers=0)
    t1 = time.perf_counter()
    trials = []
    for (_, prev_end, _, prev_ph), (s, e, acc, ph) in zip(calls, calls[1:], strict=False):
        steps = {k: ph[k] - prev_ph[k] for k in ph}
        lowered = int(steps.pop(OPS_LOWERED))
        build = steps.pop("build")
        steps["build_other"] = build - steps["lowered_ops"]
        steps["rest"] = (s - prev_end) - build - steps["calibrate"]
        trial = {"overhead_s": s - prev_end, "build_s": build, "eval_s": e - s, "accuracy": acc, "ops_lowered": lowered}
        trials.append({**trial, "steps_s": steps})
    config = res.config or {}
    return {
        "total_s": t1 - t0,
        "before_baseline_s": calls[0][0] - t0,  # op discovery, calibration (once), the baseline's build
        "calibrate_s": calls[0][3]["calibrate"] - calibrated_before,
        "baseline_accuracy": calls[0][2],
        "trials": trials,
        "result": {
            "accuracy": float(mod.evaluate(res.model)),
            "int8_ops": sum(p == "int8" for p in config.values()),
            "int8_op_names": [n for n, p in config.items() if p == "int8"],
        },
    }


def ours_block(mod, repeats: int) -> list[dict]:
    runs = [ours_once(mod) for _ in range(repeats)]
    o = spread([t["overhead_s"] for r in runs for t in r["trials"]])
    print(f"    ours  {mod.__name__:15s} overhead per trial median {o['median'] * 1e3:7.2f} ms (n={o['n']})", flush=True)
    return runs


def inc_block(module: str, args, tmp: str, tag: str, repeats: int, max_trials: int = 100) -> dict:
    out = os.path.join(tmp, f"inc-{module}-{tag}.json")
    # .venv-inc has no raytune-inc installed: --path puts the repository on its sys.path (digits_example imports the package)
    cmd = [args.inc_python, str(HERE / "inc_conservative.py"), "--path", str(ROOT)]
    cmd += ["--model", f"{module}:model", "--eval", f"{module}:evaluate", "--calib", f"{module}:calib_data"]
    cmd += ["--repeats", str(repeats), "--max-trials", str(max_trials), "--threads", str(args.threads), "--out", out]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"INC harness failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    with open(out) as f:
        report = json.load(f)
    o = report["summary"]["overhead_per_trial_s"]
    print(f"    INC   {module:15s} overhead per trial median {o['median'] * 1e3:7.2f} ms (n={o['n']})", flush=True)
    return report


def summarize_ours(runs: list[dict]) -> dict:
    trials = [t for r in runs for t in r["trials"]]
    return {
        "overhead_per_trial_s": spread([t["overhead_s"] for t in trials]),
        "build_per_trial_s": spread([t["build_s"] for t in trials]),
        "eval_per_trial_s": spread([t["eval_s"] for t in trials]),
        "steps_per_trial_median_s": {k: statistics.median(t["steps_s"][k] for t in trials) for k in trials[0]["steps_s"]},
        # trials that only reused lowered ops (cached ops swapped in) and those that lowered some first
        "overhead_cached_per_trial_s": spread(cached) if (cached := [t["overhead_s"] for t in trials if not t["ops_lowered"]]) else None,
        "overhead_lowering_per_trial_s": spread(lowering) if (lowering := [t["overhead_s"] for t in trials if t["ops_lowered"]]) else None,
        "ops_lowered_per_run": spread([sum(t["ops_lowered"] for t in r["trials"]) for r in runs]),
        "calibrate_per_run_s": spread([r["calibrate_s"] for r in runs]),
        "before_baseline_s": spread([r["before_baseline_s"] for r in runs]),
        "total_s": spread([r["total_s"] for r in runs]),
        "trials_per_run": sorted({len(r["trials"]) for r in runs}),
        "baseline_accuracy": runs[-1]["baseline_accuracy"],
        "result": runs[-1]["result"],
    }


def summarize_inc(reports: list[dict]) -> dict:
    trials = [t for rep in reports for r in rep["runs"] for t in r["trials"]]
    last = reports[-1]["summary"]
    return {
        "overhead_per_trial_s": spread([t["overhead_s"] for t in trials]),
        "overhead_without_gc_per_trial_s": spread([t["overhead_s"] - t["steps_s"]["gc_collect"] for t in trials]),
        "eval_per_trial_s": spread([t["eval_s"] for t in trials]),
        "steps_per_trial_median_s": {k: statistics.median(t["steps_s"][k] for t in trials) for k in trials[0]["steps_s"]},
        "trials_per_run": sorted({n for rep in reports for n in rep["summary"]["trials_per_run"]}),
        "baseline_accuracy": last["baseline_accuracy"],
        "result": last["result"],
        "best_trial_accuracy": max(t["accuracy"] for t in trials),
        "gc_tracked_objects": reports[-1]["gc_tracked_objects"],
        "machine": reports[-1]["machine"],
        "block_medians_s": [rep["summary"]["overhead_per_trial_s"]["median"] for rep in reports],
    }


# --- report ------------------------------------------------------------------------------------------


def print_tables(rows: dict, memory: list[dict]) -> None:
    print("\nPer-trial overhead outside the evaluation (median, quartiles), conservative, int8")
    head = "| model | ours | INC 2.6 | INC / ours | INC without gc.collect | / ours | trials (ours, INC) | accuracy ours / INC (FP32) "
    head += "| int8 ops ours / INC |"
    print(head)
    print("| --- " * (head.count("|") - 1) + "|")
    for name, r in rows.items():
        o, i = r["ours"], r.get("inc")
        ours = quartiles_text(o["overhead_per_trial_s"])
        if i is None:
            print(f"| {name} | {ours} | | | | | {o['trials_per_run']} | {o['result']['accuracy']:.3f} | {o['result']['int8_ops']} |")
            continue
        io, ig = i["overhead_per_trial_s"], i["overhead_without_gc_per_trial_s"]
        # INC's result is None where no config met the accuracy goal: give its best trial's accuracy, no int8 ops
        inc_acc = f"{i['result']['accuracy']:.3f}" if i["result"] else f"none met the goal (best trial {i['best_trial_accuracy']:.3f})"
        acc = f"{o['result']['accuracy']:.3f} / {inc_acc} ({o['baseline_accuracy']:.3f})"
        print(
            f"| {name} | {ours} | {quartiles_text(io)} | {r['ratio']:.1f}x | "
            f"{ms(ig['median'])} | {r['ratio_without_gc']:.1f}x | {o['trials_per_run']}, {i['trials_per_run']} | {acc} | "
            f"{o['result']['int8_ops']} / {i['result']['int8_ops'] if i['result'] else 0} |"
        )
    print(
        "\nOurs per trial (medians): "
        + "; ".join(
            f"{n}: build {ms(r['ours']['build_per_trial_s']['median'])} ("
            + ", ".join(f"{k} {ms(v)}" for k, v in r["ours"]["steps_per_trial_median_s"].items())
            + f"), calibration once per run {ms(r['ours']['calibrate_per_run_s']['median'])}, "
            + f"{r['ours']['ops_lowered_per_run']['median']:.0f} ops lowered per run"
            + "".join(
                f", {what} {ms(r['ours'][key]['median'])} (n={r['ours'][key]['n']})"
                for what, key in (
                    ("trials reusing cached ops only", "overhead_cached_per_trial_s"),
                    ("trials lowering ops", "overhead_lowering_per_trial_s"),
                )
                if r["ours"][key]
            )
            for n, r in rows.items()
        )
    )
    print_memory_table(memory)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2, help="alternations ours, INC per model")
    p.add_argument("--repeats", type=int, default=5, help="tuning runs per block (ours) and fits per block (INC)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads, both sides")
    p.add_argument("--models", default=",".join(k for _, k in MODELS.values()), help="comma-separated subset of the models")
    p.add_argument("--encoder-repeats", type=int, default=1, help="tuning runs and fits per block on the MiniLM encoder")
    p.add_argument("--encoder-max-trials", type=int, default=100, help="INC's max_trials on the MiniLM encoder")
    p.add_argument("--inc-python", default=str(ROOT / ".venv-inc" / "bin" / "python"))
    p.add_argument("--skip-inc", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--workers", type=int, default=2, help="evaluators of the memory run")
    p.add_argument("--out", default="runs/bench/backend.json")
    args = p.parse_args()
    machine_record = machine("torch", "torchao", "ray")
    if not args.skip_inc and not os.path.exists(args.inc_python):
        raise SystemExit(f"{args.inc_python} not found: run `bash scripts/bench/setup_inc.sh` first, or pass --skip-inc")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    wanted = set(args.models.split(","))
    if wanted - {k for _, k in MODELS.values()}:
        raise SystemExit(f"--models: unknown {sorted(wanted - {k for _, k in MODELS.values()})}")
    modules = {name: importlib.import_module(m) for name, (m, key) in MODELS.items() if key in wanted}  # modules of this folder
    repeats = {name: args.encoder_repeats if name == ENCODER else args.repeats for name in modules}
    for mod in modules.values():
        mod.model()  # the digits CNN is trained and cached here, before either side loads it
    instrument_ours()

    ours: dict[str, list] = {n: [] for n in modules}
    inc: dict[str, list] = {n: [] for n in modules}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            print(f"round {rnd + 1}/{args.rounds}", flush=True)
            for name, mod in modules.items():
                ours[name] += ours_block(mod, repeats[name])
                if not args.skip_inc:
                    max_trials = args.encoder_max_trials if name == ENCODER else 100
                    inc[name].append(inc_block(MODELS[name][0], args, tmp, str(rnd), repeats[name], max_trials))
    gc_objects = len(gc.get_objects())

    rows = {}
    for name in modules:
        r = {"ours": summarize_ours(ours[name])}
        r["ours"]["block_medians_s"] = [
            statistics.median(t["overhead_s"] for run in ours[name][i : i + repeats[name]] for t in run["trials"])
            for i in range(0, len(ours[name]), repeats[name])
        ]
        if inc[name]:
            r["inc"] = summarize_inc(inc[name])
            r["ratio"] = r["inc"]["overhead_per_trial_s"]["median"] / r["ours"]["overhead_per_trial_s"]["median"]
            r["ratio_without_gc"] = r["inc"]["overhead_without_gc_per_trial_s"]["median"] / r["ours"]["overhead_per_trial_s"]["median"]
        rows[name] = r

    memory = [] if args.skip_memory else (print("memory", flush=True) or memory_part(args.workers))
    print_tables(rows, memory)
    inc_objects = next((r["inc"]["gc_tracked_objects"] for r in rows.values() if "inc" in r), "-")
    print(f"\ngc-tracked objects: our process {gc_objects}, INC's {inc_objects}")

    report = {
        "config": vars(args),
        "machine": machine_record,
        "threads": torch.get_num_threads(),
        "gc_tracked_objects": gc_objects,
        "overhead": rows,
        "runs": {"ours": ours, "inc": {n: [rep["runs"] for rep in reps] for n, reps in inc.items()}},
        "memory": memory,
    }
    write_json(args.out, report)
    print(f"JSON: {args.out}")


if __name__ == "__main__":
    main()
