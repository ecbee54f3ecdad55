"""The GPU check's `tuned` part: `tune(..., workers=0, example_inputs=...)` with the model on the device: the result's
latency (`res.latency`), and the accuracy of `res.compile()` against the goal."""

from __future__ import annotations

import copy
import time
from collections import Counter

from .env import Context, lowered_counts


def tuned_part(ctx: Context, entry: dict) -> None:
    import torch

    from raytune_inc import tune

    w = ctx.workload
    entry["device"] = ctx.device_name
    model = copy.deepcopy(w.model).to(ctx.device).eval()
    t0 = time.perf_counter()
    res = tune(model, w.eval_fn, w.calib, precisions=w.precisions, accuracy=w.accuracy, workers=0, example_inputs=w.example)
    entry["tune_s"] = round(time.perf_counter() - t0, 2)
    entry["trials"] = len(res.trials)
    entry["evaluations"] = res.evaluations
    entry["devices"] = dict(Counter(r["device"] for r in res.history.to_pylist() if r["status"] == "ok"))
    entry["config"] = lowered_counts(res.config)
    entry["baseline"] = res.baseline
    entry["accuracy_eager"] = res.accuracy
    goal = w.accuracy.goal(res.baseline)
    entry["goal"] = goal
    lat = res.latency
    if lat is not None:
        entry["latency"] = {
            "device": lat.device,
            "calls": lat.calls,
            "fp32_eager_ms": round(lat.fp32_eager_ms, 4),
            "tuned_eager_ms": round(lat.tuned_eager_ms, 4),
            "fp32_compiled_ms": round(lat.fp32_compiled_ms, 4),
            "tuned_compiled_ms": round(lat.tuned_compiled_ms, 4),
            "eager_speedup": round(lat.eager_speedup, 3),
            "compiled_speedup": round(lat.compiled_speedup, 3),
        }
    with torch.no_grad():
        compiled_accuracy = float(w.eval_fn(res.compile()))
    entry["accuracy_compiled"] = compiled_accuracy
    entry["compiled_meets_goal"] = w.accuracy.meets(compiled_accuracy, res.baseline)
    entry["size"] = {"fp32_bytes": res.size.fp32_bytes, "tuned_bytes": res.size.tuned_bytes} if res.size else None
