"""The `raytune-inc` command end to end, in subprocesses: tune (on Ray, then resumed in-process),
history, report, the progress line, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from raytune_inc import load_history

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # every test runs the command in a fresh interpreter (with torch), the first one on Ray

MODEL = ["tests.cli_model:model", "tests.cli_model:accuracy", "--calib", "tests.cli_model:calibration"]


def cli(*args: str, progress: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "RAYTUNE_INC_PROGRESS"}
    env["PYTHONPATH"] = str(REPO)
    if progress is not None:
        env["RAYTUNE_INC_PROGRESS"] = progress
    return subprocess.run([sys.executable, "-m", "raytune_inc", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One tuning on 2 Ray evaluators, with its history and saved model."""
    directory = tmp_path_factory.mktemp("cli")
    history, saved = directory / "history", directory / "model.pt"
    done = cli(
        "tune",
        *MODEL,
        "--precisions",
        "int8",
        "bf16",
        "--workers",
        "2",
        "--checkpoint",
        str(history),
        "--save-model",
        str(saved),
        "--save",
        str(directory / "tuned"),
        "--example-inputs",
        "tests.cli_model:example",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return history, saved, done.stdout


def test_tune_prints_the_result_and_saves_the_tuned_model(tuned):
    history, saved, out = tuned
    table = load_history(history)
    committed = sum(s is not None for s in table["commit_seq"].to_pylist())
    assert re.search(rf"conservative: {committed} trials committed, {table.num_rows} evaluations, stopped: finished", out), out
    config = json.loads(out[out.index("{") : out.rindex("}") + 1])
    assert set(config) == {"0", "2", "4"} and set(config.values()) <= {"fp32", "int8", "bf16"}
    accuracy = float(re.search(r"tuned accuracy (\S+);", out).group(1))
    from tests.cli_model import accuracy as eval_fn

    model = torch.load(saved, weights_only=False)
    assert eval_fn(model) == pytest.approx(accuracy, abs=1e-6)
    from raytune_inc import load
    from tests.cli_model import model as fp32_model

    assert eval_fn(load(saved.parent / "tuned", fp32_model())) == pytest.approx(accuracy, abs=1e-6)  # --save: no pickle
    assert re.search(r"latency on cpu, median of \d+ calls: eager .* ms FP32 -> .* ms tuned .*compiled", out), out
    assert re.search(r"size .* MiB FP32 -> .* MiB tuned", out), out


def test_resume_of_a_finished_history_evaluates_nothing_and_gives_the_same_result(tuned):
    history, _, out = tuned
    rows = load_history(history).num_rows
    args = ("--precisions", "int8", "bf16", "--workers", "0", "--checkpoint", str(history), "--resume")
    done = cli("tune", *MODEL, *args, "--example-inputs", "tests.cli_model:example")
    assert done.returncode == 0, done.stderr[-3000:]
    assert load_history(history).num_rows == rows
    assert "0 evaluations" in done.stdout

    def config(text):  # the per-op result, as JSON
        return json.loads(text[text.index("{") : text.index("}") + 1])

    assert config(done.stdout) == config(out)


def test_history_and_report_commands(tuned, tmp_path):
    history, _, _ = tuned
    table = load_history(history)
    done = cli("history", str(history))
    assert done.returncode == 0, done.stderr
    assert table["run_id"][0].as_py() in done.stdout
    assert "latency, compiled" in done.stdout and "model size" in done.stdout
    out = tmp_path / "report" / "run.html"
    done = cli("report", str(history), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out) and out.read_text().count("<svg") == 2
    assert "latency, compiled" in out.read_text()  # the tuned model as deployed, in the report too


def test_progress_line_only_when_asked_or_on_a_terminal(tmp_path):
    args = ("tune", *MODEL, "--precisions", "bf16", "--workers", "0")
    quiet = cli(*args)
    assert quiet.returncode == 0 and "committed," not in quiet.stderr, quiet.stderr
    shown = cli(*args, progress="1")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stderr.split("\r")
    live = r"raytune-inc conservative: \d+ committed, [01] in flight, \d+ ahead, (baseline pending|best)"
    assert any(re.search(live, line) for line in lines), lines
    final = r"raytune-inc conservative: \d+ committed, 0 wasted, best \S+ \(baseline 1\.0000, goal 0\.9900\)"
    assert re.search(final, lines[-1]), lines[-1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("tune", "no_such_module:model", "tests.cli_model:accuracy"), "'no_such_module:model': cannot import module 'no_such_module'"),
        (("tune", "tests.cli_model:nope", "tests.cli_model:accuracy"), "module 'tests.cli_model' has no attribute 'nope'"),
        (("tune", "tests.cli_model", "tests.cli_model:accuracy"), "model must be given as module:name, got 'tests.cli_model'"),
        (("tune", "tests.cli_model:NOT_A_MODEL", "tests.cli_model:accuracy"), "is a int, not a torch.nn.Module"),
        (("tune", "tests.cli_model:model", "tests.cli_model:accuracy"), "int8 needs calibration data"),
        (
            ("tune", *MODEL, "--workers", "0", "--eval-timeout", "-1"),
            "ValueError: eval_timeout must be the seconds one evaluation may take",
        ),
        (("history", "/nonexistent/history"), "history directory '/nonexistent/history' does not exist"),
        (("report", "tests"), "no history in tests: no run.arrow in it"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_1(args, message):
    done = cli(*args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1 and message in lines[0], done.stderr
