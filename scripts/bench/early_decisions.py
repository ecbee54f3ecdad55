"""Early decisions: tune() with evaluations read batch by batch, a trial stopped once it surely fails, against every
evaluation read to its end, at 0, 1 and 4 evaluators.

    .venv/bin/python scripts/bench/early_decisions.py [--workloads resnet minilm outliers] [--workers 0 1 4]
        [--precisions int8] [--out scripts/bench/results/early_decisions-report.json]

Three workloads, each with a per-sample metric against the FP32 model (no labels), yielding
`raytune_inc.Running` after each batch and padded to `pad` seconds per full evaluation (a sleep
after each batch, in proportion to its samples: the cost of a real evaluation set, which reads
data and runs far more samples): the ResNet-style digits network of `raytune_inc.examples.resnet`
(top-1 agreement with the FP32 model on its 540 test images, 36 a batch, each 0 or 1; relative
0.2% tolerance: at most one image of 540 may change its class) and all-MiniLM-L6-v2 (each
sentence's cosine similarity to the FP32 embedding, in [-1, 1], 8 sentences a batch; relative 0.15%),
and the residual MLP of `raytune_inc.examples.outliers`, whose int8 trials do fail (29 Linear, 7 of them
fed outlier channels; each of 256 inputs' cosine similarity to the FP32 output, 16 a batch; relative
0.1%), conservative over `--precisions` (int8 by default: bf16 is emulated on a CPU without AVX512-BF16,
where a bf16 trial costs ten times an int8 one). Ray is started once, before the runs, sized to the machine. For each run: the wall time of
`tune`, the samples every evaluation read (the baseline and speculative ones included) of those
they would have read to the end, and those of the evaluations that failed the goal, evaluations,
rejected ones, moot speculative ones cancelled, committed trials. Every run must commit the configs and verdicts of the first run
(the sequential one, every evaluation read to its end) and give the same result, or the script
fails.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from common import machine, write_json  # this folder is first on sys.path

from raytune_inc import AccuracyCriterion, Running, tune
from raytune_inc.evaluation import MOOT

WORKLOADS = {
    "resnet": {"pad": 3.0, "batch": 36, "accuracy": 0.002, "max_trials": 100},
    "minilm": {"pad": 3.0, "batch": 8, "accuracy": 0.0015, "max_trials": 24},
    "outliers": {"pad": 3.0, "batch": 16, "accuracy": 0.001, "max_trials": 100},
}


class Agreement:
    """eval_fn yielding Running: whether each image's top-1 class is the FP32 model's (1 or 0), `batch` at a time,
    `pad` seconds per full evaluation."""

    def __init__(self, reference, images: torch.Tensor, batch: int, pad: float):
        self.images, self.batch, self.pad = images, batch, pad
        with torch.no_grad():
            self.expected = reference(images).argmax(1)

    def __call__(self, model):
        n, total = len(self.images), 0.0
        device = next(model.parameters()).device
        for start in range(0, n, self.batch):
            part = self.images[start : start + self.batch]
            total += float((model(part.to(device)).argmax(1).cpu() == self.expected[start : start + self.batch]).sum())
            time.sleep(self.pad * len(part) / n)
            yield Running(total, start + len(part), n)


class OutputSimilarity:
    """eval_fn yielding Running: each input's cosine similarity of the model's output to the FP32 model's (in
    [-1, 1]), `batch` inputs at a time, `pad` seconds per full evaluation."""

    def __init__(self, reference, inputs: torch.Tensor, batch: int, pad: float):
        self.inputs, self.batch, self.pad = inputs, batch, pad
        with torch.no_grad():
            self.expected = reference(inputs).float()

    def __call__(self, model):
        n, total = len(self.inputs), 0.0
        device = next(model.parameters()).device
        for start in range(0, n, self.batch):
            out = model(self.inputs[start : start + self.batch].to(device)).float().cpu()
            total += float(torch.nn.functional.cosine_similarity(out, self.expected[start : start + self.batch], dim=-1).sum())
            time.sleep(self.pad * len(out) / n)
            yield Running(total, start + len(out), n, low=-1.0, high=1.0)


class EmbeddingAgreement:
    """eval_fn yielding Running: each sentence's cosine similarity to the FP32 model's embedding (in [-1, 1]), `batch`
    sentences at a time, `pad` seconds per full evaluation."""

    def __init__(self, reference, batch: int, pad: float):
        from raytune_inc.examples import encoder

        self.inputs, self.batch, self.pad = encoder.tokenize(encoder.SENTENCES), batch, pad
        with torch.no_grad():
            self.expected = reference(**self.inputs).float()

    def __call__(self, model):
        n, total = len(self.expected), 0.0
        device = next(model.parameters()).device
        for start in range(0, n, self.batch):
            part = {k: v[start : start + self.batch].to(device) for k, v in self.inputs.items()}
            out = model(**part).float().cpu()
            total += float(torch.nn.functional.cosine_similarity(out, self.expected[start : start + self.batch], dim=-1).sum())
            time.sleep(self.pad * len(out) / n)
            yield Running(total, start + len(out), n, low=-1.0, high=1.0)


def workload(name: str):
    """(model, eval_fn, calibration batches) of a workload."""
    spec = WORKLOADS[name]
    if name == "resnet":
        from raytune_inc.examples import resnet

        model = resnet.trained_model()
        _, _, images, _ = resnet.dataset()
        return model, Agreement(model, images, spec["batch"], spec["pad"]), resnet.calibration_batches()
    if name == "outliers":
        from raytune_inc.examples import outliers

        model = outliers.model()
        return model, OutputSimilarity(model, outliers.inputs(), spec["batch"], spec["pad"]), outliers.calibration_batches()
    from raytune_inc.examples import encoder

    model = encoder.pretrained_model()
    return model, EmbeddingAgreement(model, spec["batch"], spec["pad"]), encoder.calibration_batches()


def one_run(name: str, workers: int, early: bool, precisions: tuple[str, ...]) -> dict:
    model, eval_fn, calib = workload(name)
    spec = WORKLOADS[name]
    start = time.perf_counter()
    res = tune(
        model,
        eval_fn,
        calib,
        precisions=precisions,
        accuracy=AccuracyCriterion(spec["accuracy"]),
        max_trials=spec["max_trials"],
        workers=workers,
        sensitivity=False,
        early_decisions=early,
    )
    wall = time.perf_counter() - start
    rows = res.history.to_pylist()
    failing = [r for r in rows if r["stage"] != "baseline" and r["meets"] is False]
    return {
        "workload": name,
        "workers": workers,
        "early": early,
        "wall_s": wall,
        "samples": sum(r["samples"] or 0 for r in rows),
        "samples_total": sum(r["samples_total"] or 0 for r in rows),
        "failing_samples": sum(r["samples"] or 0 for r in failing),
        "failing_samples_total": sum(r["samples_total"] or 0 for r in failing),
        "evaluations": res.evaluations,
        "rejected": sum(r["status"] == "rejected" for r in rows),
        "cancelled": sum(r["status"] == "cancelled" and r["error"] == MOOT for r in rows),  # not those the run's end stopped
        "failing_trials": sum(not t.meets for t in res.trials),
        "trials": len(res.trials),
        "verdicts": [(t.config, t.meets, t.stage) for t in res.trials],
        "config": res.config,
        "accuracy": res.accuracy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 4])
    parser.add_argument("--precisions", nargs="+", default=["int8"])
    parser.add_argument("--out", type=Path, default=Path("scripts/bench/results/early_decisions-report.json"))
    args = parser.parse_args()

    import ray

    ray.init(include_dashboard=False, log_to_driver=False)  # once, sized to the machine
    runs = []
    for name in args.workloads:
        reference = None
        for workers in args.workers:
            for early in (False, True):
                r = one_run(name, workers, early, tuple(args.precisions))
                if reference is None:
                    reference = r  # the first run: workers as given first (0: sequential), read to the end
                elif (r["verdicts"], r["config"]) != (reference["verdicts"], reference["config"]):
                    raise SystemExit(
                        f"{name}, workers={workers}, early={early}: committed something else than "
                        f"{reference['workers']} workers without early decisions"
                    )
                runs.append(r)
                print(
                    f"  {name} w={workers} early={'on ' if early else 'off'} wall {r['wall_s']:.1f} s "
                    f"samples {r['samples']}/{r['samples_total']} evaluations {r['evaluations']} rejected {r['rejected']} "
                    f"cancelled {r['cancelled']} "
                    f"trials {r['trials']} (failing {r['failing_trials']})",
                    flush=True,
                )
    ray.shutdown()
    write_json(args.out, report(runs, args))


def report(runs: list[dict], args) -> dict:
    """The table (one row per run), and the targets: 40% fewer samples, 1.5x shorter at 4 evaluators."""
    columns = [
        "workload",
        "evaluators",
        "early decisions",
        "wall time of tune",
        "samples read (of those read to the end)",
        "by the evaluations that fail",
        "evaluations (rejected, cancelled)",
        "committed trials (failing)",
        "same trials and result",
    ]
    rows = [
        [
            r["workload"],
            r["workers"],
            "on" if r["early"] else "off",
            f"{r['wall_s']:.1f} s",
            f"{r['samples']} of {r['samples_total']} ({r['samples'] / r['samples_total']:.0%})",
            f"{r['failing_samples']} of {r['failing_samples_total']}"
            + (f" ({r['failing_samples'] / r['failing_samples_total']:.0%})" if r["failing_samples_total"] else ""),
            f"{r['evaluations']} ({r['rejected']}, {r.get('cancelled', 0)})",
            f"{r['trials']} ({r['failing_trials']})",
            "yes",
        ]
        for r in runs
    ]
    notes = [
        "Each evaluation padded to 3 s when read to its end (a sleep after each batch, in proportion to its samples), "
        f"sensitivity off, conservative over {' and '.join(args.precisions)}. Samples read: by every evaluation of the run, the "
        "baseline and speculative ones included (one dispatched before the baseline is known is read to its end); by the "
        "evaluations that fail: those a rejection can shorten (every other one is read to its end, as it must be). "
        "Cancelled: speculative evaluations a commit made moot, stopped part way on their evaluator (early decisions "
        "on; counted among the evaluations; Ray returns nothing of a cancelled task, so their samples are not known and "
        "count as none, and samples are compared in-process only).",
    ]
    for name in args.workloads:
        sel = {(r["workers"], r["early"]): r for r in runs if r["workload"] == name}
        if not any(r["failing_trials"] for r in sel.values()):
            notes.append(f"{name}: no committed trial fails the goal, so nothing is rejected: the runs differ by noise alone.")
        for workers in args.workers:
            on, off = sel.get((workers, True)), sel.get((workers, False))
            if on and off:
                ratio = off["wall_s"] / on["wall_s"]
                if on.get("cancelled"):  # their samples are not known: a count of samples would flatter the run
                    read = f"{on['cancelled']} evaluations cancelled part way (their samples not known)"
                else:
                    read = f"{1 - on['samples'] / off['samples']:.0%} fewer samples read"
                notes.append(f"{name}, {workers} evaluators: {read}, wall time {ratio:.2f}x shorter.")
        on, off = sel.get((0, True)), sel.get((0, False))
        if on and off and off["failing_samples"]:
            fewer = 1 - on["failing_samples"] / off["failing_samples"]
            verdict = "met" if fewer >= 0.4 else "**missed**"
            notes.append(
                f"Target, {name}: at least 40% fewer samples read where trials fail (in-process): {fewer:.0%}, {verdict} "
                f"(over all evaluations: {1 - on['samples'] / off['samples']:.0%} fewer)."
            )
        on, off = sel.get((4, True)), sel.get((4, False))
        if on and off:
            ratio = off["wall_s"] / on["wall_s"]
            notes.append(f"Target, {name}: at 4 evaluators at least 1.5x shorter: {ratio:.2f}x, {'met' if ratio >= 1.5 else '**missed**'}.")
    return {
        "part": "early_decisions",
        "title": "Early decisions: trials stopped once they surely fail, against evaluations read to the end",
        "machine": machine("torch", "torchao", "ray"),
        "raw": [{**{k: v for k, v in r.items() if k != "verdicts"}, "config": json.dumps(r["config"])} for r in runs],
        "columns": columns,
        "rows": rows,
        "notes": notes,
        "summary": {"median_wall_s": statistics.median(r["wall_s"] for r in runs)},
    }


if __name__ == "__main__":
    main()
