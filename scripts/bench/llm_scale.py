"""Decoders at scale: memory and time of `tune` on Llama-style decoders of about 0.2B, 0.5B and 1B parameters, with
0, 1, 2 and 4 Ray evaluators.

    .venv/bin/python scripts/bench/llm_scale.py [--sizes 0.2b 0.5b 1b] [--workers 0 1 2 4] [--max-trials 4]
        [--sensitivity-at 1b] [--out runs/llm_scale.json]

Each (size, evaluators) runs in a fresh process: the decoder (`raytune_inc.examples.decoder`, random
weights, FP32) and its metric (top-1 next-token agreement with the FP32 model on 2 sequences of 128
tokens, computed once) are made first; then, with the memory measured from there, `tune(model, ...,
strategy="conservative", precisions=("int8_dynamic", "int8"), max_trials=4, sensitivity=False)` (Ray
started by `tune` and counted in its wall time). Measured:

- peak memory in use, system-wide (MemTotal - MemAvailable, sampled every 0.2 s), above its value
  when `tune` is called, and as a multiple of the FP32 model's bytes;
- peak PSS (proportional set size, /proc/PID/smaps_rollup, every 0.5 s) of the driver, of the
  largest evaluator, and of Ray's other processes together (raylet and its object store, GCS,
  idle workers): shared pages (the object store's one copy of the weights) are split among the
  processes mapping them;
- time from the call to the first trial's start, and the wall time of `tune`;
- per-trial overhead outside the evaluation: the evaluator's time for a trial (history
  start_time to end_time) minus the metric's own time inside it (the metric times itself),
  as a median over the trials whose lowered ops an earlier trial on that evaluator had built
  (cached) and over the others (built);
- at `--sensitivity-at`, in-process only, the same run with `sensitivity=True` beside it (its
  measurement timed on its own).

Every run of a size must commit the same trials (configs, order, verdicts); the script checks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

GIB = 1024**3
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


# ---------------------------------------------------------------- memory sampling


def meminfo() -> dict[str, int]:
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, value = line.split(":", 1)
            info[key] = int(value.split()[0]) * 1024
    return info


def memory_in_use() -> int:
    info = meminfo()
    return info["MemTotal"] - info["MemAvailable"]


def pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def descendants(root: int) -> dict[int, str]:
    """pid -> command line of `root`'s descendants (Ray's processes and the evaluators are all below the driver)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = {}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in found:
                try:
                    found[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    found[child] = ""
                frontier.append(child)
    return found


RAY_OWN = ("ray::IDLE", "ray::DashboardAgent", "ray::RuntimeEnvAgent")


class Sampler:
    """Peak memory in use (system-wide) and peak PSS of the driver, of each evaluator and of Ray's other processes."""

    def __init__(self):
        self.start = memory_in_use()
        self.peak = self.start
        self.driver = pss(os.getpid())
        self.evaluators: dict[int, int] = {}
        self.ray = 0
        self.commands: set[str] = set()
        self.timeline: list[tuple[float, ...]] = []  # (s, in use above the start, shmem, driver, evaluators, ray) in GiB
        self._t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _pss(self) -> None:
        self.driver = max(self.driver, pss(os.getpid()))
        ray_total = evaluators = 0
        for pid, command in descendants(os.getpid()).items():
            size = pss(pid)
            self.commands.add(command.split()[0] if command else "?")
            title = command.split()[0] if command else ""
            # An evaluator's title follows what it runs ("ray::Evaluator", "ray::<name>:Evaluator.__init__",
            # "ray::evaluate"); Ray's own workers are agents or idle.
            if pid in self.evaluators or (title.startswith("ray::") and title not in RAY_OWN):
                self.evaluators[pid] = max(self.evaluators.get(pid, 0), size)
                evaluators += size
            else:
                ray_total += size
        self.ray = max(self.ray, ray_total)
        info = meminfo()
        used = info["MemTotal"] - info["MemAvailable"] - self.start
        sample = (time.perf_counter() - self._t0, used, info["Shmem"], pss(os.getpid()), evaluators, ray_total)
        self.timeline.append(tuple(round(v / GIB, 2) if i else round(v, 1) for i, v in enumerate(sample)))

    def _run(self) -> None:
        tick = 0
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, memory_in_use())
            tick += 1
            if tick % 3 == 0:
                self._pss()

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, memory_in_use())
        return {
            "start_bytes": self.start,
            "peak_above_start_bytes": self.peak - self.start,
            "driver_pss_bytes": self.driver,
            "evaluator_pss_bytes": max(self.evaluators.values(), default=0),
            "evaluators_seen": len(self.evaluators),
            "ray_pss_bytes": self.ray,
            "processes": sorted(self.commands),
            "timeline": self.timeline,
        }


# ---------------------------------------------------------------- one run (a child process)


def timed_metric(model, input_ids, log: str):
    """NextTokenAgreement that appends its own start and end (wall clock) to `log`, one JSON line per call."""
    from raytune_inc.examples.decoder import NextTokenAgreement

    class TimedAgreement(NextTokenAgreement):
        def __init__(self, reference, ids, path):
            super().__init__(reference, ids)
            self.path = path

        def __call__(self, model) -> float:
            start = time.time()
            value = super().__call__(model)
            with open(self.path, "a") as out:
                out.write(json.dumps({"pid": os.getpid(), "start": start, "end": time.time()}) + "\n")
            return value

    return TimedAgreement(model, input_ids, log)


def overheads(history, calls: list[dict]) -> dict:
    """Per-trial overhead outside the evaluation, from the history's rows and the metric's own times (see the
    module's docstring): medians for cached and built trials."""
    rows = history.to_pylist()
    built: dict[str, set[tuple[int, str]]] = {}
    cached, fresh = [], []
    for row in sorted(rows, key=lambda r: r["start_time"]):
        if row["status"] != "ok" or row["start_time"] is None:
            continue
        start, end = row["start_time"].timestamp(), row["end_time"].timestamp()
        inside = [c for c in calls if start - 1e-3 <= c["start"] and c["end"] <= end + 1e-3]
        if not inside:
            continue
        call = min(inside, key=lambda c: end - c["end"])  # the metric ends right before its trial does
        pairs = {(i, code) for i, code in enumerate(row["config"]) if code != "."}
        if not pairs:
            continue  # the baseline: nothing lowered
        seen = built.setdefault(row["worker"], set())
        (cached if pairs <= seen else fresh).append((end - start) - (call["end"] - call["start"]))
        seen |= pairs
    return {
        "cached_overhead_s": statistics.median(cached) if cached else None,
        "cached_trials": len(cached),
        "built_overhead_s": statistics.median(fresh) if fresh else None,
        "built_trials": len(fresh),
    }


def one(size: str, workers: int, sensitivity: bool, max_trials: int, out: str, layers: int | None, hidden: int | None) -> None:
    import torch

    from raytune_inc import tune
    from raytune_inc.examples import decoder
    from raytune_inc.pytorch import sensitivity as sensitivity_module

    torch.set_num_threads(os.cpu_count() or 1)
    config = decoder.llama_config(size, layers=layers, hidden=hidden)
    model = decoder.build_decoder(config, seed=0)
    model_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    work = Path(tempfile.mkdtemp(prefix="llm-scale-"))
    log = str(work / "calls.jsonl")
    metric = timed_metric(model, decoder.token_batches(config.vocab_size, 2, 128, seed=0), log)
    calib = decoder.calibration_batches(decoder.token_batches(config.vocab_size, 2, 128, seed=1))
    measured = {}
    measure = sensitivity_module.measure_sensitivity

    def timed_measure(*args, **kwargs):
        started = time.perf_counter()
        try:
            return measure(*args, **kwargs)
        finally:
            measured["sensitivity_s"] = time.perf_counter() - started

    sensitivity_module.measure_sensitivity = timed_measure
    sampler = Sampler()
    start = time.perf_counter()
    res = tune(
        model,
        metric,
        calib,
        strategy="conservative",
        precisions=("int8_dynamic", "int8"),
        max_trials=max_trials,
        workers=workers,
        sensitivity=sensitivity,
        checkpoint=work / "history",
    )
    wall = time.perf_counter() - start
    memory = sampler.stop()
    calls = [json.loads(line) for line in Path(log).read_text().splitlines()]
    result = {
        "size": size,
        "params": sum(p.numel() for p in model.parameters()),
        "model_bytes": model_bytes,
        "workers": workers,
        "sensitivity": sensitivity,
        "wall_s": wall,
        "first_trial_s": res.first_trial_time,
        "sensitivity_s": measured.get("sensitivity_s"),
        "evaluations": res.evaluations,
        "eval_s": statistics.median(c["end"] - c["start"] for c in calls[1:] or calls),
        "trials": [[t.seq, t.stage, sorted(t.config.items()), t.meets] for t in res.trials],
        "lowered": sum(p != "fp32" for p in (res.config or {}).values()),
        # Trials evaluated by this process while no evaluator was up (the history's worker is the run's "-driver").
        "here": sum(str(w).endswith("-driver") for w in res.history["worker"].to_pylist()),
        **memory,
        **overheads(res.history, calls),
    }
    result["peak_x_model"] = memory["peak_above_start_bytes"] / model_bytes
    Path(out).write_text(json.dumps(result))


# ---------------------------------------------------------------- the table


def gib(value: int) -> str:
    return f"{value / GIB:.2f} GiB"


def seconds(value) -> str:
    return "-" if value is None else f"{value:.2f} s"


def report(results: list[dict], command: str) -> dict:
    rows = []
    for r in results:
        rows.append(
            [
                f"{r['size']} ({r['params'] / 1e9:.2f}B, {gib(r['model_bytes'])})",
                str(r["workers"]) + (" + sensitivity" if r["sensitivity"] else ""),
                f"{gib(r['peak_above_start_bytes'])} ({r['peak_x_model']:.2f}x)",
                gib(r["driver_pss_bytes"]),
                "-" if not r["workers"] else gib(r["evaluator_pss_bytes"]),
                gib(r["ray_pss_bytes"]),
                seconds(r["first_trial_s"]),
                f"{seconds(r['cached_overhead_s'])} ({r['cached_trials']}) / {seconds(r['built_overhead_s'])} ({r['built_trials']})",
                f"{r['wall_s']:.1f} s" + (f" (sensitivity {r['sensitivity_s']:.1f} s)" if r["sensitivity_s"] else ""),
                f"{r['eval_s']:.2f} s",
                str(len(r["trials"])),
                "-" if not r["workers"] else str(r.get("here", 0)),
            ]
        )
    notes = [
        "Each row a fresh process; memory measured from the call of tune (the model and its reference outputs already "
        "made). Peak in use: MemTotal - MemAvailable, the object store's shared memory included. PSS splits shared pages "
        "among the processes mapping them: the object store's one copy of the weights is counted once, across Ray's "
        "processes and the evaluators. Per-trial overhead: a trial's time on its evaluator minus the metric's own time, "
        "median over the trials whose lowered ops that evaluator had built before (cached) and over the others (built); "
        "in brackets, how many. conservative over int8_dynamic / int8, max_trials as given, sensitivity off unless said. "
        "Evaluated by the driver: the trials this process evaluated itself while no evaluator was up.",
    ]
    by_size: dict[str, list[dict]] = {}
    for r in results:
        by_size.setdefault(r["size"], []).append(r)
    for size, runs in by_size.items():
        same = all(r["trials"] == runs[0]["trials"] for r in runs)
        notes.append(f"{size}: {len(runs)} runs committed {'the same' if same else '**different**'} trials ({len(runs[0]['trials'])}).")
    get = {(r["size"], r["workers"], r["sensitivity"]): r for r in results}
    big = next((s for s in ("1b", "0.5b", "0.2b") if (s, 4, False) in get), None)
    if big:
        four = get[big, 4, False]
        ok = four["peak_x_model"] <= 2.5
        notes.append(
            f"Target, {big} with 4 evaluators: peak memory in use at most 2.5x the model: {four['peak_x_model']:.2f}x, "
            f"{'met' if ok else '**missed**'}."
        )
        cached = [r["cached_overhead_s"] for r in by_size[big] if r["cached_overhead_s"] is not None]
        if cached:
            worst = max(cached)
            notes.append(
                f"Target, {big}: per-trial overhead of a cached trial at most 0.2 s: at most {worst:.2f} s over its runs, "
                f"{'met' if worst <= 0.2 else '**missed**'}."
            )
    if ("0.2b", 0, False) in get:
        base = get["0.2b", 0, False]["wall_s"]
        for w, rule in ((2, "no slower than"), (4, "faster than")):
            if ("0.2b", w, False) in get:
                wall = get["0.2b", w, False]["wall_s"]
                ok = wall <= base if w == 2 else wall < base
                notes.append(
                    f"Target, 0.2b: {w} evaluators {rule} in-process: {wall:.1f} s against {base:.1f} s, {'met' if ok else '**missed**'}."
                )
    for (size, w, s), r in get.items():
        if s and (size, w, False) in get:
            off = get[size, w, False]["wall_s"]
            share = (r["wall_s"] - off) / off
            notes.append(
                f"Target, {size} in-process: the sensitivity measurement costs at most 20% of the run without it: "
                f"{r['sensitivity_s']:.1f} s measured, the run {r['wall_s']:.1f} s against {off:.1f} s (+{share:.0%}), "
                f"{'met' if share <= 0.2 else '**missed**'}."
            )
    raw = [{k: v for k, v in r.items() if not isinstance(v, list | dict)} | {"committed_trials": len(r["trials"])} for r in results]
    return {
        "part": "llm_scale",
        "raw": raw,
        "command": command,
        "title": "Decoders at scale: memory and time of tune against the model size and the evaluators",
        "columns": [
            "decoder",
            "evaluators",
            "peak memory in use above the start (x the model)",
            "driver PSS",
            "largest evaluator PSS",
            "Ray's other processes PSS",
            "call to first trial",
            "per-trial overhead: cached / built",
            "wall time of tune",
            "metric's time per call",
            "committed trials",
            "evaluated by the driver",
        ],
        "rows": rows,
        "notes": notes,
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["0.2b", "0.5b", "1b"])
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2, 4])
    parser.add_argument("--max-trials", type=int, default=4)
    parser.add_argument("--sensitivity-at", nargs="*", default=["1b"], help="sizes also run in-process with sensitivity=True")
    parser.add_argument("--layers", type=int, help="decoder layers (overrides each size's; for a quick check)")
    parser.add_argument("--hidden", type=int, help="hidden size (overrides each size's; for a quick check)")
    parser.add_argument("--out", default="runs/llm_scale.json")
    parser.add_argument("--one", nargs=3, metavar=("SIZE", "WORKERS", "SENSITIVITY"), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        size, workers, sensitivity = args.one
        one(size, int(workers), sensitivity == "1", args.max_trials, args.result, args.layers, args.hidden)
        return
    results = []
    shape = [*(["--layers", str(args.layers)] if args.layers else []), *(["--hidden", str(args.hidden)] if args.hidden else [])]
    for size in args.sizes:
        runs = [(w, False) for w in args.workers] + ([(0, True)] if size in args.sensitivity_at else [])
        for workers, sensitivity in runs:
            with tempfile.NamedTemporaryFile(suffix=".json") as result:
                command = [sys.executable, __file__, "--one", size, str(workers), "1" if sensitivity else "0"]
                command += ["--max-trials", str(args.max_trials), "--result", result.name, *shape]
                print(f"{size}, {workers} evaluators{', sensitivity' if sensitivity else ''} ...", flush=True)
                subprocess.run(command, check=True, cwd=ROOT)
                r = json.loads(Path(result.name).read_text())
            print(
                f"  wall {r['wall_s']:.1f} s, first trial {seconds(r['first_trial_s'])}, peak +{gib(r['peak_above_start_bytes'])} "
                f"({r['peak_x_model']:.2f}x), driver {gib(r['driver_pss_bytes'])}, evaluator {gib(r['evaluator_pss_bytes'])}, "
                f"ray {gib(r['ray_pss_bytes'])}, overhead cached {seconds(r['cached_overhead_s'])} built {seconds(r['built_overhead_s'])}",
                flush=True,
            )
            results.append(r)
    command = " ".join(["python scripts/bench/llm_scale.py", *sys.argv[1:]])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report(results, command), indent=1))
    for note in report(results, command)["notes"]:
        print(note)


if __name__ == "__main__":
    main()
