"""scripts/bench/gpu_check.py, the one command of a session on the CUDA machine, run here on the CPU (its CUDA parts
say they were skipped): a session on the device has minutes, so its script must not first fail there."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from raytune_inc.pytorch.calibration import reduce_range

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "bench" / "gpu_check.py"


def load_part(name: str):
    """A module of scripts/bench/gpu_support/ (the script's parts), imported as the script imports it."""
    if str(SCRIPT.parent) not in sys.path:  # as when run: the script's folder (common.py, gpu_support/) first on sys.path
        sys.path.insert(0, str(SCRIPT.parent))
    return importlib.import_module(f"gpu_support.{name}")


def run_script(tmp_path, *args, timeout=300) -> dict:
    out = tmp_path / "gpu_check.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"written: {out}" in done.stdout
    return json.loads(out.read_text())


def trial(config, meets, accuracy):
    return SimpleNamespace(config=config, meets=meets, accuracy=accuracy, stage="op-wise")


def test_committed_trials_are_compared_by_config_verdict_and_accuracy():
    shared_gpu = load_part("shared_gpu")
    reference = [trial({"a": "int8", "b": "fp32"}, True, 0.99), trial({"a": "int8", "b": "int8"}, False, 0.95)]
    same = shared_gpu.compare_trials(reference, [trial(t.config, t.meets, t.accuracy * (1 + 5e-4)) for t in reference])
    assert same["equal"] and same["first_difference"] is None
    far = shared_gpu.compare_trials(reference, [trial(t.config, t.meets, t.accuracy * (1 + 5e-3)) for t in reference])
    assert far["configs_equal"] and far["verdicts_equal"] and not far["equal"]
    other = shared_gpu.compare_trials(reference, [reference[0], trial({"a": "int8", "b": "bf16"}, False, 0.95)])
    assert not other["equal"] and other["first_difference"]["trial"] == 2
    assert other["first_difference"]["ops"] == {"b": ("int8", "bf16")}
    assert not shared_gpu.compare_trials(reference, reference[:1])["equal"]


def test_unknown_parts_and_precisions_are_refused(tmp_path):
    for option, value in (("--parts", "env,fp8"), ("--precisions", "int8,fp8")):
        done = subprocess.run([sys.executable, str(SCRIPT), option, value], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "fp8" in done.stderr


def test_pytest_outcome_reads_the_summary_line():
    cuda_test = load_part("cuda_test")
    assert cuda_test.pytest_outcome("1 passed in 3.1s", 0) == "passed"
    assert cuda_test.pytest_outcome("1 skipped in 1.7s", 0) == "skipped"
    assert cuda_test.pytest_outcome("1 failed, 2 passed in 9s", 1) == "failed"
    assert cuda_test.pytest_outcome("", 4) == "no result (exit code 4)"


def test_a_short_budget_skips_the_parts_it_cannot_fit_and_says_so(tmp_path):
    data = run_script(tmp_path, "--workload", "outliers", "--budget", "19", timeout=120)
    parts = data["parts"]
    assert parts["env"]["status"] == "ok"
    assert "no CUDA" in data["device"] and parts["env"]["cuda_available"] is False
    skipped = [name for name in ("cuda_test", "shared_gpu", "precisions", "tuned") if parts[name]["status"].startswith("skipped")]
    assert skipped and all("time budget" in parts[name]["status"] for name in skipped)


@pytest.mark.slow
def test_every_precision_and_the_cuda_test_on_the_cpu(tmp_path):
    # bf16 and fp16 are casts (their handlers are tested in test_precisions.py); the quantized ones are built here
    data = run_script(
        tmp_path, "--workload", "outliers", "--parts", "cuda_test,precisions", "--precisions", "int8_dynamic,int8", "--budget", "200"
    )
    parts = data["parts"]
    assert parts["cuda_test"]["outcome"] == "skipped"  # the suite's CUDA test skips cleanly without a GPU
    assert parts["shared_gpu"]["status"] == parts["tuned"]["status"] == "skipped: not in --parts"
    precisions = parts["precisions"]
    assert precisions["status"] == "ok" and "no CUDA" in precisions["device"]
    models = precisions["models"]
    assert models["fp32"]["fidelity_eager"] == pytest.approx(1.0)
    # each precision asked for built on all 29 Linear, within what its format allows on this model
    assert set(models) == {"fp32", "int8_dynamic", "int8"}
    floors = {"int8_dynamic": 0.995, "int8": 0.98 if reduce_range() else 0.99}  # 7-bit activations: twice the step
    for precision, floor in floors.items():
        model = models[precision]
        if precision == "int8_dynamic" and reduce_range():
            # An x86 CPU without VNNI: oneDNN's int8 kernel saturates on torchao's full-range int8 activations, and
            # the deployed check refuses the compiled model, saying so (static int8 takes 7 bits there instead).
            assert "error" not in model and "the compiled model is wrong" in model["compiled_error"], model
            continue
        assert "error" not in model and "compiled_error" not in model, model
        assert model["ops"] == {precision: 29}
        assert floor <= model["fidelity_eager"] <= 1.0 + 1e-6, (precision, model["fidelity_eager"])
        assert model["fidelity_compiled"] == pytest.approx(model["fidelity_eager"], abs=1e-3)
        assert model["eager_ms"] > 0 and model["compiled_ms"] > 0
    assert models["int8"]["fidelity_eager"] < 0.9999  # int8 is not silently left at FP32
    fp8 = precisions["fp8"]
    assert fp8["skipped"] == "skipped: no CUDA device" and "8.9" in fp8["probe"]
