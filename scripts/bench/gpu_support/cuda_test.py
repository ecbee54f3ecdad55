"""The GPU check's `cuda_test` part: the suite's CUDA test as a pytest subprocess. Where hypothesis is missing
(test_driver.py imports it) the stand-in in `stubs/` is put on the subprocess's PYTHONPATH; where ray is imported from
PYTHONPATH (the GPU machine's /tmp/site), the plugin in `plugin/` starts Ray with `PYTHONPATH=tests:${PYTHONPATH}`,
since conftest.py's `runtime_env={"env_vars": {"PYTHONPATH": tests}}` would replace that path in the evaluators."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

from common import ROOT

from .env import Context
from .steps import Budget

HERE = Path(__file__).resolve().parent
STUBS = HERE / "stubs"  # holds the stand-in package `hypothesis`
PLUGIN = HERE / "plugin"  # holds the pytest plugin `gpu_check_ray`


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
    stub = importlib.util.find_spec("hypothesis") is None or args.force_workarounds
    if stub:
        extra.append(str(STUBS))
        workarounds.append(
            "hypothesis is not installed: a stub stands in for it (test_driver.py imports it at the top; its property tests skip)"
        )
    plugin = ray_from_pythonpath() or args.force_workarounds
    if plugin:
        extra.append(str(PLUGIN))
        workarounds.append(
            "ray is imported from PYTHONPATH: conftest.py's runtime_env env_vars PYTHONPATH=tests would replace it in the "
            "evaluators (they could not import ray and never start); a plugin starts Ray first with PYTHONPATH=tests:${PYTHONPATH}"
        )
    if extra:
        env["PYTHONPATH"] = os.pathsep.join([*filter(None, env.get("PYTHONPATH", "").split(os.pathsep)), *extra])
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", args.cuda_test, "-p", "no:cacheprovider"]
    if stub:
        cmd += ["-p", "no:hypothesispytest"]  # hypothesis's own plugin, where it is installed (--force-workarounds)
    if plugin:
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
    text = proc.stdout + proc.stderr
    entry["rc"] = proc.returncode
    entry["outcome"] = pytest_outcome(proc.stdout, proc.returncode)
    summary = [line for line in proc.stdout.splitlines() if line.strip()]
    entry["summary"] = summary[-1] if summary else ""
    entry["output_tail"] = text[-3000:]
