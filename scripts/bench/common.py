"""What the benchmarks share: time formats, spreads, RSS, the machine record, JSON output, and the timing wrappers of
both sides of the backend benchmark. Standard library only: inc_conservative.py imports it in INC's venv too."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository

# --- timing both sides of the backend benchmark ----------------------------------------------------------

PHASES: dict[str, float] = {}  # seconds spent so far in each instrumented step


def timed_phase(fn, phase: str):
    """`fn`, adding the time of each call to PHASES[phase]."""
    PHASES[phase] = 0.0

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            PHASES[phase] += time.perf_counter() - t0

    return wrapper


def timed(fn, calls: list):
    """The eval function `fn`, appending (start, end, value, PHASES at the start) to `calls` for each call."""

    def wrapper(model):
        t0, phases = time.perf_counter(), dict(PHASES)
        value = fn(model)
        calls.append((t0, time.perf_counter(), float(value), phases))
        return value

    return wrapper


# --- figures and their text ------------------------------------------------------------------------------


def alternating_times(calls: list[Callable[[], object]], min_calls: int = 15, min_seconds: float = 1.0) -> list[list[float]]:
    """Milliseconds of each call of each of `calls`, timed in turn, one call each per round, after two warm-up rounds;
    at least `min_calls` rounds and `min_seconds` of timing, at most 10x that many seconds once 3 rounds are in. The
    method of `raytune_inc.pytorch.costs.alternate_medians` (on a CPU), without torch, and with every call's time:
    the calls of one round ran back to back, so their ratios show what a machine's changing load did to a comparison."""
    for _ in range(2):
        for call in calls:
            call()
    times: list[list[float]] = [[] for _ in calls]
    started, rounds = time.perf_counter(), 0
    while rounds < min_calls or time.perf_counter() - started < min_seconds:
        for i, call in enumerate(calls):
            t = time.perf_counter()
            call()
            times[i].append((time.perf_counter() - t) * 1e3)
        rounds += 1
        if time.perf_counter() - started > 10 * max(min_seconds, 1.0) and rounds >= 3:
            break
    return times


def steady_times(
    calls: list[Callable[[], object]],
    min_calls: int,
    min_seconds: float,
    threads: int,
    attempts: int = 3,
    min_share: float = 0.85,
    pause_s: float = 15.0,
) -> tuple[list[list[float]], list[dict]]:
    """`alternating_times`, taken again (at most `attempts` times, `pause_s` apart) while this process had less than
    `min_share` of its `threads` cores during it (its CPU time over the wall time x `threads`): another process took
    the cores, which on a shared machine slows a multi-threaded call several times over, and unevenly. Returns the
    times of the attempt with the largest share, and each attempt's share, rounds and load average."""
    best, tried = None, []
    for attempt in range(attempts):
        if attempt:
            time.sleep(pause_s)
        cpu, wall = sum(os.times()[:2]), time.perf_counter()
        times = alternating_times(calls, min_calls, min_seconds)
        share = (sum(os.times()[:2]) - cpu) / ((time.perf_counter() - wall) * threads)
        tried.append({"core_share": share, "rounds": len(times[0]), "load_average": os.getloadavg()[0]})
        if best is None or share > best[0]:
            best = (share, times)
        if share >= min_share:
            break
    return best[1], tried


def add_timing_options(parser) -> None:
    """The options of `steady_times` on an argparse parser (deployed.py and nncf_minilm.py, so that both sides of the
    NNCF comparison are timed alike): --min-calls, --min-seconds, --attempts."""
    parser.add_argument("--min-calls", type=int, default=20, help="timed calls of each model per comparison, at least")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="seconds of timing per comparison, at least")
    parser.add_argument("--attempts", type=int, default=3, help="timings taken again while other processes have the cores")


def ratio_spread(reference: list[float], other: list[float]) -> dict:
    """`spread` of reference / other, round by round (the speedup of `other` in each round of an alternation)."""
    return spread([r / o for r, o in zip(reference, other, strict=True)])


def spread(xs: list[float]) -> dict:
    """Median, min, quartiles, max and count of `xs`."""
    xs = sorted(xs)
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return {"median": statistics.median(xs), "min": xs[0], "q1": q[0], "q3": q[2], "max": xs[-1], "n": len(xs)}


def median_p90(values: list[float]) -> dict:
    """Median, 90th percentile and count of milliseconds."""
    p90 = statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]
    return {"median_ms": statistics.median(values), "p90_ms": p90, "n": len(values)}


def ms(seconds: float) -> str:
    """Seconds as text: "12.3 ms" below a second, "1.23 s" from there."""
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def spread_text(values: list[float], fmt: Callable[[float], str] = ms) -> str:
    """ "median (min – max)", or the one value alone."""
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(statistics.median(values))} ({fmt(min(values))} – {fmt(max(values))})"


def quartiles_text(s: dict, fmt: Callable[[float], str] = ms) -> str:
    """ "median (q1 – q3)" of a `spread` dict."""
    return f"{fmt(s['median'])} ({fmt(s['q1'])} – {fmt(s['q3'])})"


# --- the process and the machine -------------------------------------------------------------------------


def rss_bytes() -> int:
    """This process's resident memory now (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def dir_bytes(directory: str | os.PathLike) -> int:
    """The size of the files directly in `directory`."""
    return sum(p.stat().st_size for p in Path(directory).iterdir() if p.is_file())


# the /proc/cpuinfo flags that low precision runs on
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def _cpuinfo() -> tuple[str, list[str]]:
    """The CPU's model name and flags, from /proc/cpuinfo ("unknown" and none where it cannot be read)."""
    cpu, flags = "unknown", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    return cpu, flags


def cpu_model() -> str:
    """The CPU's model name ("unknown" where /proc/cpuinfo cannot be read)."""
    return _cpuinfo()[0]


def machine(*packages: str) -> dict:
    """CPU, its low-precision features (/proc/cpuinfo flags), cores, memory, OS, Python, the load average now (call it
    at the start), and the versions of `packages`."""
    cpu, flags = _cpuinfo()
    mem = "unknown"
    try:
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f"{kib / 2**20:.1f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    versions = {}
    for name in packages:  # from the installed metadata: nothing is imported
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "cpu": cpu,
        "cpu features": " ".join(f for f in CPU_FEATURES if f in flags) or "none of " + ", ".join(CPU_FEATURES),
        "cores": os.cpu_count(),
        "memory": mem,
        "os": platform.platform(),
        "python": platform.python_version(),
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        **versions,
    }


# --- a tuning's history ---------------------------------------------------------------------------------


def span_seconds(history) -> float:
    """A run's tuning span: from the first trial's start (the baseline excluded) to the end of the last committed
    evaluation; `history` is its Arrow table (`res.history`). 0.0 without a trial."""
    from raytune_inc.records import BASELINE_STAGE  # imported here: this module stays importable in INC's venv

    rows = history.to_pylist()
    starts = [r["start_time"].timestamp() for r in rows if r["stage"] != BASELINE_STAGE and r["start_time"] is not None]
    ends = [r["end_time"].timestamp() for r in rows if r["commit_seq"] is not None and r["end_time"] is not None]
    return max(ends) - min(starts) if starts and ends else 0.0


# --- output ------------------------------------------------------------------------------------------------


def command_line() -> str:
    """This script's command line, as run from the repository root with .venv's Python."""
    script = Path(sys.argv[0]).resolve()
    shown = os.path.relpath(script, ROOT) if script.is_relative_to(ROOT) else str(script)
    return " ".join([".venv/bin/python", shown, *map(shlex.quote, sys.argv[1:])])


def write_json(path: str | os.PathLike, report: dict) -> None:
    """`report` as indented JSON at `path`, its folder made if needed."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
