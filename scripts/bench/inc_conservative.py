"""Per-trial cost of Intel Neural Compressor 2.6's conservative tuning strategy, outside the user's evaluation.

    .venv-inc/bin/python scripts/bench/inc_conservative.py [--model M:NAME --eval M:NAME --calib M:NAME]
        [--path DIR ...] [--max-trials 100] [--tolerable-loss 0.01] [--repeats 10] [--out runs/inc_conservative.json]

Runs post-training static quantization, PostTrainingQuantConfig(quant_level=0) (the conservative strategy),
on a fresh model from the factory `--model`, with the user's `--eval` (model -> higher-is-better float) and
a calibration DataLoader from `--calib` (yielding (input, label)). Defaults: scripts/bench/inc_example.py.

How trials are timed: INC calls the eval function once for the FP32 baseline, then once per trial, right
after that trial's apply-config / FX prepare / calibrate / convert. The eval function is wrapped to record
each call's start and end, so for trial i:
    overhead_i = start(eval_i) - end(eval_{i-1})     (everything INC does between two evaluations)
    wall_i     = end(eval_i)   - end(eval_{i-1})     (overhead_i + the evaluation itself)
Where the overhead goes: INC's FX prepare_fx, calibration (model_calibration), convert_fx and gc.collect
(INC's PyTorch adaptor calls it twice per trial) are wrapped too; their totals at each eval give a per-trial
breakdown; "other" is the rest (deep copies of model and config, strategy, tuning-history snapshot).
The whole fit() is repeated `--repeats` times (fresh model each time); figures are medians over all trials
of all repeats, spread as min / quartiles / max.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import statistics
import sys
import tempfile
import time
import warnings

from common import machine, spread, timed, timed_phase, write_json  # standard library only; this folder is first on sys.path

DEFAULT = "inc_example:"  # a module of this folder


def load(spec: str):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def instrument(owner, name: str, phase: str) -> None:
    setattr(owner, name, timed_phase(getattr(owner, name), phase))


def instrument_inc() -> None:
    import torch.quantization.quantize_fx as qfx  # INC imports prepare_fx / convert_fx from here at each quantize()
    from neural_compressor.adaptor.pytorch import PyTorch_FXAdaptor

    instrument(qfx, "prepare_fx", "prepare_fx")
    instrument(PyTorch_FXAdaptor, "model_calibration", "calibrate")
    instrument(qfx, "convert_fx", "convert_fx")
    instrument(gc, "collect", "gc_collect")


def count_int8(q_model) -> dict:
    """int8 ops of INC's result, two ways: INC's own op config (q_config) and quantized modules in the model."""
    op_cfg = (getattr(q_model, "q_config", None) or {}).get("op", {})
    cfg_int8 = sorted(
        f"{name}:{kind}"
        for (name, kind), cfg in op_cfg.items()
        if cfg.get("weight", {}).get("dtype") in ("int8", "uint8") or cfg.get("activation", {}).get("dtype") in ("int8", "uint8")
    )
    mods = sorted(
        f"{name}:{type(m).__name__}"
        for name, m in q_model.model.named_modules()
        if type(m).__module__.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized"))
        and type(m).__name__ not in ("Quantize", "DeQuantize", "LinearPackedParams")
    )
    return {"int8_ops": len(cfg_int8), "int8_op_names": cfg_int8, "quantized_modules": mods}


def run_once(make_model, evaluate, make_calib, args) -> dict:
    from neural_compressor import PostTrainingQuantConfig, quantization, set_workspace
    from neural_compressor.config import AccuracyCriterion, TuningCriterion

    conf = PostTrainingQuantConfig(
        quant_level=0,
        approach="static",
        tuning_criterion=TuningCriterion(max_trials=args.max_trials),
        accuracy_criterion=AccuracyCriterion(criterion="relative", tolerable_loss=args.tolerable_loss),
    )
    model, calib, calls = make_model(), make_calib(), []
    with tempfile.TemporaryDirectory() as workspace:  # INC's tuning history and deploy.yaml, not in the cwd
        set_workspace(workspace)
        t0 = time.perf_counter()
        q_model = quantization.fit(model, conf, calib_dataloader=calib, eval_func=timed(evaluate, calls))
        t1 = time.perf_counter()
    if not calls:
        raise SystemExit("INC never called the eval function")
    trials = []
    for (_, prev_end, _, prev_ph), (s, e, acc, ph) in zip(calls, calls[1:], strict=False):
        steps = {k: ph[k] - prev_ph[k] for k in ph}
        steps["other"] = (s - prev_end) - sum(steps.values())
        trials.append({"overhead_s": s - prev_end, "eval_s": e - s, "wall_s": e - prev_end, "accuracy": acc, "steps_s": steps})
    out = {
        "total_s": t1 - t0,
        "before_baseline_s": calls[0][0] - t0,
        "baseline_eval_s": calls[0][1] - calls[0][0],
        "after_last_eval_s": t1 - calls[-1][1],
        "baseline_accuracy": calls[0][2],
        "trials": trials,
        "result": None,
    }
    if q_model is not None:  # None: no config met the accuracy goal within max_trials
        out["result"] = {"accuracy": float(evaluate(q_model.model)), **count_int8(q_model)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT + "model", help="module:name of a zero-argument model factory")
    p.add_argument("--eval", default=DEFAULT + "evaluate", help="module:name of eval(model) -> float, higher is better")
    p.add_argument("--calib", default=DEFAULT + "calib_data", help="module:name of a zero-argument calibration DataLoader factory")
    p.add_argument("--path", action="append", default=[], help="directory to import the modules from (repeatable)")
    p.add_argument("--max-trials", type=int, default=100)
    p.add_argument("--tolerable-loss", type=float, default=0.01, help="relative accuracy loss allowed")
    p.add_argument("--repeats", type=int, default=10, help="full tuning runs; medians are over all their trials")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: leave torch's default)")
    p.add_argument("--out", default="runs/inc_conservative.json")
    p.add_argument("--verbose", action="store_true", help="keep INC's log")
    args = p.parse_args()
    machine_record = machine("neural_compressor", "torch")

    sys.path[:0] = args.path  # where --model, --eval and --calib are (this script's folder is already on it)
    import neural_compressor
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.verbose:
        logging.getLogger("neural_compressor").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore")  # torch's deprecation notes on FX quantization, once per trial
    make_model, evaluate, make_calib = load(args.model), load(args.eval), load(args.calib)
    instrument_inc()

    runs = [run_once(make_model, evaluate, make_calib, args) for _ in range(args.repeats)]
    trials = [t for r in runs for t in r["trials"]]
    summary = {
        "overhead_per_trial_s": spread([t["overhead_s"] for t in trials]),
        "eval_per_trial_s": spread([t["eval_s"] for t in trials]),
        "wall_per_trial_s": spread([t["wall_s"] for t in trials]),
        "steps_per_trial_median_s": {k: statistics.median(t["steps_s"][k] for t in trials) for k in trials[0]["steps_s"]},
        "trials_per_run": [len(r["trials"]) for r in runs],
        "total_s": spread([r["total_s"] for r in runs]),
        "before_baseline_s": spread([r["before_baseline_s"] for r in runs]),
        "baseline_accuracy": runs[-1]["baseline_accuracy"],
        "result": runs[-1]["result"],
    }
    report = {
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": machine_record,
        "threads": torch.get_num_threads(),
        "gc_tracked_objects": len(gc.get_objects()),  # what each of INC's gc.collect() walks
        "summary": summary,
        "runs": runs,
    }
    write_json(args.out, report)

    o, w, e = summary["overhead_per_trial_s"], summary["wall_per_trial_s"], summary["eval_per_trial_s"]
    res = summary["result"]
    print(
        f"INC {neural_compressor.__version__} conservative (quant_level=0), torch {torch.__version__}, "
        f"{args.repeats} runs, max_trials={args.max_trials}, tolerable_loss={args.tolerable_loss}"
    )
    print(f"  trials per run        {summary['trials_per_run']}")
    print(
        f"  overhead per trial    median {o['median']:.3f} s  (min {o['min']:.3f}, q1 {o['q1']:.3f}, "
        f"q3 {o['q3']:.3f}, max {o['max']:.3f}; n={o['n']})"
    )
    print("  of which (medians)    " + ", ".join(f"{k} {v:.3f}" for k, v in summary["steps_per_trial_median_s"].items()))
    print(f"  eval per trial        median {e['median']:.3f} s")
    print(f"  wall per trial        median {w['median']:.3f} s")
    print(
        f"  total fit() wall      median {summary['total_s']['median']:.2f} s "
        f"(of which before the baseline eval {summary['before_baseline_s']['median']:.2f} s)"
    )
    if res is None:
        print(f"  result                none met the accuracy goal (baseline {summary['baseline_accuracy']:.4f})")
    else:
        print(
            f"  result                accuracy {res['accuracy']:.4f} (baseline {summary['baseline_accuracy']:.4f}), "
            f"{res['int8_ops']} int8 ops: {', '.join(res['int8_op_names'])}"
        )
    print(f"  JSON                  {args.out}")


if __name__ == "__main__":
    main()
