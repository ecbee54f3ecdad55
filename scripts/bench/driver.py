"""Benchmark of the Ray driver: speculative speedup and driver overhead.

    .venv/bin/python scripts/bench/driver.py [--cost 0.25] [--spaces 3] [--repeats 1] [--sensitive 0.15]
        [--overhead-spaces 5] [--out runs/bench/driver.json]

Part 1: a sleep-cost evaluation (`--cost` s per call) on random spaces of 20 to 40 ops
where most op-wise trials pass; wall time of workers=0, 1, 2, 4, 8 (Ray started once,
before; evaluator start-up is inside each run's wall time and also shown apart), the
speedup over workers=1, wasted evaluations, and the ideal (trials x cost / workers).
Part 2: driver overhead per committed trial with a zero-cost evaluation: (wall time -
start-up) / committed trials, median over spaces.
`--repeats` runs every (space, workers) cell that many times, alternating the worker counts.
`--sensitive` is the fraction of ops whose int8 loss may exhaust the tolerance (see
`raytune_inc.synthetic`); it sets how many trials fail. `--overhead-spaces 0` skips part 2.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics

import ray
from common import machine, median_p90, write_json

from raytune_inc import tune_space
from raytune_inc.synthetic import AdditiveLossEvaluation, random_space

WORKERS = (0, 1, 2, 4, 8)


def commit_intervals_ms(history) -> list[float]:
    """Time between the results of consecutive committed trials: with a zero-cost evaluation, the
    driver's cost per committed trial (actor round trip, bookkeeping, speculation)."""
    rows = sorted((r for r in history.to_pylist() if r["commit_seq"] is not None), key=lambda r: r["commit_seq"])
    ends = [r["end_time"].timestamp() for r in rows]
    return [(b - a) * 1e3 for a, b in zip(ends, ends[1:], strict=False)]


def run_once(n_ops: int, seed: int, workers: int, cost: float, sensitive: float = 0.15) -> dict:
    space = random_space(n_ops, seed=seed)
    evaluate = AdditiveLossEvaluation(space, seed=seed, cost=cost, sensitive=sensitive)
    res = tune_space(space, evaluate, workers=workers)
    trials = len(res.trials)
    return {
        "ops": n_ops,
        "seed": seed,
        "workers": workers,
        "trials": trials,
        "failed": sum(not t.meets for t in res.trials),
        "evaluations": res.evaluations,
        "wasted": res.evaluations - 1 - trials,
        "wall_s": res.wall_time,
        "startup_s": res.startup_time,
        "tuning_s": res.wall_time - res.startup_time,
        "commit_intervals_ms": commit_intervals_ms(res.history),
        "committed": [t.config for t in res.trials],
        "result": res.config,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cost", type=float, default=0.25)
    parser.add_argument("--spaces", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--overhead-spaces", type=int, default=5)
    parser.add_argument("--sensitive", type=float, default=0.15)
    parser.add_argument("--out", default="runs/bench/driver.json")
    args = parser.parse_args()
    report = {"machine": machine("ray", "pyarrow"), "cost_s": args.cost, "sensitive": args.sensitive}
    ray.init(num_cpus=max(8, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)

    sizes = [20 + (20 * i) // max(1, args.spaces - 1) for i in range(args.spaces)] if args.spaces else []
    speed = []
    for (i, n_ops), repeat in itertools.product(enumerate(sizes), range(args.repeats)):
        rows = [run_once(n_ops, i, w, args.cost, args.sensitive) | {"repeat": repeat} for w in WORKERS]
        reference = rows[0]
        for r in rows:
            assert r["committed"] == reference["committed"] and r["result"] == reference["result"], "parallel run differs from sequential"
        w1 = next(r for r in rows if r["workers"] == 1)
        for r in rows:
            r["speedup_vs_w1"] = w1["wall_s"] / r["wall_s"]
            r["ideal_s"] = r["trials"] * args.cost / max(1, r["workers"])
            print(
                f"ops={n_ops:3d} workers={r['workers']} trials={r['trials']:3d} failed={r['failed']:2d} evals={r['evaluations']:3d} "
                f"wasted={r['wasted']:3d} wall={r['wall_s']:6.2f}s startup={r['startup_s']:.2f}s "
                f"ideal={r['ideal_s']:6.2f}s speedup/w1={r['speedup_vs_w1']:.2f}x",
                flush=True,
            )
        speed.extend(rows)

    overhead = {}
    for w in (1, 4) if args.overhead_spaces else ():
        intervals = []
        for seed in range(args.overhead_spaces):
            intervals += run_once(40, 100 + seed, w, 0.0)["commit_intervals_ms"]
        overhead[w] = median_p90(intervals)
        print(
            f"zero-cost evaluation, workers={w}: time per committed trial median {overhead[w]['median_ms']:.2f} ms, "
            f"p90 {overhead[w]['p90_ms']:.2f} ms over {len(intervals)} trials",
            flush=True,
        )

    summary = {}
    for w in WORKERS if speed else ():
        ratios = [r["speedup_vs_w1"] for r in speed if r["workers"] == w]
        summary[w] = statistics.median(ratios)
    if speed:
        print("median speedup over workers=1:", ", ".join(f"w{w}: {v:.2f}x" for w, v in summary.items()))
        for w in (2, 4, 8):
            tuning = [
                statistics.median(b["tuning_s"] for b in speed if b["workers"] == 1 and b["ops"] == a["ops"]) / a["tuning_s"]
                for a in speed
                if a["workers"] == w
            ]
            print(f"workers={w}: tuning time (start-up excluded) speedup over workers=1: median {statistics.median(tuning):.2f}x")
        w0 = [r for r in speed if r["workers"] == 0]
        w1 = [r for r in speed if r["workers"] == 1]
        excess = [b["tuning_s"] / a["wall_s"] - 1 for a, b in zip(w0, w1, strict=True)]
        print(f"workers=1 tuning time vs workers=0 (start-up excluded): median {statistics.median(excess) * 100:+.1f}%")
    for r in speed:
        del r["committed"], r["result"], r["commit_intervals_ms"]
    write_json(args.out, report | {"speed": speed, "speedup_median": summary, "overhead": overhead})
    ray.shutdown()


if __name__ == "__main__":
    main()
