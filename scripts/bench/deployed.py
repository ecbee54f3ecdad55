"""Tuned models as deployed: each tuned model against the FP32 model compiled the same way, in one process.

    .venv/bin/python scripts/bench/deployed.py [--workloads minilm,resnet]
        [--minilm-precisions int8 int8_dynamic,int8 bf16,int8] [--no-bf16] [--min-calls 20] [--min-seconds 2]
        [--out runs/bench/deployed.json]

Workloads (the package's examples, `raytune_inc.examples`):
- minilm: all-MiniLM-L6-v2 (`encoder`), eval function `EmbeddingFidelity` (mean cosine similarity of the 48
  evaluation sentences' embeddings to the FP32 model's), the 16 calibration sentences in 2 batches of 8;
  latency on the 48 evaluation sentences (`dict(eval_fn.inputs)`). Tuned once per `--minilm-precisions` set.
  Target: compiled tuned >= 2.5x faster than compiled FP32, the compiled tuned model's fidelity at or above the goal.
- resnet: the ResNet-style network on the upscaled digits (`resnet`), top-1 accuracy on the 540 test images,
  4 calibration batches of 32; latency on a batch of 64 test images. Tuned at int8. Target: compiled tuned >= 1.4x
  faster than compiled FP32, accuracy within 1%.

Also the cost of the fix of inductor's in-place int8 residual add (`inplace_fix_cost`, docs/deployment.md): the
feed-forward block compiled with and without it, timed in one alternation.

Each `tune(model, eval_fn, calib, precisions=..., workers=0)` runs at the 1% relative goal, conservative, and its
wall time is taken around the call alone (imports done before). Then, for each tuned model: its ops by type and
precision, `res.accuracy` (the eager tuned model) and the compiled model's metric, taken after its timing calls (what
production sees after many calls; the first call of each compiled model runs the deployed check, timed). Unless
`--no-bf16`, every op at bf16 (no tuning, whatever its accuracy) is measured the same way, for information. Then
latency: the FP32 model and every tuned one of the workload timed in one alternation, call by call (common.py's
`alternating_times`, the method of `raytune_inc.pytorch.costs.alternate_medians`; medians), the eager models
together and the compiled ones together (`raytune_inc.compile_model`, torch.compile with inductor freezing, as
`res.compile()`), so that a machine's load falls on all alike; the quartiles of each round's FP32 / tuned ratio
show how much that load moved the comparison. An alternation during which this process had less than 85% of its
cores (CPU time over wall time x threads: other processes took them) is taken again, 15 s later, up to `--attempts`
times; the one with the largest share is kept, and every attempt is recorded. Torch uses all cores.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import time
import warnings

import torch
from common import ROOT, add_timing_options, command_line, machine, ratio_spread, steady_times, write_json

from raytune_inc import AccuracyCriterion, compile_model, tune
from raytune_inc.errors import DeploymentError
from raytune_inc.pytorch.batches import as_inputs, run_batch
from raytune_inc.pytorch.deployment import check_deployed
from raytune_inc.pytorch.lowering import apply_config
from raytune_inc.pytorch.ops import discover_ops
from raytune_inc.pytorch.qparams import Calibration

GOAL = 0.01  # relative
TARGETS = {"minilm": 2.5, "resnet": 1.4}  # compiled tuned over compiled FP32
MINILM_SETS = ("int8", "int8_dynamic,int8", "bf16,int8")


def minilm():
    from raytune_inc.examples import encoder

    model = encoder.pretrained_model()
    eval_fn = encoder.EmbeddingFidelity(model)
    return {
        "title": "all-MiniLM-L6-v2, mean cosine similarity of the 48 evaluation sentences' embeddings to FP32",
        "model": model,
        "eval_fn": eval_fn,
        "calib": encoder.calibration_batches(),
        "example_inputs": dict(eval_fn.inputs),
        "latency_on": f"the 48 evaluation sentences ({tuple(eval_fn.inputs['input_ids'].shape)} tokens)",
    }


def resnet():
    from raytune_inc.examples import resnet as example

    model = example.trained_model(ROOT / "runs" / "digits_resnet.pt")
    eval_fn = example.TestAccuracy()
    return {
        "title": "ResNet-style network on the digits at 32x32, top-1 accuracy on the 540 test images",
        "model": model,
        "eval_fn": eval_fn,
        "calib": example.calibration_batches(),
        "example_inputs": eval_fn.x[:64],
        "latency_on": "a batch of 64 test images (64x1x32x32)",
    }


WORKLOADS = {"minilm": minilm, "resnet": resnet}


def ops_by_precision(space, config: dict) -> dict[str, dict[str, int]]:
    """Op type -> precision -> number of ops, FP32 included."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for op in space:
        counts[op.type][config.get(op.name, "fp32")] += 1
    return {t: dict(c) for t, c in counts.items()}


def compiled_and_checked(model, example_inputs) -> tuple[torch.nn.Module, float, float]:
    """`model` compiled as deployed; the seconds of its first call on `example_inputs` (compilation and the deployed
    check included), and of one more check alone (three compiled calls and one eager call on copies of the inputs)."""
    compiled = compile_model(model)
    t0 = time.perf_counter()
    with torch.no_grad():
        run_batch(compiled, example_inputs)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    check_deployed(compiled._run, model, [as_inputs(example_inputs)])
    return compiled, first, time.perf_counter() - t0


def checked_or_failed(model, example_inputs) -> tuple[torch.nn.Module, float | None, float | None, str | None]:
    """`compiled_and_checked`, or where the deployed check refuses the compiled model, the model compiled without the
    check (timed and measured all the same, as `tune` does) and what the check found."""
    try:
        return (*compiled_and_checked(model, example_inputs), None)
    except DeploymentError as exc:
        return compile_model(model, check=False), None, None, str(exc)


def latencies(models: list, inputs, args, batches: bool = True) -> tuple[list[list[float]], list[dict]]:
    """Milliseconds of each call of each of `models` on `inputs` (`batches=False`: of each of the calls `models`), all
    alternated call by call (on a CPU, the method of `raytune_inc.pytorch.costs.alternate_medians`, with every call's
    time kept), taken again while another process had the cores (common.py's `steady_times`); and the attempts."""
    calls = [lambda m=m: run_batch(m, inputs) for m in models] if batches else models
    with torch.no_grad():
        return steady_times(calls, args.min_calls, args.min_seconds, torch.get_num_threads(), args.attempts)


def variant(w: dict, label: str, tuned, extra: dict) -> dict:
    """A tuned (or cast) model's figures but latency and compiled accuracy (taken after the timing calls), and the
    model compiled."""
    compiled, first_s, check_s, failure = checked_or_failed(tuned, w["example_inputs"])
    row = {"variant": label, **extra, "compile_and_check_s": first_s, "check_s": check_s, "check_failure": failure}
    row["meets_goal_eager"] = row["accuracy_eager"] >= w["goal"]
    return {**row, "_models": (tuned, compiled)}


def compiled_accuracy(w: dict, row: dict) -> None:
    """The compiled model's metric, taken once it has run every timing call: what production sees after many calls."""
    value = float(w["eval_fn"](row["_models"][1]))
    row["accuracy_compiled"], row["meets_goal_compiled"] = value, value >= w["goal"]
    print(f"  {row['variant']}: accuracy eager {row['accuracy_eager']:.4f}, compiled {value:.4f} (goal {w['goal']:.4f})", flush=True)


def inplace_fix_cost(args) -> dict:
    """What `deployment.inplace_safe_fusions` costs: the feed-forward block of docs/deployment.md (768/3072, input
    8x128x768, both Linear at int8) compiled with it and without it (the residual add written in place into the
    block's input, as torch compiles it), timed in one alternation; each on its own copy of the input."""
    import contextlib
    import copy

    from torch import nn

    from raytune_inc.pytorch import deployment
    from raytune_inc.pytorch.calibration import calibrate

    class FeedForward(nn.Module):
        def __init__(self, d: int = 768, h: int = 3072):
            super().__init__()
            self.ln, self.up, self.down = nn.LayerNorm(d), nn.Linear(d, h), nn.Linear(h, d)

        def forward(self, x):
            return x + self.down(nn.functional.gelu(self.up(self.ln(x))))

    torch.manual_seed(0)
    model, x = FeedForward().eval(), torch.randn(8, 128, 768)
    tuned = apply_config(model, {"up": "int8", "down": "int8"}, calibrate(model, [x[:2]], ["up", "down"]))
    fixed = compile_model(tuned, check=False)
    fix = deployment.inplace_safe_fusions
    deployment.inplace_safe_fusions = lambda: contextlib.nullcontext(False)
    try:
        unfixed, y = compile_model(copy.deepcopy(tuned), check=False), x.clone()
        with torch.no_grad():
            unfixed(y)  # compiled here, without the fix
    finally:
        deployment.inplace_safe_fusions = fix
    times, attempts = latencies([lambda: fixed(x), lambda: unfixed(y)], None, args, batches=False)
    fixed_ms, unfixed_ms = (statistics.median(t) for t in times)
    print(f"in-place fix: {fixed_ms:.3f} ms with it, {unfixed_ms:.3f} ms without ({unfixed_ms / fixed_ms:.3f}x)", flush=True)
    return {"fixed_ms": fixed_ms, "unfixed_ms": unfixed_ms, "calls": len(times[0]), "timing_attempts": attempts}


def run_workload(name: str, sets: list[tuple[str, ...]], args) -> dict:
    w = WORKLOADS[name]()
    model, eval_fn = w["model"], w["eval_fn"]
    space = discover_ops(model)
    baseline = float(eval_fn(model))
    w["goal"] = baseline * (1 - GOAL)
    print(f"{name}: {w['title']}; FP32 {baseline:.4f}, goal {w['goal']:.4f}", flush=True)
    fp32_compiled, fp32_compile_s, fp32_check_s = compiled_and_checked(model, w["example_inputs"])
    rows = []
    for precisions in sets:
        t0 = time.perf_counter()
        res = tune(model, eval_fn, w["calib"], precisions=precisions, accuracy=AccuracyCriterion(GOAL), workers=0)
        wall = time.perf_counter() - t0
        config = res.config or {}
        extra = {
            "tuned": True,
            "precisions": list(precisions),
            "wall_s": wall,
            "evaluations": res.evaluations,
            "trials": len(res.trials),
            "met_goal": res.config is not None,
            "ops": ops_by_precision(space, config),
            "config": dict(config),
            "accuracy_eager": float(res.accuracy if res.config is not None else baseline),
            "fp32_bytes": res.size.fp32_bytes,
            "tuned_bytes": res.size.tuned_bytes,
        }
        print(f"  tune({','.join(precisions)}): {wall:.1f} s, {res.evaluations} evaluations, ops {extra['ops']}", flush=True)
        rows.append(variant(w, ",".join(precisions), res.model, extra))
        del res
    if not args.no_bf16:
        config = {op.name: "bf16" for op in space if "bf16" in op.precisions}
        tuned = apply_config(model, config, Calibration())
        extra = {"tuned": False, "precisions": ["bf16"], "ops": ops_by_precision(space, config), "accuracy_eager": float(eval_fn(tuned))}
        rows.append(variant(w, "every op bf16", tuned, extra))
    # every model of the workload in one alternation, FP32 first: eager ones, then compiled ones
    for mode, i, fp32 in (("eager", 0, model), ("compiled", 1, fp32_compiled)):
        times, attempts = latencies([fp32, *(r["_models"][i] for r in rows)], w["example_inputs"], args)
        w.setdefault("timing_attempts", {})[mode] = attempts
        fp32_ms = statistics.median(times[0])
        for r, tuned in zip(rows, times[1:], strict=True):
            tuned_ms = statistics.median(tuned)
            r[mode] = {
                "fp32_ms": fp32_ms,
                "tuned_ms": tuned_ms,
                "speedup": fp32_ms / tuned_ms,
                "speedup_per_round": ratio_spread(times[0], tuned),
                "calls": len(tuned),
            }
    w["load_average_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    fp32_compiled_value = float(eval_fn(fp32_compiled))
    for r in rows:
        compiled_accuracy(w, r)
        del r["_models"]
        print(
            f"  {r['variant']}: eager {r['eager']['fp32_ms']:.2f} -> {r['eager']['tuned_ms']:.2f} ms ({r['eager']['speedup']:.2f}x), "
            f"compiled {r['compiled']['fp32_ms']:.2f} -> {r['compiled']['tuned_ms']:.2f} ms ({r['compiled']['speedup']:.2f}x)",
            flush=True,
        )
    return {
        "title": w["title"],
        "latency_on": w["latency_on"],
        "baseline": baseline,
        "goal": w["goal"],
        "fp32_accuracy_compiled": fp32_compiled_value,
        "fp32_compile_and_check_s": fp32_compile_s,
        "fp32_check_s": fp32_check_s,
        "target_compiled_speedup": TARGETS[name],
        "ops_total": {t: sum(c.values()) for t, c in ops_by_precision(space, {}).items()},
        "variants": rows,
        "load_average_after": w["load_average_after"],
        "timing_attempts": w["timing_attempts"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default="minilm,resnet", help=f"comma-separated subset of {', '.join(WORKLOADS)}")
    p.add_argument("--minilm-precisions", nargs="+", default=list(MINILM_SETS), help="precision sets (comma-separated each) for MiniLM")
    p.add_argument("--resnet-precisions", nargs="+", default=["int8"], help="precision sets for the ResNet-style network")
    p.add_argument("--no-bf16", action="store_true", help="leave out the every-op-bf16 models")
    add_timing_options(p)
    p.add_argument("--out", default="runs/bench/deployed.json")
    args = p.parse_args()
    record = machine("torch", "torchao", "transformers")
    wanted = args.workloads.split(",")
    if unknown := set(wanted) - set(WORKLOADS):
        raise SystemExit(f"--workloads: unknown {sorted(unknown)}")
    torch.set_num_threads(os.cpu_count())
    # one process compiles several models of one class: more than dynamo's default of 8 recompilations of one
    # frame would run the rest eagerly, silently
    torch._dynamo.config.recompile_limit = 64
    warnings.filterwarnings("ignore")
    import raytune_inc.pytorch.quantized  # noqa: F401 - torchao's imports, before any wall time is taken

    sets = {"minilm": args.minilm_precisions, "resnet": args.resnet_precisions}
    report = {
        "command": command_line(),
        "machine": record,
        "threads": torch.get_num_threads(),
        "amx_usable": bool(torch._C._cpu._init_amx()),  # AMX tiles granted to this process: oneDNN's bf16/int8 kernels use them
        "goal": f"{GOAL:.0%} relative",
        "workloads": {},
    }
    for name in wanted:
        report["workloads"][name] = run_workload(name, [tuple(s.split(",")) for s in sets[name]], args)
    report["inplace_fix"] = inplace_fix_cost(args)
    write_json(args.out, report)
    medians = [v["compiled"]["speedup"] for w in report["workloads"].values() for v in w["variants"]]
    print(f"JSON: {args.out} (compiled speedups: {', '.join(f'{x:.2f}x' for x in medians)}; median {statistics.median(medians):.2f}x)")


if __name__ == "__main__":
    main()
