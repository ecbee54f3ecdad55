"""The GPU check's `precisions` part: every op at each of the registry's precisions asked for (`apply_config`,
calibration on the CPU), and fp8 (torchao's `Float8DynamicActivationFloat8WeightConfig` on each Linear; compute
capability 8.9 or above, else the reason is recorded): fidelity eager and compiled, latency eager and compiled
against FP32 compiled the same way, on the device."""

from __future__ import annotations

import copy
import time

from .env import Context, lowered_counts
from .steps import Budget, Report, error_text

FP8_MIN_CAPABILITY = (8, 9)


def fp8_model(model, per_row: bool):
    """`model` (a copy) with every Linear at float8 (torchao's dynamic activation + weight config): per tensor on the
    FP32 weights, or per row on bf16 weights (each Linear cast to bf16 at its boundary, as the bf16 handler does)."""
    import torch
    from torch import nn

    from raytune_inc.pytorch import import_torchao
    from raytune_inc.pytorch.precisions import cast_module

    quantization = import_torchao()
    model = copy.deepcopy(model).eval()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if per_row:
        for m in linears:
            cast_module(m, torch.bfloat16)
        config = quantization.Float8DynamicActivationFloat8WeightConfig(granularity=quantization.PerRow())
    else:
        config = quantization.Float8DynamicActivationFloat8WeightConfig()
    quantization.quantize_(model, config, filter_fn=lambda m, fqn: isinstance(m, nn.Linear))
    return model, len(linears)


def precisions_part(ctx: Context, budget: Budget, report: Report, entry: dict) -> None:
    import torch

    from raytune_inc import compile_model
    from raytune_inc.pytorch.batches import run_batch
    from raytune_inc.pytorch.calibration import calibrate
    from raytune_inc.pytorch.costs import alternate_medians
    from raytune_inc.pytorch.lowering import apply_config
    from raytune_inc.pytorch.ops import discover_ops
    from raytune_inc.pytorch.precisions import needs_calibration

    w = ctx.workload
    device = torch.device(ctx.device)
    entry["device"] = ctx.device_name
    entry["example"] = describe_batch(w.example)
    space = discover_ops(w.model)
    modules = dict(w.model.named_modules())
    observed = [op.name for op in space if needs_calibration(modules[op.name], ("int8",))]
    calibration = calibrate(w.model, w.calib, observed, space.names)  # on the CPU, as tune's driver does with Ray evaluators
    fp32 = copy.deepcopy(w.model).to(device).eval()
    models = {"fp32": fp32}
    results: dict = {"fp32": {"ops": {"fp32": len(space)}}}
    entry["models"] = results

    def build(name: str, make) -> None:
        res = results.setdefault(name, {})
        try:
            t0 = time.perf_counter()
            model, ops = make()
            res["build_s"] = round(time.perf_counter() - t0, 2)
            res["ops"] = ops
            with torch.no_grad():
                res["fidelity_eager"] = float(w.eval_fn(model))
            models[name] = model
        except Exception as exc:
            res["error"] = error_text(exc, 6)
        report.save()

    for p in ctx.args.precisions:

        def make(p=p):
            config = {op.name: p if p in op.precisions else "fp32" for op in space}
            return apply_config(fp32, config, calibration), lowered_counts(config)

        build(p, make)
    fp8 = {
        "min_capability": "8.9",
        "about": "torchao Float8DynamicActivationFloat8WeightConfig on every Linear (torchao.quantization.quantize_)",
    }
    entry["fp8"] = fp8
    if ctx.cuda and tuple(ctx.capability) >= FP8_MIN_CAPABILITY:
        for name, per_row in (("fp8_per_tensor", False), ("fp8_per_row_bf16", True)):

            def make(per_row=per_row):
                model, n = fp8_model(fp32, per_row)
                return model, {"fp8": n}

            build(name, make)
    else:
        why = "no CUDA device" if not ctx.cuda else f"compute capability {ctx.capability[0]}.{ctx.capability[1]} < 8.9"
        fp8["skipped"] = f"skipped: {why}"
        try:  # the code path, as far as it goes here (torchao refuses float8 below 8.9)
            fp8_model(fp32, per_row=False)
            fp8["probe"] = "quantize_ accepted it"
        except Exception as exc:
            fp8["probe"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    fid = results["fp32"]
    with torch.no_grad():
        fid["fidelity_eager"] = float(w.eval_fn(fp32))
    report.save()

    # Eager latency: all models in one alternation, call by call.
    names = list(models)
    calls = [lambda m=models[n]: run_batch(m, w.example) for n in names]
    medians, rounds = alternate_medians(calls, device)
    for n, ms in zip(names, medians, strict=True):
        results[n]["eager_ms"] = round(ms, 4)
        results[n]["eager_speedup_vs_fp32"] = round(medians[0] / ms, 3)
    entry["eager_rounds"] = rounds
    report.save()

    # Compiled: each model compiled (and its compiled fidelity taken) while the budget allows; then one alternation.
    compiled = {}
    for n in names:
        reserve = 0.0 if "tuned" not in ctx.args.parts else ctx.args.tuned_reserve
        reason = budget.skip_reason(25 + reserve)
        if reason:
            results[n]["compiled"] = reason + (f" (keeping {reserve:g} s for the tuned part)" if reserve else "")
            continue
        try:
            t0 = time.perf_counter()
            c = compile_model(models[n])
            run_batch(c, w.example)
            if device.type == "cuda":
                torch.cuda.synchronize()
            results[n]["compile_s"] = round(time.perf_counter() - t0, 2)
            results[n]["fidelity_compiled"] = float(w.eval_fn(c))
            compiled[n] = c
        except Exception as exc:
            results[n]["compiled_error"] = error_text(exc, 6)
        report.save()
    if "fp32" in compiled:
        cnames = list(compiled)
        medians, rounds = alternate_medians([lambda m=compiled[n]: run_batch(m, w.example) for n in cnames], device)
        for n, ms in zip(cnames, medians, strict=True):
            results[n]["compiled_ms"] = round(ms, 4)
            results[n]["compiled_speedup_vs_fp32_compiled"] = round(medians[0] / ms, 3)
        entry["compiled_rounds"] = rounds
    entry["note"] = (
        "every op a handler takes at that precision (ops: how many at each); latency: medians of alternating calls on the "
        "example batch, eager against eager and compiled (compile_model: torch.compile, inductor freezing) against compiled"
    )


def describe_batch(batch) -> str:
    if isinstance(batch, dict):
        return ", ".join(f"{k}: {tuple(v.shape)}" for k, v in batch.items())
    return str(tuple(batch.shape))
