"""Ray Tune vs raytune-inc: per-trial overhead on the same configs.

    .venv/bin/python scripts/bench/ray_tune_compare.py [--ops 30] [--seed 0] [--costs 0 0.25] [--workers 1 4] [--repeats 3]
        [--out runs/bench/ray_tune.json]

Needs Ray Tune: `pip install -e ".[bench]"`.

**The work.** A random space (`random_space(ops, seed)`) and its `AdditiveLossEvaluation`. raytune-inc's
conservative strategy, run once in-process (`workers=0`), gives the committed trials: N configs (N = 32 with
the defaults, 30 ops and seed 0, so the 0.25 s, 1-worker cell needs 8 s of evaluation per run and the default
run takes a few minutes). That list is what Ray Tune runs, one trial per config. Then, for each evaluation
cost (seconds of sleep per call) and each number of workers:

- **Ray Tune**: `tune.Tuner` over exactly those N configs, timed from the Tuner's construction to the end of
  `fit()` (what a user's call costs; construction is a few ms of it). The config list is a one-dimensional
  grid search over each config's canonical key (one character per op, `Config.key()`), so Tune makes exactly
  one trial per config, in list order, with a short trial name; the function trainable rebuilds the config
  dict (op name -> precision) from the key, calls the same evaluation and reports `{"accuracy": ...}` once,
  with the evaluation's start and end time. A grid search is the most faithful way to hand Tune a fixed list:
  `BasicVariantGenerator(points_to_evaluate=...)` needs `num_samples` to match the list and merges each point
  into the param space, and a config dict as a parameter value would be copied into every trial name and result.
  Settings (what a user who wants a fixed list run fast would set; nothing of it changes what is evaluated):
  `TuneConfig(num_samples=1, max_concurrent_trials=workers, reuse_actors=True)`: at most `workers` trials at
  once, and a finished trial's actor runs the next trial instead of a new actor process being started per
  trial (raytune-inc likewise keeps its evaluator actors for the whole run; `--no-reuse-actors` measures
  Tune's default, a fresh actor per trial); `tune.with_resources(trainable, {"cpu": 1})`, as each of our
  evaluators takes one CPU; `RunConfig(storage_path=<temporary dir>, verbose=0, log_to_file=False,
  callbacks=[])`: no progress output, no stdout/stderr capture to files, no user callbacks; the environment
  variable `TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1` drops the CSV, JSON and TensorBoard loggers Tune otherwise
  adds to every run (the results are read from the ResultGrid, in memory); `RAY_AIR_NEW_OUTPUT=0`: Tune's
  legacy output, which `verbose=0` silences (the new engine still prints each experiment's set-up box);
  `TUNE_MAX_PENDING_TRIALS_PG=workers`: no more placement groups staged than can run;
  `RAY_CHDIR_TO_TRIAL_DIR=0`: trials do not change into their trial directory. No checkpoints are reported,
  so `CheckpointConfig` has nothing to do and is left at its default. Left at their defaults:
  `TUNE_RESULT_BUFFER_LENGTH` (1; buffering only batches several results of one trial, and each trial reports
  once) and `TUNE_GLOBAL_CHECKPOINT_S` ("auto": the experiment state is saved at most every 10 s, so at the
  start and end of runs as short as these).
- **raytune-inc**: `tune_space(space, evaluation, workers=workers)`: the strategy itself, which commits the
  same N configs (checked), after the baseline evaluation, and at 4 workers also runs speculative evaluations
  that may not be committed.

Ray is started once, as driver.py does, and each tool runs once, unrecorded, before the
measurements (the first run in a process pays one-off costs: imports and registrations in Ray's workers).
Each cell is repeated `--repeats` times; within a repeat both tools run, Ray Tune first in odd repeats and
raytune-inc first in even ones. The table has the median over repeats and the min-max spread of the wall time.

**Figures.** Both tools' evaluation start and end times are taken the same way, around the evaluation call in
the worker (Ray Tune: in the trainable; raytune-inc: its history's start_time / end_time). *ideal* is the
time the evaluations themselves need at that concurrency, `evaluations x cost / workers` (for raytune-inc the
evaluations that finished: baseline and speculative ones included). *per trial* = (wall - ideal) / trials (at
cost 0: wall / trials). *start-up* = from the call to the first evaluation's start (raytune-inc's own
`startup_time`, to the first dispatch, is in `raw` as `startup_reported_s`). *steady per trial* leaves
start-up and tear-down out: at cost 0 the median time between consecutive results (raytune-inc: between
committed trials, `commit_intervals_ms` as in driver.py; Ray Tune: between trial ends, in
time order); at cost > 0, (last result's end - first evaluation's start - ideal) / trials. *tear-down* is
from the last result (raytune-inc: the last committed one) to the call's return. `raw` also has `processes`,
how many worker processes ran evaluations (Ray Tune: distinct trial pids; raytune-inc: distinct evaluators),
`peak_concurrency`, the most evaluations that ran at the same time, and `load_avg_1m`, the machine's
1-minute load average just before the run (other jobs on the machine included).

The two do not do the same job: Ray Tune is handed the whole list up front and may run any trial at any time,
where raytune-inc's strategy finds the list one result at a time (each trial depends on the ones before), so
with several workers it can only overlap evaluations by speculating on outcomes.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time

import ray
from common import command_line, machine, spread_text, write_json

from raytune_inc import tune_space
from raytune_inc.space import PRECISION_CODES
from raytune_inc.synthetic import AdditiveLossEvaluation, random_space

try:
    from ray import tune
except ImportError as exc:  # ray without its tune extra: main() says so, after --help
    tune, TUNE_MISSING = None, str(exc)

TITLE = "Ray Tune vs raytune-inc: per-trial overhead on the same configs"
COLUMNS = [
    "cost s",
    "workers",
    "tool",
    "trials",
    "evaluations",
    "wall s (median, min – max)",
    "ideal s",
    "start-up s",
    "tear-down s",
    "per trial ms",
    "steady per trial ms",
]
TUNE, OURS = "Ray Tune", "raytune-inc"
PRECISION_OF_CODE = {code: precision for precision, code in PRECISION_CODES.items()}


def config_key(config: dict[str, str], names: list[str]) -> str:
    return "".join(PRECISION_CODES[config[name]] for name in names)


def median_interval_ms(ends: list[float]) -> float | None:
    """Median time between consecutive results (`ends` in seconds, in the order they were produced)."""
    gaps = [(b - a) * 1e3 for a, b in zip(ends, ends[1:], strict=False)]
    return statistics.median(gaps) if gaps else None


def peak_concurrency(starts: list[float], ends: list[float]) -> int:
    """The most evaluations that were running at the same time."""
    events = sorted([(t, 1) for t in starts] + [(t, -1) for t in ends])  # an end sorts before a start at the same time
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def figures(wall: float, call_start: float, starts: list[float], ends: list[float], steady_ends: list[float], **m) -> dict:
    """The derived figures of one measurement; `starts`/`ends` are the finished evaluations' epoch times,
    `steady_ends` the result times whose gaps give the steady per-trial cost at cost 0."""
    cost, workers, trials = m["cost"], m["workers"], m["trials"]
    ideal = m["evaluations_done"] * cost / workers
    first, last = min(starts), max(steady_ends)
    span_ms = (last - first - ideal) / trials * 1e3
    interval_ms = median_interval_ms(steady_ends)
    return {
        **m,
        "wall_s": wall,
        "peak_concurrency": peak_concurrency(starts, ends),
        "ideal_s": ideal,
        "startup_s": first - call_start,
        "teardown_s": wall - (last - call_start),
        "per_trial_ms": (wall - ideal) / trials * 1e3,
        "steady_per_trial_ms": interval_ms if cost == 0 and interval_ms is not None else span_ms,
        "steady_span_ms": span_ms,
        "steady_median_interval_ms": interval_ms,
    }


def run_ray_tune(names: list[str], keys: list[str], evaluate: AdditiveLossEvaluation, workers: int, reuse_actors: bool) -> tuple:
    """Run the configs `keys` as Ray Tune trials; returns the measurement and each key's accuracy."""

    def trial(config: dict) -> None:
        precisions = map(PRECISION_OF_CODE.__getitem__, config["key"])
        start = time.time()
        accuracy = evaluate(dict(zip(names, precisions, strict=True)))
        tune.report({"accuracy": accuracy, "eval_start": start, "eval_end": time.time(), "pid": os.getpid()})

    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(workers)
    with tempfile.TemporaryDirectory(prefix="ray_tune_compare-") as storage:
        call_start, t0 = time.time(), time.perf_counter()
        tuner = tune.Tuner(
            tune.with_resources(trial, {"cpu": 1}),
            param_space={"key": tune.grid_search(keys)},
            tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=workers, reuse_actors=reuse_actors),
            run_config=tune.RunConfig(name="ray_tune_compare", storage_path=storage, verbose=0, log_to_file=False, callbacks=[]),
        )
        built = time.perf_counter() - t0
        grid = tuner.fit()
        wall = time.perf_counter() - t0
    if grid.errors:
        raise RuntimeError(f"{len(grid.errors)} Ray Tune trials failed; the first: {grid.errors[0]}")
    results = [grid[i] for i in range(len(grid))]
    accuracies = {r.config["key"]: r.metrics["accuracy"] for r in results}
    assert len(results) == len(keys) and set(accuracies) == set(keys), f"Ray Tune ran {len(results)} trials, not the {len(keys)} configs"
    starts = [r.metrics["eval_start"] for r in results]
    ends = sorted(r.metrics["eval_end"] for r in results)
    m = dict(tool=TUNE, cost=evaluate.cost, workers=workers, trials=len(results), evaluations=len(results), evaluations_done=len(results))
    processes = len({r.metrics["pid"] for r in results})
    return figures(wall, call_start, starts, ends, ends, **m, processes=processes, build_s=built, reuse_actors=reuse_actors), accuracies


def run_ours(space, evaluate: AdditiveLossEvaluation, workers: int, reference: list[dict]) -> dict:
    call_start = time.time()
    res = tune_space(space, evaluate, workers=workers)
    assert [t.config for t in res.trials] == reference, f"workers={workers} committed other trials than workers=0"
    rows = res.history.to_pylist()
    done = [r for r in rows if r["status"] in ("ok", "error")]
    committed = sorted((r for r in rows if r["commit_seq"] is not None), key=lambda r: r["commit_seq"])
    m = dict(
        tool=OURS,
        cost=evaluate.cost,
        workers=workers,
        trials=len(res.trials),
        evaluations=res.evaluations,
        evaluations_done=len(done),
    )
    return figures(
        res.wall_time,
        call_start,
        [r["start_time"].timestamp() for r in done],
        [r["end_time"].timestamp() for r in done],
        [r["end_time"].timestamp() for r in committed],  # commit_intervals_ms of driver.py
        **m,
        processes=len({r["worker"] for r in done}),
        startup_reported_s=res.startup_time,
        wasted=len(done) - 1 - len(res.trials),
    )


def fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def summary_row(ms: list[dict]) -> list[str]:
    def med(key):
        values = [m[key] for m in ms if m[key] is not None]
        return statistics.median(values) if values else None

    walls = [m["wall_s"] for m in ms]
    m0 = ms[0]
    return [
        f"{m0['cost']:g}",
        str(m0["workers"]),
        m0["tool"],
        str(m0["trials"]),
        fmt(med("evaluations_done"), 0),
        spread_text(walls, "{:.2f}".format),
        f"{med('ideal_s'):.2f}",
        f"{med('startup_s'):.2f}",
        f"{max(0.0, med('teardown_s')):.2f}",  # raytune-inc's is a few ms below 0: its wall time is taken on another clock
        fmt(med("per_trial_ms")),
        fmt(med("steady_per_trial_ms")),
    ]


def print_row(cells: list[str], widths: list[int]) -> None:
    print("  ".join(c.rjust(w) if i != 2 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))), flush=True)


def compare(label: str, ours: float, tune: float, unit: str) -> str:
    """One figure of both tools in words, saying plainly which is higher."""
    digits = 2 if unit == "s" else 1
    text = f"{label} {ours:.{digits}f} {unit} (raytune-inc) vs {tune:.{digits}f} {unit} (Ray Tune)"
    if ours <= 0 or tune <= 0:
        return text
    if ours <= tune:
        return f"{text}, {tune / ours:.1f}x less"
    return f"{text}: raytune-inc loses, {ours / tune:.1f}x more"


def cell_notes(cost: float, workers: int, tune_ms: list[dict], ours_ms: list[dict]) -> list[str]:
    def med(ms, key):
        return statistics.median(m[key] for m in ms)

    where = f"cost {cost:g} s, {workers} worker{'s' if workers > 1 else ''}"
    tw, ow = med(tune_ms, "wall_s"), med(ours_ms, "wall_s")
    if ow <= tw:
        wall = f"raytune-inc is {tw / ow:.1f}x faster in wall time ({ow:.2f} s vs Ray Tune's {tw:.2f} s)"
    else:
        wall = f"raytune-inc loses: Ray Tune is {ow / tw:.1f}x faster in wall time ({tw:.2f} s vs raytune-inc's {ow:.2f} s)"
    parts = [
        compare(label, med(ours_ms, key), med(tune_ms, key), unit)
        for label, key, unit in (
            ("per trial", "per_trial_ms", "ms"),
            ("start-up", "startup_s", "s"),
            ("steady per trial", "steady_per_trial_ms", "ms"),
        )
    ]
    notes = [f"{where}: {wall}; {', '.join(parts)}."]
    for tool, ms in ((TUNE, tune_ms), (OURS, ours_ms)):
        peak = max(m["peak_concurrency"] for m in ms)
        if workers > 1 and peak < workers:
            processes = max(m["processes"] for m in ms)
            notes.append(
                f"{where}: {tool} never ran more than {peak} evaluation{'s' if peak > 1 else ''} at once (at most {processes} "
                f"worker process{'es' if processes > 1 else ''} ran any), though {workers} were allowed."
            )
        teardown = med(ms, "teardown_s")
        if teardown > 1:
            why = " (at the end Tune waits up to 5 s for its trial actors to stop, those still starting included)" if tool == TUNE else ""
            notes.append(f"{where}: {tool}'s call returned {teardown:.2f} s after its last result{why}.")
    if workers > 1 and cost > 0:
        ideal_tune, evals = med(tune_ms, "ideal_s"), med(ours_ms, "evaluations_done")
        notes.append(
            f"{where}: Ray Tune may run the known list {workers} at a time (ideal {ideal_tune:.2f} s), while raytune-inc's strategy "
            f"finds each trial from the previous results and overlaps them only by speculation ({evals:.0f} evaluations for "
            f"{ours_ms[0]['trials']} trials and the baseline)."
        )
    return notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=30, help="ops in the random space (30: 32 trials with seed 0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--costs", type=float, nargs="+", default=[0.0, 0.25], help="seconds of sleep per evaluation")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-reuse-actors", dest="reuse_actors", action="store_false", help="Ray Tune: a new actor per trial")
    parser.add_argument("--out", default="runs/bench/ray_tune.json")
    args = parser.parse_args()
    if args.repeats < 1 or any(w < 1 for w in args.workers) or any(c < 0 for c in args.costs):
        parser.error("--repeats and --workers must be >= 1, --costs >= 0")
    if tune is None:
        raise SystemExit(f'Ray Tune is not installed ({TUNE_MISSING}); install it with: pip install -e ".[bench]"')
    out = {"part": "ray_tune", "title": TITLE, "command": command_line(), "machine": machine("ray", "torch")}

    # Read by Ray Tune in this process when a Tuner runs, and by the trial actors (RAY_CHDIR_TO_TRIAL_DIR,
    # hence before Ray starts its worker processes).
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"
    # Without the file loggers, the ResultGrid warns for every trial that it found no result files to read a
    # metrics table from; the trials' results are in memory all the same.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    logging.getLogger("ray.tune.tune").setLevel(logging.WARNING)  # an INFO line per run: where the experiment state went
    ray.init(num_cpus=max(8, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)
    try:
        space = random_space(args.ops, seed=args.seed)
        names = list(space.names)
        res = tune_space(space, AdditiveLossEvaluation(space, seed=args.seed), workers=0)
        reference = [t.config for t in res.trials]
        keys = [config_key(c, names) for c in reference]
        expected = {k: t.accuracy for k, t in zip(keys, res.trials, strict=True)}
        assert len(set(keys)) == len(keys), "the strategy committed a config twice"
        print(f"{args.ops} ops, seed {args.seed}: {len(keys)} committed trials (workers=0), the list Ray Tune runs", flush=True)

        warm = AdditiveLossEvaluation(space, seed=args.seed)
        warm_tune, _ = run_ray_tune(names, keys, warm, 1, args.reuse_actors)
        warm_ours = run_ours(space, warm, 1, reference)
        warm_line = f"Ray Tune {warm_tune['wall_s']:.2f} s, raytune-inc {warm_ours['wall_s']:.2f} s"
        print(f"warm-up (not in the table), cost 0, 1 worker: {warm_line}\n", flush=True)

        widths = [max(len(c), 8) for c in COLUMNS]
        widths[2], widths[5] = 11, 24
        print_row(COLUMNS, widths)
        raw, rows = [], []
        notes = [f"The first run of each tool in the process (a warm-up, cost 0, 1 worker, not in the table) took: {warm_line}."]
        for cost in args.costs:
            evaluate = AdditiveLossEvaluation(space, seed=args.seed, cost=cost)
            for workers in args.workers:
                cell = {TUNE: [], OURS: []}
                for repeat in range(1, args.repeats + 1):
                    order = (TUNE, OURS) if repeat % 2 else (OURS, TUNE)
                    for tool in order:
                        load = os.getloadavg()[0]  # the machine's load just before the run (other jobs included)
                        if tool == TUNE:
                            m, accuracies = run_ray_tune(names, keys, evaluate, workers, args.reuse_actors)
                            assert accuracies == expected, "Ray Tune's accuracies differ from raytune-inc's for the same configs"
                        else:
                            m = run_ours(space, evaluate, workers, reference)
                        m["repeat"] = repeat
                        m["load_avg_1m"] = load
                        cell[tool].append(m)
                        raw.append(m)
                for tool in (TUNE, OURS):
                    rows.append(summary_row(cell[tool]))
                    print_row(rows[-1], widths)
                notes += cell_notes(cost, workers, cell[TUNE], cell[OURS])
    finally:
        ray.shutdown()

    keys = list(dict.fromkeys(k for m in raw for k in m))  # the same keys in every row (None where a tool has no such figure)
    raw = [{k: m.get(k) for k in keys} for m in raw]
    print()
    for note in notes:
        print("-", note)
    write_json(args.out, out | {"columns": COLUMNS, "rows": rows, "notes": notes, "raw": raw})
    print(f"\nwritten to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
