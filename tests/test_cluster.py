"""Evaluators over the nodes of a Ray cluster: spread over them, and a lost node costs only its in-flight trials."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from helpers import first_time, own_ray_env, reference

from raytune_inc import tune_space
from raytune_inc.synthetic import AdditiveLossEvaluation, random_space

TESTS = Path(__file__).parent
OPS, SEED = 20, 3  # the job's defaults


@pytest.fixture(scope="module")
def cluster_job(tmp_path_factory) -> dict:
    """Run tests/cluster_job.py (a head and three worker nodes on this machine) once; its JSON output."""
    workdir = tmp_path_factory.mktemp("cluster")
    # The cluster's own Ray directory: its address file stays out of any other Ray's way. Short, for Ray's socket paths.
    ray_tmp = tempfile.mkdtemp(prefix="rc-", dir="/tmp" if os.path.isdir("/tmp") else None)
    env = own_ray_env(RAY_TMPDIR=ray_tmp)
    try:
        out = subprocess.run(
            [sys.executable, str(TESTS / "cluster_job.py"), str(workdir)], capture_output=True, text=True, env=env, timeout=300
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert out.returncode == 0, out.stderr[-5000:]
    print(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_evaluators_spread_over_the_worker_nodes_and_commit_what_the_sequential_run_commits(cluster_job):
    run, ref = cluster_job["spread"], reference(OPS, SEED)
    assert run["trials"] == ref["trials"] and run["config"] == ref["config"]
    ok = [row for row in run["history"] if row["status"] == "ok"]
    assert {row["status"] for row in run["history"]} <= {"ok", "cancelled"}
    nodes = {row["node"] for row in ok}
    assert nodes <= set(cluster_job["workers"]), "an evaluation ran off the worker nodes (the head has no CPUs)"
    assert len(nodes) >= 2, f"the evaluations ran on {len(nodes)} node(s) only"
    # The node column is the evaluator's Ray node id: the one the evaluation itself saw.
    logged = {(key, worker): node for event, key, node, worker in run["log"] if event == "start"}
    assert all(logged[(row["config"], row["worker"])] == row["node"] for row in ok)


@pytest.mark.slow
def test_removing_a_node_mid_run_costs_only_its_in_flight_evaluations(cluster_job):
    run, ref = cluster_job["node_loss"], reference(OPS, SEED)
    removal, workers = run["removal"], cluster_job["workers"]
    assert "remove_s" in removal, "the run finished before a node was removed"
    removed = removal["node"]
    assert removed in workers
    # SPREAD: the first 4 evaluators sit on all three worker nodes (packing them would leave one empty).
    assert len(removal["evaluators"]) == 4 and set(removal["evaluators"].values()) == set(workers)

    # The run commits what the sequential run commits, whatever the moment of the removal.
    assert run["trials"] == ref["trials"] and run["config"] == ref["config"]

    evaluator_node = {worker: node for _, _, node, worker in run["log"]}
    evaluator_node.update({row["worker"]: row["node"] for row in run["history"] if row["node"]})
    lost = [row for row in run["history"] if row["status"] == "lost"]
    assert {row["status"] for row in run["history"]} <= {"ok", "cancelled", "lost"}
    # Lost rows only on the removed node's evaluators, at most one each: the evaluation it held when the node went.
    assert all(evaluator_node[row["worker"]] == removed and "died" in row["error"] for row in lost), lost
    assert max(Counter(row["worker"] for row in lost).values(), default=0) <= 1
    # Each evaluation cut off on the removed node (started, never ended) is a lost row, or cancelled if the run ended first.
    started = Counter((key, worker) for event, key, node, worker in run["log"] if event == "start" and node == removed)
    started.subtract((key, worker) for event, key, node, worker in run["log"] if event == "end" and node == removed)
    cut_off = {where for where, n in started.items() if n > 0}
    assert cut_off <= {(row["config"], row["worker"]) for row in run["history"] if row["status"] in ("lost", "cancelled")}
    # The evaluators started after the removal (replacements of the dead ones) run on the remaining nodes.
    replacements = {worker for worker in evaluator_node if worker not in removal["evaluators"]}
    assert all(evaluator_node[worker] != removed for worker in replacements)
    print(
        f"removed node {removed[:8]}: {len(removal['in_flight'])} in flight, {len(lost)} lost, "
        f"{len(replacements)} replacement evaluator(s) ran; remove_node took {removal['remove_s']:.2f} s"
    )


def _die_once(marker: str, evaluate: AdditiveLossEvaluation) -> AdditiveLossEvaluation:
    """Unpickling: the first evaluator to load the evaluation function dies, as one on a node just lost does."""
    if first_time(marker):
        os._exit(1)
    return evaluate


class DiesOnLoad:
    def __init__(self, marker: Path, evaluate: AdditiveLossEvaluation):
        self.marker = str(marker)
        self.evaluate = evaluate

    def __call__(self, config: dict[str, str]) -> float:
        return self.evaluate(config)

    def __reduce__(self):
        return _die_once, (self.marker, self.evaluate)


@pytest.mark.usefixtures("ray_local")
def test_an_evaluator_that_dies_while_starting_is_started_again(tmp_path):
    space = random_space(8, seed=2)
    evaluate = AdditiveLossEvaluation(space, seed=2)
    res = tune_space(space, DiesOnLoad(tmp_path / "died", evaluate), workers=2)
    assert (tmp_path / "died").exists()  # one evaluator died
    assert "lost" not in res.history["status"].to_pylist()  # it died before it held any work
    sequential = tune_space(space, evaluate, workers=0)
    assert [t.config for t in res.trials] == [t.config for t in sequential.trials] and res.config == sequential.config
