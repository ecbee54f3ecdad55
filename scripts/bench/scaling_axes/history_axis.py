"""scaling.py's history axis: a history of each trial count, written once under runs/bench/cache/ by history.py's
`long_history`; per repeat `load_history` and a resume that evaluates nothing; once the Python and Arrow peaks of
each and the directory's size. Its table and notes."""

from __future__ import annotations

import gc
import shutil
import statistics
import time
from pathlib import Path

from common import ROOT, dir_bytes, spread_text
from history import long_history, never

from raytune_inc import HistoryError, load_history, tune_space

from .measure import MB, Raw, arrow_peak, fmt_ms, python_peak

CACHE = ROOT / "runs" / "bench" / "cache"


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
