"""How time per trial and memory grow with the number of ops and with the history length.

    .venv/bin/python scripts/bench/scaling.py [--ops 10 50 100 200 500] [--history 1000 3000 10000] [--repeats 3]
        [--max-trials 100000] [--out runs/bench/scaling.json]

Ops axis: a random space of each `--ops` size (`random_space(n, seed=0)`), the zero-cost
`AdditiveLossEvaluation(space, seed=0)`, conservative, `--max-trials` (enough for every run to
finish). Per size and repeat: the in-process run's wall time per committed trial (workers=0);
the same with `checkpoint=` (and the history's bytes per evaluation on disk); the history
append itself (history.py's `append_cost`: one `save()` timed, median of
`--appends`); the driver's own CPU per trial at 4 workers on the virtual clock
(`simulate(run, 4)`, the driver thread's CPU time); and, on Ray (started once, after the
in-process measurements), the median time between consecutive commits at 1 and 4 workers
(driver.py's `commit_intervals_ms`). Once per size: the peak Python allocation
(tracemalloc) of a workers=0 run and of the simulated 4-worker run, and the resident memory
growth of the first untraced workers=0 run (RSS after - before, /proc/self/statm).

History axis: a history of each `--history` trial count, written once under
runs/bench/cache/ by history.py's `long_history` (a space of trials / 2.5
ops where every whole-type trial fails, so conservative goes op by op, stopped by
max_trials); per repeat: `load_history` and a resume that evaluates nothing; once: the
Python (tracemalloc) and Arrow (memory pool) peaks of each, and the directory size.

Medians with min - max over `--repeats`. JSON (`--out`): sections for the benchmark report
and one raw row per measurement.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import shutil
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import pyarrow as pa
from common import ROOT, command_line, dir_bytes, machine, rss_bytes, spread_text, write_json
from driver import commit_intervals_ms
from history import append_cost, long_history, never

from raytune_inc import HistoryError, load_history, tune_space
from raytune_inc.run import TuningRun
from raytune_inc.simulation import simulate
from raytune_inc.synthetic import AdditiveLossEvaluation, random_space

PRECISIONS = ("bf16", "fp16", "int8")
CACHE = ROOT / "runs" / "bench" / "cache"
MB = 1e6


# --- measuring -----------------------------------------------------------------------------------------------


def python_peak(fn):
    """(fn(), peak bytes Python allocated while it ran: tracemalloc, started just before)."""
    gc.collect()
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def arrow_peak(fn):
    """(fn() run to completion, peak bytes of Arrow memory allocated while it ran).

    Arrow buffers are invisible to tracemalloc; a proxy of the default pool counts them.
    `fn` must return plain Python values: no Arrow data may outlive the proxy.
    """
    default = pa.default_memory_pool()
    proxy = pa.proxy_memory_pool(default)
    pa.set_memory_pool(proxy)
    try:
        out = fn()
        gc.collect()
        return out, proxy.max_memory()
    finally:
        pa.set_memory_pool(default)
        if proxy.bytes_allocated():  # a buffer freed after its pool would crash the process: keep the pool forever
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(proxy))


def fmt_ms(x: float) -> str:
    """Milliseconds without the unit, to 3 significant digits or so."""
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.0f}"


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    print(f"\n{title}", flush=True)
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        print("  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)))
    print(flush=True)


class Raw:
    """One flat row per single measurement."""

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, axis: str, ops: int, trials: int, repeat: int, metric: str, value: float, unit: str) -> None:
        self.rows.append(
            {"axis": axis, "ops": ops, "trials": trials, "repeat": repeat, "metric": metric, "value": float(value), "unit": unit}
        )

    def values(self, axis: str, key: str, size: int, metric: str) -> list[float]:
        return [r["value"] for r in self.rows if r["axis"] == axis and r[key] == size and r["metric"] == metric]


# --- ops axis ------------------------------------------------------------------------------------------------


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
    run = TuningRun(space, evaluate, "conservative", None, PRECISIONS, max_trials, 0, None)
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


# --- history axis --------------------------------------------------------------------------------------------


def prepared_history(trials: int) -> tuple[Path, object, dict]:
    """The cached history of `trials` trials: written once; written again when it cannot be resumed as it is
    (another library version or format, or a build that was cut short)."""
    directory = CACHE / f"history-{trials}"
    for attempt in range(2):
        space, args = long_history(directory, trials)
        try:
            table = load_history(directory)
            committed = table.num_rows - table["commit_seq"].null_count
            del table
            if committed == trials:
                res = tune_space(space, never, checkpoint=directory, resume=True, **args)
                if res.evaluations == 0 and len(res.trials) == trials:
                    return directory, space, args
        except HistoryError as exc:
            if attempt or "in use" in str(exc):
                raise
            print(f"  cached history {directory} cannot be resumed ({exc})", flush=True)
        if attempt:
            raise RuntimeError(f"the history written in {directory} does not resume to {trials} trials without evaluating")
        print(f"  writing {directory} again", flush=True)
        shutil.rmtree(directory, ignore_errors=True)
    raise AssertionError("unreachable")


def history_axis(trials: int, repeats: int, raw: Raw) -> None:
    directory, space, args = prepared_history(trials)
    n_ops = len(space)
    add = lambda repeat, metric, value, unit: raw.add("history", n_ops, trials, repeat, metric, value, unit)  # noqa: E731
    size = dir_bytes(directory)
    rows = load_history(directory).num_rows
    add(0, "rows", rows, "rows")
    add(0, "directory_size", size / MB, "MB")
    add(0, "bytes_per_row", size / rows, "bytes")

    def resume() -> int:
        res = tune_space(space, never, checkpoint=directory, resume=True, **args)
        assert res.evaluations == 0 and len(res.trials) == trials, "the resume evaluated something"
        return len(res.trials)

    for repeat in range(repeats):
        gc.collect()
        start = time.perf_counter()
        table = load_history(directory)
        add(repeat, "load_history", time.perf_counter() - start, "s")
        del table
        gc.collect()
        start = time.perf_counter()
        resume()
        elapsed = time.perf_counter() - start
        add(repeat, "resume", elapsed, "s")
        add(repeat, "resume_per_trial", elapsed / trials * 1e3, "ms")

    _, peak = python_peak(lambda: load_history(directory).num_rows)
    add(0, "python_peak_load_history", peak / MB, "MB")
    _, peak = arrow_peak(lambda: load_history(directory).num_rows)
    add(0, "arrow_peak_load_history", peak / MB, "MB")
    _, peak = python_peak(resume)
    add(0, "python_peak_resume", peak / MB, "MB")
    _, peak = arrow_peak(resume)
    add(0, "arrow_peak_resume", peak / MB, "MB")


HISTORY_COLUMNS = [
    ("committed trials", None),
    ("ops", "ops"),
    ("history rows", "rows"),
    ("on disk (MB)", "directory_size"),
    ("bytes per row", "bytes_per_row"),
    ("load_history (s)", "load_history"),
    ("resume, evaluating nothing (s)", "resume"),
    ("resume per trial (ms)", "resume_per_trial"),
    ("Python peak, load_history (MB)", "python_peak_load_history"),
    ("Arrow peak, load_history (MB)", "arrow_peak_load_history"),
    ("Python peak, resume (MB)", "python_peak_resume"),
    ("Arrow peak, resume (MB)", "arrow_peak_resume"),
]


def history_rows(sizes: list[int], raw: Raw) -> list[list[str]]:
    rows = []
    for n in sizes:
        row = [str(n)]
        for _, metric in HISTORY_COLUMNS[1:]:
            if metric == "ops":
                row.append(str(next(r["ops"] for r in raw.rows if r["axis"] == "history" and r["trials"] == n)))
                continue
            values = raw.values("history", "trials", n, metric)
            if metric in ("rows", "bytes_per_row"):
                row.append(f"{values[0]:.0f}")
            elif metric in ("load_history", "resume"):
                row.append(spread_text(values, "{:.3f}".format))
            elif metric == "resume_per_trial":
                row.append(spread_text(values, fmt_ms))
            else:
                row.append(spread_text(values, "{:.1f}".format))
        rows.append(row)
    return rows


def history_notes(sizes: list[int], raw: Raw) -> list[str]:
    notes = []
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        parts = []
        for label, metric in (
            ("load_history", "load_history"),
            ("resume", "resume"),
            ("the resume's Python peak", "python_peak_resume"),
            ("its Arrow peak", "arrow_peak_resume"),
            ("the directory", "directory_size"),
        ):
            a, b = raw.values("history", "trials", lo, metric), raw.values("history", "trials", hi, metric)
            if a and b and statistics.median(a) > 0:
                parts.append(f"{label} {statistics.median(b) / statistics.median(a):.1f}x")
        notes.append(f"From {lo} to {hi} trials ({hi / lo:.0f}x; the space grows with them, trials / 2.5 ops): " + ", ".join(parts) + ".")
    notes.append(
        "Histories from scripts/bench/history.py's long_history (conservative, every whole-type trial fails so it goes op by op, "
        "stopped by max_trials), written once under runs/bench/cache/; each row's config key holds one byte per op, so bytes per row "
        "grow with the space. The resume loads, replays the strategy against the recorded results and builds the result; it "
        "evaluates nothing (checked)."
    )
    notes.append(
        "Python peak: tracemalloc (Python objects: configs, rows, the replay); Arrow peak: the Arrow memory pool (the table "
        "buffers, which tracemalloc does not see), each measured in a run of its own."
    )
    return notes


# --- main ----------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, nargs="*", default=[10, 50, 100, 200, 500])
    parser.add_argument("--history", type=int, nargs="*", default=[1000, 3000, 10000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-trials", type=int, default=100_000)
    parser.add_argument("--appends", type=int, default=200, help="saves timed per size for the history append cost")
    parser.add_argument("--out", default="runs/bench/scaling.json")
    args = parser.parse_args()
    ops, history = sorted(set(args.ops)), sorted(set(args.history))
    raw = Raw()
    started = time.perf_counter()
    report = {"part": "scaling", "command": command_line(), "machine": machine("ray", "pyarrow")}

    sections = []
    if ops:
        # Warm-up: imports, first-call caches, the Arrow writer.
        run_in_process(20, 100)
        run_simulated(20, 100)
        append_cost(20, 10)
        reference: dict = {}
        for n in ops:
            for repeat in range(args.repeats):
                ops_in_process(n, repeat, args.max_trials, args.appends, raw, reference)
            print(
                f"ops={n}: {raw.values('ops', 'ops', n, 'trials')[0]:.0f} trials, in-process done "
                f"({time.perf_counter() - started:.0f} s so far)",
                flush=True,
            )
        import ray

        start = time.perf_counter()
        ray.init(num_cpus=max(8, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)
        print(f"Ray started in {time.perf_counter() - start:.1f} s", flush=True)
        try:
            for n in ops:
                for repeat in range(args.repeats):
                    ops_ray(n, repeat, args.max_trials, raw, reference)
                print(f"ops={n}: Ray done ({time.perf_counter() - started:.0f} s so far)", flush=True)
        finally:
            ray.shutdown()
        rows = ops_rows(ops, raw)
        columns = [c for c, _ in OPS_COLUMNS]
        print_table("Scaling with the number of ops", columns, rows)
        sections.append(
            {"title": "Scaling with the number of ops", "columns": columns, "rows": rows, "notes": ops_notes(ops, raw, args.max_trials)}
        )

    if history:
        for n in history:
            history_axis(n, args.repeats, raw)
            print(f"history of {n} trials done ({time.perf_counter() - started:.0f} s so far)", flush=True)
        rows = history_rows(history, raw)
        columns = [c for c, _ in HISTORY_COLUMNS]
        print_table("Scaling with the history length", columns, rows)
        sections.append(
            {"title": "Scaling with the history length", "columns": columns, "rows": rows, "notes": history_notes(history, raw)}
        )

    for section in sections:
        for note in section["notes"]:
            print(f"- {note}")
    write_json(args.out, report | {"sections": sections, "raw": raw.rows})
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
