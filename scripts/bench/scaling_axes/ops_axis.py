"""scaling.py's ops axis: a random space of each size, the zero-cost `AdditiveLossEvaluation`, conservative; per size
and repeat the in-process run's time per trial (with and without a checkpoint), the history append, the driver's CPU
on the virtual clock, and on Ray the time between commits at 1 and 4 workers; memory once per size. Its table and
notes."""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from pathlib import Path

from common import dir_bytes, rss_bytes, spread_text
from driver import commit_intervals_ms
from history import append_cost

from raytune_inc import tune_space
from raytune_inc.run import TuningRun
from raytune_inc.settings import RunSettings
from raytune_inc.simulation import simulate
from raytune_inc.synthetic import AdditiveLossEvaluation, random_space

from .measure import MB, Raw, fmt_ms, python_peak

PRECISIONS = ("bf16", "fp16", "int8")


def problem(n_ops: int):
    space = random_space(n_ops, seed=0)
    return space, AdditiveLossEvaluation(space, seed=0)


def run_in_process(n_ops: int, max_trials: int, checkpoint: Path | None = None):
    space, evaluate = problem(n_ops)
    start = time.perf_counter()
    res = tune_space(space, evaluate, max_trials=max_trials, workers=0, checkpoint=checkpoint)
    return res, time.perf_counter() - start


def run_simulated(n_ops: int, max_trials: int, workers: int = 4) -> tuple[TuningRun, float, float]:
    space, evaluate = problem(n_ops)
    run = TuningRun(space, evaluate, RunSettings(precisions=PRECISIONS, max_trials=max_trials))
    wall, cpu = time.perf_counter(), time.thread_time()
    simulate(run, workers)
    return run, time.thread_time() - cpu, time.perf_counter() - wall


def ops_in_process(n_ops: int, repeat: int, max_trials: int, appends: int, raw: Raw, reference: dict) -> None:
    gc.collect()
    before = rss_bytes()
    res, wall = run_in_process(n_ops, max_trials)
    grown = rss_bytes() - before
    trials = len(res.trials)
    if res.stop_reason != "finished":
        print(f"  note: {n_ops} ops stopped by {res.stop_reason} after {trials} trials", flush=True)
    reference[n_ops] = ([t.config for t in res.trials], res.config)
    add = lambda metric, value, unit: raw.add("ops", n_ops, trials, repeat, metric, value, unit)  # noqa: E731
    add("trials", trials, "trials")
    add("evaluations", res.evaluations, "evaluations")
    add("finished", float(res.stop_reason == "finished"), "1 if the strategy finished, 0 if max_trials stopped it")
    add("in_process_per_trial", wall / trials * 1e3, "ms")
    add("in_process_interval", statistics.median(commit_intervals_ms(res.history)), "ms")
    if repeat == 0:
        add("rss_growth_in_process", grown / MB, "MB")
    del res

    with tempfile.TemporaryDirectory() as directory:
        res, wall = run_in_process(n_ops, max_trials, Path(directory))
        add("in_process_checkpoint_per_trial", wall / trials * 1e3, "ms")
        add("history_bytes_per_evaluation", dir_bytes(Path(directory)) / res.evaluations, "bytes")
        del res
    add("history_append_per_evaluation", append_cost(n_ops, appends)["median_ms"], "ms")

    run, cpu, _ = run_simulated(n_ops, max_trials)
    assert [t.config for t in run.path.trials] == reference[n_ops][0], "the simulated 4-worker run committed other trials"
    add("driver_cpu_per_trial_4_virtual", cpu / trials * 1e3, "ms")
    del run

    if repeat == 0:
        _, peak = python_peak(lambda: run_in_process(n_ops, max_trials)[0].evaluations)
        add("python_peak_in_process", peak / MB, "MB")
        _, peak = python_peak(lambda: run_simulated(n_ops, max_trials)[1])
        add("python_peak_simulated_4", peak / MB, "MB")


def ops_ray(n_ops: int, repeat: int, max_trials: int, raw: Raw, reference: dict) -> None:
    space, evaluate = problem(n_ops)
    for workers in (1, 4):
        res = tune_space(space, evaluate, max_trials=max_trials, workers=workers)
        committed, result = reference[n_ops]
        assert [t.config for t in res.trials] == committed and res.config == result, f"the {workers}-worker run differs from workers=0"
        intervals = commit_intervals_ms(res.history)
        trials = len(res.trials)
        raw.add("ops", n_ops, trials, repeat, f"ray_{workers}_per_trial", statistics.median(intervals), "ms")
        tail = intervals[-max(1, len(intervals) // 10) :]
        raw.add("ops", n_ops, trials, repeat, f"ray_{workers}_per_trial_last_tenth", statistics.median(tail), "ms")
        tuning = res.wall_time - res.startup_time
        raw.add("ops", n_ops, trials, repeat, f"ray_{workers}_tuning_time", tuning, "s")
        raw.add("ops", n_ops, trials, repeat, f"ray_{workers}_mean_per_trial", tuning / trials * 1e3, "ms")
        raw.add("ops", n_ops, trials, repeat, f"ray_{workers}_wasted", res.evaluations - 1 - trials, "evaluations")
        del res


OPS_COLUMNS = [
    ("ops", None),
    ("committed trials", "trials"),
    ("workers=0, wall / trials (ms)", "in_process_per_trial"),
    ("workers=0, median between commits (ms)", "in_process_interval"),
    ("Ray 1 worker, per trial (ms)", "ray_1_per_trial"),
    ("Ray 4 workers, per trial (ms)", "ray_4_per_trial"),
    ("Ray 4 workers, last tenth of trials (ms)", "ray_4_per_trial_last_tenth"),
    ("Ray 4 workers, tuning time / trials (ms)", "ray_4_mean_per_trial"),
    ("driver CPU at 4 workers, virtual clock, per trial (ms)", "driver_cpu_per_trial_4_virtual"),
    ("workers=0 with checkpoint, per trial (ms)", "in_process_checkpoint_per_trial"),
    ("history append per evaluation (ms)", "history_append_per_evaluation"),
    ("history on disk per evaluation (bytes)", "history_bytes_per_evaluation"),
    ("Python peak, workers=0 run (MB)", "python_peak_in_process"),
    ("Python peak, 4 virtual workers (MB)", "python_peak_simulated_4"),
    ("RSS growth, first workers=0 run (MB)", "rss_growth_in_process"),
]


def ops_rows(sizes: list[int], raw: Raw) -> list[list[str]]:
    rows = []
    for n in sizes:
        row = [str(n)]
        for _, metric in OPS_COLUMNS[1:]:
            values = raw.values("ops", "ops", n, metric)
            if not values:
                row.append("–")
            elif metric == "trials":
                row.append(f"{values[0]:.0f}")
            elif metric == "history_bytes_per_evaluation":
                row.append(f"{statistics.median(values):.0f}")
            elif metric.endswith(("per_trial", "per_evaluation", "last_tenth", "interval")):
                row.append(spread_text(values, fmt_ms))
            else:
                row.append(spread_text(values, "{:.2f}".format))
        rows.append(row)
    return rows


def growth(raw: Raw, sizes: list[int], metric: str) -> tuple[float, float] | None:
    """(ratio of the medians at the largest and smallest size, log-log slope against ops)."""
    import math

    a, b = raw.values("ops", "ops", sizes[0], metric), raw.values("ops", "ops", sizes[-1], metric)
    if not a or not b or statistics.median(a) <= 0 or sizes[0] == sizes[-1]:
        return None
    ratio = statistics.median(b) / statistics.median(a)
    return ratio, math.log(ratio) / math.log(sizes[-1] / sizes[0])


def ops_notes(sizes: list[int], raw: Raw, max_trials: int) -> list[str]:
    notes = []
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        t = growth(raw, sizes, "trials")
        parts = []
        for label, metric in (
            ("workers=0", "in_process_interval"),
            ("Ray 1 worker", "ray_1_per_trial"),
            ("Ray 4 workers", "ray_4_per_trial"),
            ("driver CPU at 4 virtual workers", "driver_cpu_per_trial_4_virtual"),
        ):
            if g := growth(raw, sizes, metric):
                parts.append(f"{label} {g[0]:.1f}x (ops^{g[1]:.2f})")
        if t:
            notes.append(f"From {lo} to {hi} ops the committed trials per run grow {t[0]:.0f}x (ops^{t[1]:.2f}).")
        notes.append(f"Time per committed trial (median between commits; driver CPU) from {lo} to {hi} ops: " + ", ".join(parts) + ".")
        spec, seq = growth(raw, sizes, "driver_cpu_per_trial_4_virtual"), growth(raw, sizes, "in_process_interval")
        one = growth(raw, sizes, "ray_1_per_trial")
        if spec and seq and spec[1] > seq[1] + 0.3:
            notes.append(
                "Only the speculative driver's cost per trial grows with the size of the run: at every pick (after each result) "
                "Speculator._replay replays the strategy from its first step over every outcome committed so far (cProfile at "
                "500 ops: most of the driver's time is in _replay, ConservativeStrategy.plan and Config.replace, which copies "
                "a config of n ops per step), so a run costs O(trials^2) strategy steps and time per trial grows with the "
                f"trials already committed (ops^{spec[1]:.2f} here, as trials grow with ops; compare the last tenth of a "
                "4-worker run with its median). workers=0 and 1 worker do not speculate"
                + "".join(f"; {label} per trial grows as ops^{g[1]:.2f}" for label, g in (("workers=0", seq), ("1 worker", one)) if g)
                + "."
            )
        if g := growth(raw, sizes, "python_peak_simulated_4"):
            notes.append(f"Peak Python allocation of the 4-worker driver grows {g[0]:.1f}x from {lo} to {hi} ops (ops^{g[1]:.2f}).")
    notes.append(
        "workers=0 wall / trials also carries each run's fixed cost (checks, baseline, the result's history table), which "
        "dominates in small runs (10 ops: about 11 trials); the median between commits leaves it out. The same holds, more so, "
        "for the run with a checkpoint (directory, run record, one fsync per save); the append figure is one save() alone."
    )
    capped = [n for n in sizes if 0.0 in raw.values("ops", "ops", n, "finished")]
    ending = f"stopped by max_trials at {', '.join(map(str, capped))} ops" if capped else "every run finishes"
    notes.append(
        f"Space random_space(n, seed=0), zero-cost AdditiveLossEvaluation(seed=0), conservative, max_trials={max_trials} "
        f"({ending}); every Ray and simulated run committed exactly the workers=0 trials (checked)."
    )
    notes.append(
        "Ray per-trial figures are the median time between consecutive commits (start-up excluded; results that arrive "
        "together commit in a burst, so the median sits below the mean, tuning time / trials), with the evaluators, Ray's "
        "processes and the driver sharing the cores. The virtual-clock figure is the driver thread's CPU time alone, with "
        "one result per wait, so one speculation pick per result (on Ray, a wait can return several). "
        "Memory is measured once per size: tracemalloc peaks (Python objects only) and RSS growth of the first untraced run, "
        "in a process that has already run the smaller sizes (allocator memory already held is reused, so it can read 0)."
    )
    return notes
