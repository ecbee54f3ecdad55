"""The GPU check's `shared_gpu` part: Ray started here with one GPU; `tune(..., workers=0)` on the CPU (the reference),
then `Workers(k, num_gpus=1/k)` for k = 1, 2, 4 (on a CPU: `Workers(k)`, k = 1, 2): committed trials per second of
tuning span, evaluations, each evaluator's peak memory (`MemoryProbe`), and whether the committed trials are the
reference's (configs and verdicts exactly, accuracies within 1e-3 relative)."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from common import cpu_model, span_seconds

from .env import Context, lowered_counts
from .steps import Budget, Report, step

ACCURACY_RTOL = 1e-3  # accuracies on the GPU against the CPU reference


class MemoryProbe:
    """An eval function wrapper that writes, after each call, this process's peak memory to `<directory>/<pid>.json`:
    torch.cuda.max_memory_allocated / max_memory_reserved on a CUDA model, the process's peak RSS always. `one_tune` has
    cloudpickle ship it to the evaluators by value, so that they need not be able to import this module."""

    def __init__(self, eval_fn, directory: str):
        self.eval_fn = eval_fn
        self.directory = directory
        self.calls = 0
        self.driver_pid = os.getpid()  # the process that made it: in-process evaluations, no actor name to ask Ray for

    def __call__(self, model):
        value = self.eval_fn(model)
        self.calls += 1
        try:
            self.record(model)
        except Exception:  # a probe only: never the evaluation's failure
            pass
        return value

    def record(self, model) -> None:
        import torch

        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        rec = {"pid": os.getpid(), "device": str(device), "calls": self.calls}
        rec["maxrss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        if device.type == "cuda":
            rec["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
            rec["cuda_max_reserved_mib"] = round(torch.cuda.max_memory_reserved(device) / 2**20, 1)
            free, total = torch.cuda.mem_get_info(device)
            rec["gpu_used_now_mib"] = round((total - free) / 2**20, 1)  # the whole GPU: every process's memory, contexts included
        if os.getpid() != self.driver_pid:
            try:
                import ray

                rec["actor"] = ray.get_runtime_context().get_actor_name()  # the history's `worker`
            except Exception:
                pass
        path = os.path.join(self.directory, f"{os.getpid()}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(rec, f)
        os.replace(path + ".tmp", path)


def read_probes(directory: str) -> list[dict]:
    out = []
    for path in sorted(Path(directory).glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            rec = json.loads(path.read_text())
            rec["process"] = "driver (in-process: the baseline, workers=0)" if rec.get("pid") == os.getpid() else "evaluator"
            out.append(rec)
    return out


def run_summary(res, wall: float) -> dict:
    from raytune_inc.records import is_wasted

    rows = res.history.to_pylist()
    ok = [r for r in rows if r["status"] == "ok"]
    span = span_seconds(res.history)
    return {
        "wall_s": round(wall, 2),
        "span_s": round(span, 3),
        "trials": len(res.trials),
        "trials_per_s": round(len(res.trials) / span, 2) if span > 0 else None,
        "evaluations": res.evaluations,
        "wasted": sum(1 for r in rows if is_wasted(r["status"], r["stage"], r["commit_seq"])),
        "first_trial_s": None if res.first_trial_time is None else round(res.first_trial_time, 2),
        "evaluator_startup_s": {k: round(v, 2) for k, v in sorted(res.evaluator_startup.items())},
        "devices": dict(Counter(r["device"] for r in ok)),
        "workers": dict(Counter(r["worker"] for r in ok)),
        "baseline": res.baseline,
        "accuracy": res.accuracy,
        "config": lowered_counts(res.config),
        "stop_reason": res.stop_reason,
        "committed": [[t.stage, t.meets, t.accuracy] for t in res.trials],
    }


def compare_trials(reference, trials) -> dict:
    """Committed trials against the reference's: configs and verdicts exactly, accuracies within ACCURACY_RTOL."""
    out = {"same_count": len(reference) == len(trials)}
    configs = verdicts = True
    first = None
    worst = 0.0
    for i, (a, b) in enumerate(zip(reference, trials, strict=False)):
        same_config, same_verdict = a.config == b.config, a.meets == b.meets
        if a.accuracy is not None and b.accuracy is not None:
            worst = max(worst, abs(a.accuracy - b.accuracy) / max(abs(a.accuracy), 1e-12))
        if first is None and not (same_config and same_verdict):
            diff = {op: (a.config.get(op), b.config.get(op)) for op in a.config if a.config.get(op) != b.config.get(op)}
            first = {"trial": i + 1, "reference": [a.stage, a.meets, a.accuracy], "this": [b.stage, b.meets, b.accuracy], "ops": diff}
        configs &= same_config
        verdicts &= same_verdict
    out["configs_equal"] = configs and out["same_count"]
    out["verdicts_equal"] = verdicts and out["same_count"]
    out["max_relative_accuracy_difference"] = worst
    out["accuracies_within_1e-3"] = worst <= ACCURACY_RTOL
    out["first_difference"] = first
    out["equal"] = out["configs_equal"] and out["verdicts_equal"] and out["accuracies_within_1e-3"]
    return out


def one_tune(ctx: Context, workers, label: str, entry: dict, reference=None):
    from raytune_inc import tune

    w = ctx.workload
    if workers:  # MemoryProbe goes to the evaluators by value: they need not import this module
        from ray import cloudpickle

        cloudpickle.register_pickle_by_value(sys.modules[MemoryProbe.__module__])
    probes = tempfile.mkdtemp(prefix=f"gpu_check_mem_{label}_")
    t0 = time.perf_counter()
    try:
        res = tune(w.model, MemoryProbe(w.eval_fn, probes), w.calib, precisions=w.precisions, accuracy=w.accuracy, workers=workers)
        entry.update(run_summary(res, time.perf_counter() - t0))
        entry["memory"] = read_probes(probes)
    finally:
        shutil.rmtree(probes, ignore_errors=True)
    if reference is not None:
        entry["same_as_reference"] = compare_trials(reference.trials, res.trials)
    return res


def shared_gpu_part(ctx: Context, budget: Budget, report: Report, entry: dict) -> None:
    import ray

    from raytune_inc import Workers

    cores = os.cpu_count() or 1
    gpus = 1 if ctx.cuda else 0
    entry["device"] = ctx.device_name
    entry["ray_init"] = f"ray.init(num_cpus={cores}, num_gpus={gpus})"
    if ray.is_initialized():
        raise RuntimeError("Ray is already initialised in this process")
    ray.init(num_cpus=cores, num_gpus=gpus, include_dashboard=False, log_to_driver=False)
    try:
        entry["ray_resources"] = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU", "memory")}
        runs: dict = {}
        entry["runs"] = runs
        reference = step(runs, "workers=0 (CPU, in-process)", budget, 20, lambda e: one_tune(ctx, 0, "w0", e), report)
        runs["workers=0 (CPU, in-process)"]["device"] = f"CPU: {cpu_model()}"
        counts = (1, 2, 4) if ctx.cuda else (1, 2)
        for k in counts:
            if ctx.cuda:
                workers, label = Workers(k, num_gpus=1 / k), f"Workers({k}, num_gpus={1 / k:g})"
            else:
                workers, label = Workers(k), f"Workers({k}) (CPU evaluators: no CUDA here)"
            step(runs, label, budget, 30, lambda e, w=workers, k=k: one_tune(ctx, w, f"w{k}", e, reference), report)
        entry["note"] = (
            "trials_per_s: committed trials / tuning span (first trial's start to the last commit's end); memory: one record "
            "per process that evaluated (cuda_max_* only where the model was on CUDA); same_as_reference: against workers=0 "
            "on the CPU (configs and verdicts exactly, accuracies within 1e-3 relative)"
        )
    finally:
        ray.shutdown()
