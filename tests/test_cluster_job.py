"""A tuning as a Ray job on a real head node (`ray start --head` on loopback), watched through its metrics.

The head node runs in its own process group with its own ports and temp directory, so it is
stopped without touching any other Ray on the machine.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from raytune_inc import load_history

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RAY = str(BIN / "ray")


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class HeadNode:
    """`ray start --head --block` on 127.0.0.1 with fresh ports and token authentication."""

    def __init__(self, temp_dir: Path):
        gcs, dashboard, metrics, agent, agent_grpc, client, runtime_env, node_manager, object_manager = free_ports(9)
        self.address = f"127.0.0.1:{gcs}"
        self.dashboard = f"http://127.0.0.1:{dashboard}"
        self.metrics = f"http://127.0.0.1:{metrics}/metrics"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        self.env.update(
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=secrets.token_hex(32),
            RAY_TMPDIR=str(temp_dir),  # its address file too: a bare ray.init() elsewhere must not find this node
            PYTHONPATH="",
        )
        command = [
            RAY, "start", "--head", "--block", "--disable-usage-stats",
            "--node-ip-address", "127.0.0.1", "--port", str(gcs),
            "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
            "--metrics-export-port", str(metrics),
            "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(agent_grpc),
            "--ray-client-server-port", str(client), "--runtime-env-agent-port", str(runtime_env),
            "--node-manager-port", str(node_manager), "--object-manager-port", str(object_manager),
            "--num-cpus", "3", "--temp-dir", str(temp_dir),
        ]  # fmt: skip
        self.log = open(temp_dir / "head.log", "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def ray(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([RAY, *args], env=self.env, cwd=REPO, capture_output=True, text=True, timeout=timeout)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.process.returncode}: {Path(self.log.name).read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.dashboard}/api/version", timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # it answers (token authentication: 401 without the token)
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"the head node's dashboard did not come up in {timeout} s")

    def scrape(self) -> str:
        with urllib.request.urlopen(self.metrics, timeout=5) as response:
            return response.read().decode()

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self.log.close()


@pytest.fixture(scope="module")
def head_node():
    import tempfile

    # Ray's socket paths live under --temp-dir and must stay short.
    with tempfile.TemporaryDirectory(prefix="rti-", dir="/tmp") as temp:
        node = HeadNode(Path(temp))
        try:
            node.wait_ready()
            yield node
        finally:
            node.stop()


def metric_values(text: str, name: str) -> dict[str, float]:
    """`ray_<name>` samples of a Prometheus scrape: labels -> value."""
    values = {}
    for line in text.splitlines():
        match = re.match(rf"ray_{name}(\{{.*\}})? (\S+)$", line)
        if match:
            values[match.group(1) or ""] = float(match.group(2))
    return values


@pytest.mark.slow
def test_tuning_job_on_a_head_node_reports_metrics(head_node, tmp_path):
    history = tmp_path / "history"
    submission = f"raytune-inc-test-{secrets.token_hex(4)}"
    entrypoint = ["python", "scripts/examples/tune_space.py", "--ops", "16", "--workers", "2", "--cost", "0.1"]
    entrypoint += ["--checkpoint", str(history)]
    # Without --no-wait, `ray job submit` follows the job's logs until it ends.
    submitted = head_node.ray(
        *("job", "submit", "--address", head_node.dashboard, "--working-dir", ".", "--submission-id", submission, "--", *entrypoint),
        timeout=300,
    )
    status = head_node.ray("job", "status", "--address", head_node.dashboard, submission).stdout
    logs = head_node.ray("job", "logs", "--address", head_node.dashboard, submission).stdout
    assert submitted.returncode == 0, f"{submitted.stdout[-3000:]}\n{submitted.stderr[-3000:]}"
    assert re.search(r"succeeded", status, re.IGNORECASE), f"{status}\n{logs[-3000:]}"
    assert "conservative on 16 ops" in logs and "tuned accuracy" in logs, logs[-3000:]

    table = load_history(history)
    committed = sum(s is not None for s in table["commit_seq"].to_pylist())
    evaluated = sum(s in ("ok", "error") for s in table["status"].to_pylist())
    assert committed > 0

    # The driver's last figures reach the node's metrics agent as it shuts down; give the export a moment.
    names = ("raytune_inc_trials_committed_total", "raytune_inc_trials_evaluated_total", "raytune_inc_baseline_accuracy")
    deadline = time.monotonic() + 60
    while True:
        scrape = head_node.scrape()
        found = {name: metric_values(scrape, name) for name in names}
        if sum(found["raytune_inc_trials_committed_total"].values()) >= committed or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert sum(found["raytune_inc_trials_committed_total"].values()) == committed, found
    assert sum(found["raytune_inc_trials_evaluated_total"].values()) == evaluated, found
    assert all('strategy="conservative"' in labels and "stage=" in labels for labels in found["raytune_inc_trials_committed_total"])
    assert list(found["raytune_inc_baseline_accuracy"].values()) == [pytest.approx(0.95)]
    assert metric_values(scrape, "raytune_inc_trial_duration_seconds_count"), "no trial duration histogram"
    rows = table.to_pylist()
    wasted = sum(r["commit_seq"] is None and r["status"] == "ok" for r in rows)
    assert sum(metric_values(scrape, "raytune_inc_trials_wasted_total").values()) == wasted - 1  # the baseline is not wasted

    # The evaluators and the driver's job say what they are.
    actors = json.loads(head_node.ray("list", "actors", "--address", head_node.address, "--format", "json", "--limit", "100").stdout)
    names = sorted(a["name"] for a in actors if a["class_name"] == "Evaluator")
    assert len(names) == 2 and all(re.fullmatch(r"raytune-inc-[0-9a-f]{8}-evaluator-\d+", n) for n in names), names


@pytest.mark.slow
def test_driver_connects_with_ray_address_and_names_its_job(head_node, tmp_path):
    history = tmp_path / "history"
    env = {**head_node.env, "RAY_ADDRESS": head_node.address, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "scripts/examples/tune_space.py", "--ops", "12", "--workers", "2", "--checkpoint", str(history)]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Connecting to existing Ray cluster at address: {head_node.address}" in done.stderr or "Connected to Ray cluster" in done.stderr
    run_id = load_history(history)["run_id"][0].as_py()
    jobs = json.loads(head_node.ray("list", "jobs", "--address", head_node.address, "--format", "json", "--detail").stdout)
    names = [(j.get("metadata") or {}).get("job_name") for j in jobs if j.get("type") == "DRIVER"]
    assert f"raytune-inc conservative {run_id[:8]}" in names, jobs


def test_unreachable_ray_address_fails_in_one_line(tmp_path):
    (port,) = free_ports(1)  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_ADDRESS=f"127.0.0.1:{port}", PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "raytune_inc", "tune", "tests.cli_model:model", "tests.cli_model:accuracy"]
    command += ["--precisions", "bf16", "--workers", "2"]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot reach the Ray cluster at RAY_ADDRESS='127.0.0.1:{port}'" in lines[0], done.stderr


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("http://127.0.0.1:8265", "is a dashboard (job submission) address"),
        ("not an address", "is not a Ray cluster address"),
        ("ray://127.0.0.1", "is not a Ray cluster address"),
    ],
)
def test_bad_ray_addresses_are_named(address, message):
    from raytune_inc.ray_session import check_address

    with pytest.raises(ConnectionError, match=re.escape(message)):
        check_address(address)
    check_address("auto")  # Ray finds the cluster itself
