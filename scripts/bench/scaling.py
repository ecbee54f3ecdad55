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

This file is the entry point (options, the axes in order, the tables, the JSON); each axis is a module of
scaling_axes/, beside how both measure (its __init__.py lists them).
"""

from __future__ import annotations

import argparse
import os
import time

from common import command_line, machine, write_json  # this folder is first on sys.path
from history import append_cost
from scaling_axes.history_axis import HISTORY_COLUMNS, history_axis, history_notes, history_rows
from scaling_axes.measure import Raw
from scaling_axes.ops_axis import OPS_COLUMNS, ops_in_process, ops_notes, ops_ray, ops_rows, run_in_process, run_simulated


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    print(f"\n{title}", flush=True)
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        print("  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)))
    print(flush=True)


def table_section(title: str, spec: list[tuple[str, str | None]], rows: list[list[str]], notes: list[str]) -> dict:
    """An axis's table, printed, and its section of the report; `spec`: (column, metric) pairs."""
    columns = [c for c, _ in spec]
    print_table(title, columns, rows)
    return {"title": title, "columns": columns, "rows": rows, "notes": notes}


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
        sections.append(
            table_section("Scaling with the number of ops", OPS_COLUMNS, ops_rows(ops, raw), ops_notes(ops, raw, args.max_trials))
        )

    if history:
        for n in history:
            history_axis(n, args.repeats, raw)
            print(f"history of {n} trials done ({time.perf_counter() - started:.0f} s so far)", flush=True)
        sections.append(
            table_section("Scaling with the history length", HISTORY_COLUMNS, history_rows(history, raw), history_notes(history, raw))
        )

    for section in sections:
        for note in section["notes"]:
            print(f"- {note}")
    write_json(args.out, report | {"sections": sections, "raw": raw.rows})
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
