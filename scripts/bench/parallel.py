"""Parallel model tuning: `tune` on 1, 2, 4 and 8 Ray evaluators, with and without the sensitivity prior.

    .venv/bin/python scripts/bench/parallel.py [--workloads outliers minilm] [--workers 1 2 4 8] [--repeats 2]
        [--out scripts/bench/results/parallel.json]

Two workloads, each evaluation padded to a fixed time so that the machine's two cores are not
the limit: the residual MLP of `raytune_inc.examples.outliers` (29 Linear, 7 of them hurt by
static int8; 0.5 s per evaluation; conservative over int8 at an absolute 0.002 fidelity
tolerance) and all-MiniLM-L6-v2 (its real evaluation, padded to 1 s; conservative over int8 at a
0.15% relative tolerance, tight enough for op-wise trials). Ray is started once, before the runs,
sized to the machine. For each run: the wall time of `tune`, the tuning span (first trial start
to the last commit, from the history), the time from the call to the first trial's start, each
evaluator's start-up, evaluations and wasted ones, and how well the prior predicts pass/fail
(AUC over the committed trials of the prior's summed sensitivity of each trial's config). Every
run must commit what workers=0 commits, or the script fails.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

from common import machine, span_seconds, write_json  # this folder is first on sys.path

from raytune_inc import AccuracyCriterion, tune

WORKLOADS = {
    "outliers": {"pad": 0.5, "accuracy": ("absolute", 0.002)},
    "minilm": {"pad": 1.0, "accuracy": ("relative", 0.0015)},
}


class Padded:
    """An eval function that takes at least `pad` seconds (a picklable wrapper)."""

    def __init__(self, eval_fn, pad: float):
        self.eval_fn, self.pad = eval_fn, pad

    def __call__(self, model):
        start = time.perf_counter()
        value = self.eval_fn(model)
        time.sleep(max(0.0, self.pad - (time.perf_counter() - start)))
        return value


def workload(name: str):
    """(model, eval_fn padded, calibration batches) of a workload."""
    pad = WORKLOADS[name]["pad"]
    if name == "outliers":
        from raytune_inc.examples import outliers

        model = outliers.model()
        return model, outliers.OutputFidelity(model, pad=pad), outliers.calibration_batches()
    from raytune_inc.examples import encoder

    model = encoder.pretrained_model()
    return model, Padded(encoder.EmbeddingFidelity(model), pad), encoder.calibration_batches()


def auc(scores: list[float], fails: list[bool]) -> float | None:
    """P(a failing trial scores higher than a passing one), ties counted half; None without both kinds."""
    bad = [s for s, f in zip(scores, fails, strict=True) if f]
    good = [s for s, f in zip(scores, fails, strict=True) if not f]
    if not bad or not good:
        return None
    wins = sum((b > g) + 0.5 * (b == g) for b in bad for g in good)
    return wins / (len(bad) * len(good))


def same_trials(a: list, b: list) -> bool:
    """The same configs committed, with the same accuracies up to their last bits (a torch evaluation may round
    differently in an evaluator process than in this one: another thread count, another memory alignment)."""
    return len(a) == len(b) and all(ca == cb and math.isclose(xa, xb, rel_tol=1e-6) for (ca, xa), (cb, xb) in zip(a, b, strict=True))


def baseline_seconds(res) -> float:
    rows = [r for r in res.history.to_pylist() if r["stage"] == "baseline"]
    return (rows[0]["end_time"] - rows[0]["start_time"]).total_seconds() if rows else 0.0


def one_run(name: str, workers: int, prior: bool) -> dict:
    model, eval_fn, calib = workload(name)
    kind, tol = WORKLOADS[name]["accuracy"]
    start = time.perf_counter()
    res = tune(model, eval_fn, calib, precisions=("int8",), accuracy=AccuracyCriterion(tol, kind), workers=workers, sensitivity=prior)
    wall = time.perf_counter() - start
    scores = [sum(res.sensitivity.get((op, p), 0.0) for op, p in t.config.items() if p != "fp32") for t in res.trials]
    return {
        "workload": name,
        "workers": workers,
        "prior": prior,
        "wall_s": wall,
        "span_s": span_seconds(res.history),
        "first_trial_s": res.first_trial_time,
        "baseline_s": baseline_seconds(res),
        "evaluator_startup_s": sorted(res.evaluator_startup.values()),
        "trials": len(res.trials),
        "evaluations": res.evaluations,
        "wasted": res.evaluations - 1 - len(res.trials),
        "auc": auc(scores, [not t.meets for t in res.trials]) if res.sensitivity else None,
        "committed": [(t.config, t.accuracy) for t in res.trials],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("scripts/bench/results/parallel.json"))
    args = parser.parse_args()

    import ray

    ray.init(include_dashboard=False, log_to_driver=False)  # once, sized to the machine
    runs = []
    for name in args.workloads:
        reference = one_run(name, 0, prior=False)
        print(f"{name}: {reference['trials']} trials committed at workers=0 in {reference['wall_s']:.1f} s", flush=True)
        for repeat in range(args.repeats):
            for workers in args.workers:
                for prior in (False, True):
                    r = one_run(name, workers, prior)
                    if not same_trials(r["committed"], reference["committed"]):
                        pairs = zip(r["committed"], reference["committed"], strict=False)
                        k = next((i for i, (a, b) in enumerate(pairs) if not same_trials([a], [b])), len(reference["committed"]))
                        raise SystemExit(
                            f"{name}, workers={workers}, prior={prior}: committed something else than workers=0, from trial {k + 1}: "
                            f"{r['committed'][k : k + 1]} != {reference['committed'][k : k + 1]}"
                        )
                    r["repeat"] = repeat
                    runs.append(r)
                    print(
                        f"  {name} w={workers} prior={'on ' if prior else 'off'} wall {r['wall_s']:.1f} s span {r['span_s']:.1f} s "
                        f"first trial {r['first_trial_s']:.1f} s wasted {r['wasted']} auc {r['auc']}",
                        flush=True,
                    )
    ray.shutdown()
    summary = summarize(runs, args)
    write_json(args.out, {"machine": machine("torch", "torchao", "ray"), "runs": runs, "summary": summary})
    for line in summary["lines"]:
        print(line)


def summarize(runs: list[dict], args) -> dict:
    """Medians per (workload, workers, prior), and the speedups of 4 and 8 evaluators over 1."""
    rows, lines = [], []
    for name in args.workloads:
        for prior in (False, True):
            base = [r for r in runs if r["workload"] == name and r["prior"] == prior and r["workers"] == 1]
            base_wall = statistics.median(r["wall_s"] for r in base) if base else None
            base_span = statistics.median(r["span_s"] for r in base) if base else None
            for workers in args.workers:
                sel = [r for r in runs if r["workload"] == name and r["prior"] == prior and r["workers"] == workers]
                if not sel:
                    continue
                wall = statistics.median(r["wall_s"] for r in sel)
                span = statistics.median(r["span_s"] for r in sel)
                aucs = [r["auc"] for r in sel if r["auc"] is not None]
                row = {
                    "workload": name,
                    "prior": prior,
                    "workers": workers,
                    "wall_s": wall,
                    "span_s": span,
                    "wall_speedup": base_wall / wall if base_wall else None,
                    "span_speedup": base_span / span if base_span else None,
                    "first_trial_s": statistics.median(r["first_trial_s"] for r in sel),
                    "baseline_s": statistics.median(r["baseline_s"] for r in sel),
                    "startup_s": statistics.median(s for r in sel for s in r["evaluator_startup_s"]),
                    "wasted": statistics.median(r["wasted"] for r in sel),
                    "trials": sel[0]["trials"],
                    "auc": statistics.median(aucs) if aucs else None,
                    "runs": len(sel),
                }
                rows.append(row)
                lines.append(
                    f"{name} prior={'on' if prior else 'off'} workers={workers}: wall {wall:.1f} s ({row['wall_speedup']:.2f}x), "
                    f"span {span:.1f} s ({row['span_speedup']:.2f}x), first trial {row['first_trial_s']:.1f} s, "
                    f"start-up {row['startup_s']:.1f} s, wasted {row['wasted']:g}, AUC {row['auc']}"
                )
    return {"rows": rows, "lines": lines}


if __name__ == "__main__":
    main()
