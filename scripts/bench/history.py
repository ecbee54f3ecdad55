"""Benchmark of the Arrow checkpoint: append cost per trial, and loading and replaying a long history.

    .venv/bin/python scripts/bench/history.py [--ops 40 500] [--appends 300] [--trials 10000] [--repeats 5]
        [--out runs/bench/history.json]

Part 1: what a run with `checkpoint=` pays per evaluation on top of one without: build
the row, write it and fsync it (the run's `save()`), median and p90 over `--appends`
saves, for spaces of each `--ops` size.
Part 2: a history of `--trials` committed trials (a space of ~4,000 ops, conservative
with every type falling back op by op, stopped by max_trials), written once under
runs/; then, `--repeats` times each: `load_history` of it, and a resumed `tune_space`
that replays the strategy against it and evaluates nothing (the evaluation raises if
called). Medians and spread.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from common import dir_bytes, machine, median_p90, spread_text, write_json

from raytune_inc import AccuracyCriterion, load_history, tune_space
from raytune_inc.history.storage import ArrowStorage
from raytune_inc.records import Evaluation
from raytune_inc.run import TuningRun
from raytune_inc.settings import RunSettings
from raytune_inc.synthetic import random_space


def append_cost(n_ops: int, appends: int) -> dict:
    """The time of one `save()` of one evaluation to a checkpoint: median and p90 over `appends` saves."""
    space = random_space(n_ops, seed=1)
    run = TuningRun(space, lambda c: 1.0, RunSettings(), baseline=0.9)
    with tempfile.TemporaryDirectory() as directory:
        run.use_storage(ArrowStorage(directory, resume=False))
        configs = [space.all_fp32().replace(space.names[: i % n_ops + 1], "bf16") for i in range(appends)]
        times = []
        for i, config in enumerate(configs):
            row = run.dispatch(config, "bf16 op-wise")
            now = time.time()
            run.complete(row, Evaluation(config, 0.9 - i * 1e-6, start=now, end=now, worker="evaluator-0", node="n", device="cpu"))
            start = time.perf_counter()
            run.save()
            times.append((time.perf_counter() - start) * 1e3)
        run.storage.close()
        size = dir_bytes(directory)
    return {"ops": n_ops, "appends": appends, **median_p90(times), "bytes_per_row": size / appends}


class FallbackEverywhere:
    """Every whole-type trial misses the goal (one op of each type is sensitive); every other single op passes."""

    def __init__(self, space):
        self.sensitive = {next(op.name for op in space if op.type == t) for t in {op.type for op in space}}

    def __call__(self, config: dict[str, str]) -> float:
        return 0.5 if any(config[name] != "fp32" for name in self.sensitive) else 1.0


def long_history(directory: Path, trials: int) -> tuple:
    """(space, tune_space arguments) of a history of `trials` committed trials in `directory`, written if missing."""
    n_ops = max(40, int(trials / 2.5))
    space = random_space(n_ops, seed=7)
    args = {"accuracy": AccuracyCriterion(0.01), "max_trials": trials, "workers": 0}
    if not (directory / "run.arrow").exists():
        shutil.rmtree(directory, ignore_errors=True)
        start = time.perf_counter()
        res = tune_space(space, FallbackEverywhere(space), checkpoint=directory, **args)
        print(f"wrote a history of {len(res.trials)} trials on {n_ops} ops in {time.perf_counter() - start:.1f} s", flush=True)
    return space, args


def never(config):
    raise AssertionError("a recorded config was evaluated again")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, nargs="+", default=[40, 500])
    parser.add_argument("--appends", type=int, default=300)
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="runs/bench/history.json")
    args = parser.parse_args()
    out: dict = {"machine": machine("pyarrow"), "append": [], "replay": {}}

    for n_ops in args.ops:
        r = append_cost(n_ops, args.appends)
        out["append"].append(r)
        print(
            f"append, {n_ops} ops: median {r['median_ms']:.3f} ms per evaluation (p90 {r['p90_ms']:.3f} ms), "
            f"{r['bytes_per_row']:.0f} bytes per row on disk",
            flush=True,
        )

    if args.trials:
        directory = Path("runs") / f"history-{args.trials}"
        space, tune_args = long_history(directory, args.trials)
        size = dir_bytes(directory)
        load, replay = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            table = load_history(directory)
            load.append(time.perf_counter() - start)
            start = time.perf_counter()
            res = tune_space(space, never, checkpoint=directory, resume=True, **tune_args)
            replay.append(time.perf_counter() - start)
            assert res.evaluations == 0 and len(res.trials) == args.trials
        out["replay"] = {
            "trials": args.trials,
            "rows": table.num_rows,
            "ops": len(space),
            "bytes": size,
            "load_s": load,
            "resume_s": replay,
        }
        seconds = "{:.3f} s".format
        print(
            f"history of {table.num_rows} rows ({args.trials} trials, {len(space)} ops, {size / 1e6:.1f} MB): "
            f"load_history median {spread_text(load, seconds)}; resume (load, replay, result) median {spread_text(replay, seconds)}",
            flush=True,
        )
    write_json(args.out, out)


if __name__ == "__main__":
    main()
