"""Tunings on a small Ray cluster of several nodes on this machine, for tests/test_cluster.py.

    python tests/cluster_job.py WORKDIR [--ops 20] [--seed 3] [--cost 0.3] [--hard]

The cluster (`ray.cluster_utils.Cluster`): a head node without CPUs, so that every evaluator
runs on a worker node, and three worker nodes of 2 CPUs each. Two runs of 4 evaluators, each
started on an idle cluster:

- spread: evaluations of `--cost` / 6 seconds; the history says where each one ran;
- node loss: evaluations of `--cost` seconds; once every evaluator has been busy and a few
  evaluations have ended, the worker node with the most evaluations in flight is removed
  (its processes stopped at once; with `--hard` its raylet is SIGKILLed, and its workers
  notice a moment later), and the run goes on without it.

Every evaluation appends a line to a log in WORKDIR as it starts and as it ends (config
key, Ray node id, evaluator name), so the parent can tell which evaluations were cut off
on the removed node. Run with RAY_TMPDIR set to a directory of its own: the cluster's
files, its address among them, then stay out of any other Ray's way. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import ray
from helpers import LoggedEvaluation, outcome
from ray.cluster_utils import Cluster

from raytune_inc import tune_space
from raytune_inc.records import TuneResult
from raytune_inc.synthetic import random_space

WORKERS = 4
NODE = {"num_cpus": 2, "object_store_memory": 80 * 1024**2}


def read_log(path: Path) -> list[list[str]]:
    """The log's whole lines, split: [event, key, node id, evaluator] (a line being written is left out)."""
    lines = [line.split() for line in path.read_text().split("\n")[:-1]] if path.exists() else []
    return [line for line in lines if len(line) == 4]


def in_flight(lines: list[list[str]]) -> list[tuple[str, str, str]]:
    """(key, node id, evaluator) of the evaluations that started and have not ended."""
    running = Counter(tuple(line[1:]) for line in lines if line[0] == "start")
    running.subtract(tuple(line[1:]) for line in lines if line[0] == "end")
    return [where for where, n in running.items() for _ in range(n)]


def summary(res: TuneResult) -> dict[str, Any]:
    history = res.history.select(["trial_id", "config", "status", "worker", "node", "start_time", "end_time", "error"])
    rows = [{**row, "start_time": row["start_time"].timestamp(), "end_time": row["end_time"].timestamp()} for row in history.to_pylist()]
    return {**outcome(res), "wall_time": res.wall_time, "history": rows}


def wait_until_idle(cpus: float, timeout: float = 60.0) -> None:
    """Wait until all `cpus` of the cluster are free again (the evaluators of an earlier run are gone), so that
    the next run's evaluators are placed on a cluster that is idle as far as every node can tell."""
    deadline = time.monotonic() + timeout
    while ray.available_resources().get("CPU", 0.0) < cpus and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the raylets' views of each other's resources lag a little behind


def remove_busiest_node(cluster: Cluster, log: Path, done: threading.Event, removal: dict[str, Any], hard: bool) -> None:
    """Once every evaluator has been busy and 4 evaluations ended, remove the worker node running the most of them."""
    while not done.is_set():
        lines = read_log(log)
        if len({line[3] for line in lines}) >= WORKERS and sum(line[0] == "end" for line in lines) >= 4:
            break
        time.sleep(0.01)
    else:
        return
    running = in_flight(lines)
    busy = Counter(node for _, node, _ in running)
    evaluators = {line[3]: line[2] for line in lines}  # evaluator -> node id
    hosted = Counter(evaluators.values())
    node = max(cluster.worker_nodes, key=lambda n: (busy[n.node_id], hosted[n.node_id]))
    removal.update(node=node.node_id, evaluators=evaluators, in_flight=[list(w) for w in running if w[1] == node.node_id])
    removal["at"] = time.time()
    cluster.remove_node(node, allow_graceful=not hard)
    removal["remove_s"] = time.time() - removal["at"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("--ops", type=int, default=20)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--cost", type=float, default=0.3)
    parser.add_argument("--hard", action="store_true", help="kill the node's processes at once (SIGKILL), as a crash does")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    space = random_space(args.ops, seed=args.seed)
    out: dict[str, Any] = {}
    started = time.monotonic()
    cluster = Cluster()
    try:
        head = cluster.add_node(num_cpus=0, object_store_memory=NODE["object_store_memory"], include_dashboard=False)
        ray.init(address=cluster.address, log_to_driver=False)
        workers = [cluster.add_node(wait=False, **NODE) for _ in range(3)]  # they start side by side
        cluster.wait_for_nodes(timeout=120)
        out["head"], out["workers"] = head.node_id, [w.node_id for w in workers]
        out["cluster_start_s"] = time.monotonic() - started

        cpus = 3 * NODE["num_cpus"]
        wait_until_idle(cpus)
        spread_log = workdir / "spread.log"
        spread = LoggedEvaluation(space, args.seed, spread_log, args.cost / 6, where=True)
        out["spread"] = summary(tune_space(space, spread, workers=WORKERS))
        out["spread"]["log"] = read_log(spread_log)

        wait_until_idle(cpus)
        loss_log, done, removal = workdir / "node_loss.log", threading.Event(), {}
        remover = threading.Thread(target=remove_busiest_node, args=(cluster, loss_log, done, removal, args.hard), daemon=True)
        remover.start()
        try:
            res = tune_space(space, LoggedEvaluation(space, args.seed, loss_log, args.cost, where=True), workers=WORKERS)
        finally:
            done.set()
            remover.join(timeout=120)
        out["node_loss"] = {**summary(res), "log": read_log(loss_log), "removal": removal}
        lost = [row for row in out["node_loss"]["history"] if row["status"] == "lost"]
        print(
            f"node loss: {len(removal.get('in_flight', []))} evaluations in flight on the removed node, {len(lost)} lost, "
            f"detected {max((row['end_time'] - removal['at'] for row in lost), default=0):.2f} s after the removal began",
            file=sys.stderr,
        )
    finally:
        ray.shutdown()
        cluster.shutdown()
    out["total_s"] = time.monotonic() - started
    print(json.dumps(out))


if __name__ == "__main__":
    main()
