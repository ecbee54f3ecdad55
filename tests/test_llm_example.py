"""The LLM example as a user runs it (scripts/examples/tune_llm.py), on a decoder built from a config and on a
checkpoint loaded as people load one (from_pretrained, safetensors, memory-mapped, low_cpu_mem_usage)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from raytune_inc.examples import decoder

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "examples" / "tune_llm.py"


def run_example(*args: str) -> str:
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_the_decoder_sizes_are_what_they_say():
    for name, billions in (("1b", 0.92), ("0.5b", 0.49), ("0.2b", 0.20)):
        assert abs(decoder.parameter_count(decoder.llama_config(name)) / 1e9 - billions) < 0.01
    config = decoder.llama_config("tiny")
    assert sum(p.numel() for p in decoder.build_decoder(config).parameters()) == decoder.parameter_count(config)


def test_the_example_tunes_a_decoder_in_process(tmp_path):
    out = run_example("--params", "tiny", "--workers", "0", "--max-trials", "3", "--checkpoint", str(tmp_path / "run"))
    assert re.search(r"conservative: 3 trials, 4 evaluations", out), out
    assert re.search(r"#1 +int8_dynamic type-wise acc=\d", out), out
    shares = re.search(r"per-op result: Linear ops (.*)", out).group(1)
    assert "int8" in shares and "/8 " in shares, out
    assert re.search(r"peak memory: this process \d+\.\d\d GiB", out), out


@pytest.mark.slow
def test_the_example_tunes_a_checkpoint_on_ray_evaluators(tmp_path):
    config = decoder.llama_config("tiny")
    model = decoder.build_decoder(config, seed=3)
    model.save_pretrained(tmp_path / "ckpt")  # safetensors, as checkpoints come
    assert (tmp_path / "ckpt" / "model.safetensors").exists()
    out = run_example(
        "--model", str(tmp_path / "ckpt"), "--workers", "2", "--max-trials", "3", "--metric", "kl", "--checkpoint", str(tmp_path / "run")
    )
    assert re.search(r"decoder: 0\.001B parameters", out) and "metric kl" in out, out
    assert re.search(r"conservative: 3 trials", out), out
    # The same checkpoint tuned in-process commits the same trials.
    again = run_example("--model", str(tmp_path / "ckpt"), "--workers", "0", "--max-trials", "3", "--metric", "kl")
    trials = lambda text: re.findall(r"#\d+ .*", text)  # noqa: E731
    assert trials(out) == trials(again) and len(trials(out)) == 3
    torch.testing.assert_close(decoder.build_decoder(config, seed=3).lm_head.weight, model.lm_head.weight)
