"""Part 2 of backend.py, evaluator memory: `tune(..., workers=2)` on a local Ray instance, with an eval function
(`RssProbe`) that appends, per call, the evaluator process's peak RSS and current RSS to a file per PID, on the digits
CNN and on a wide MLP, with an evaluation only the FP32 model meets (every lowered config fails, so conservative makes
every op-wise trial); per evaluator, RSS at the start, after the first and the last evaluation, the peak, the growth
per evaluation over the second half, and the copies of the model alive; and its table."""

from __future__ import annotations

import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import warnings

import torch
from common import peak_rss_bytes, rss_bytes
from torch import nn

from raytune_inc import AccuracyCriterion, tune
from raytune_inc.pytorch.modules import CONVOLUTIONS

LAYERS = (nn.Linear, *CONVOLUTIONS)  # the modules whose live count tells the copies of a model alive


class RssProbe:
    """eval_fn wrapper: appends this process's peak and current RSS to <dir>/<pid>.jsonl once it has the
    evaluation (model included: unpickled before this wrapper) and after each call. It goes to the evaluators
    by value (memory_run has cloudpickle ship this module's code so); `common` it imports there: Ray puts the
    script's folder on their sys.path."""

    def __init__(self, eval_fn, out_dir: str):
        self.eval_fn, self.out_dir, self.calls = eval_fn, out_dir, 0

    def _write(self, row: dict) -> None:
        with open(os.path.join(self.out_dir, f"{os.getpid()}.jsonl"), "a") as f:
            f.write(json.dumps({**row, "maxrss_bytes": peak_rss_bytes(), "rss_bytes": rss_bytes()}) + "\n")

    def __setstate__(self, state):
        self.__dict__.update(state)
        import torchao.quantization  # noqa: F401 - imported by the first int8 build anyway: count it before, as code, not per trial

        self._write({"call": 0})

    def __call__(self, model) -> float:
        value = self.eval_fn(model)
        self.calls += 1
        # live Linear/Conv modules in the process (no collection run): the held model's, this trial's build's
        # (still referenced here) and any earlier trial's not yet freed
        with warnings.catch_warnings():  # isinstance on some of torch's deprecated objects warns
            warnings.simplefilter("ignore")
            layers = sum(isinstance(o, LAYERS) for o in gc.get_objects())
        self._write({"call": self.calls, "layers_alive": layers})
        return value


class OutputDistance:
    """A higher-is-better evaluation that only the FP32 model meets with a zero tolerance: minus the mean
    |logit difference| from the FP32 model on fixed inputs. Every lowered config fails, so conservative
    falls back to op-wise trials for every op type at every precision: the most trials a space allows."""

    def __init__(self, model: nn.Module, x: torch.Tensor):
        self.x = x
        with torch.no_grad():
            self.ref = model(x)

    def __call__(self, model) -> float:
        with torch.no_grad():
            return -float((model(self.x) - self.ref).abs().mean())


class WideMLP(nn.Module):
    def __init__(self, width: int = 1024, depth: int = 6):
        super().__init__()
        self.layers = nn.Sequential(*(m for _ in range(depth) for m in (nn.Linear(width, width), nn.ReLU())))
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        return self.head(self.layers(x))


def model_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def _slope(ys: list[int]) -> float:
    """Least-squares growth per call of ys (bytes per evaluation)."""
    if len(ys) < 2:
        return 0.0
    xs = range(len(ys))
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def memory_run(name: str, model, eval_fn, calib, workers: int) -> dict:
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # RssProbe, the evaluation and the model, to the evaluators
    out_dir = tempfile.mkdtemp(prefix="bench-backend-rss-")
    try:
        res = tune(
            model,
            RssProbe(eval_fn, out_dir),
            calib,
            strategy="conservative",
            accuracy=AccuracyCriterion(tolerable_loss=0.0),
            precisions=("int8", "bf16", "fp16"),
            workers=workers,
        )
        evaluators = {}
        for fname in sorted(os.listdir(out_dir)):
            pid = int(fname.split(".")[0])
            if pid != os.getpid():  # the baseline runs in this process
                with open(os.path.join(out_dir, fname)) as f:
                    evaluators[pid] = [json.loads(line) for line in f]
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    size = model_bytes(model)
    n_layers = sum(isinstance(m, LAYERS) for m in model.modules())
    rows = []
    for pid, calls in evaluators.items():
        start, evals = calls[0], calls[1:]  # start: the evaluation received (model included), before any trial
        series = [c["rss_bytes"] for c in evals]
        half = series[len(series) // 2 :]
        copies = [c["layers_alive"] / n_layers for c in evals]
        rows.append(
            {
                "pid": pid,
                "evaluations": len(evals),
                "rss_start_bytes": start["rss_bytes"],
                "rss_after_first_bytes": series[0],
                "rss_after_last_bytes": series[-1],
                "peak_rss_bytes": evals[-1]["maxrss_bytes"],
                "peak_over_start_bytes": evals[-1]["maxrss_bytes"] - start["rss_bytes"],
                "growth_first_to_last_bytes": series[-1] - series[0],
                "slope_second_half_bytes_per_eval": _slope(half),
                "rss_series_bytes": series,
                "model_copies_alive": copies,  # 1 + the cached lowered share; a copy per trial would add 1
            }
        )
    mib = 2**20
    print(f"  {name}: model {size / mib:.2f} MiB, {len(res.trials)} trials, {res.evaluations} evaluations", flush=True)
    for r in rows:
        print(
            f"    evaluator {r['pid']}: {r['evaluations']:3d} evaluations, RSS {r['rss_start_bytes'] / mib:.1f} MiB before the first, "
            f"{r['rss_after_first_bytes'] / mib:.1f} after it, {r['rss_after_last_bytes'] / mib:.1f} after the last; "
            f"peak {r['peak_rss_bytes'] / mib:.1f} MiB ({r['peak_over_start_bytes'] / size:+.2f} x model over the start); "
            f"second-half slope {r['slope_second_half_bytes_per_eval'] / mib:+.2f} MiB/evaluation; "
            f"model copies alive {min(r['model_copies_alive']):g} to {max(r['model_copies_alive']):g}",
            flush=True,
        )
    return {"model": name, "model_bytes": size, "trials": len(res.trials), "evaluations": res.evaluations, "evaluators": rows}


def memory_part(workers: int) -> list[dict]:
    import digits_example

    torch.manual_seed(0)
    wide = WideMLP().eval()
    x = torch.randn(256, 1024, generator=torch.Generator().manual_seed(1))
    calib = list(torch.randn(100, 1024, generator=torch.Generator().manual_seed(2)).split(25))
    digits = digits_example.model()
    digits_calib = [b for b, _ in digits_example.calib_data()]
    return [
        memory_run("digits CNN", digits, OutputDistance(digits, digits_example.evaluate.x), digits_calib, workers),
        memory_run("wide MLP", wide, OutputDistance(wide, x), calib, workers),
    ]


def print_memory_table(memory: list[dict]) -> None:
    mib = 2**20
    print("\nEvaluator memory: tune(workers=2), conservative over int8/bf16/fp16, every lowered config failing (op-wise trials)")
    cols = ("model", "model size", "evaluations", "RSS before 1st trial", "after 1st", "after last", "peak", "peak - start")
    print("| " + " | ".join((*cols, "slope, 2nd half", "copies alive")) + " |")
    print("| --- " * 10 + "|")
    for m in memory:
        for e in m["evaluators"]:
            print(
                f"| {m['model']} | {m['model_bytes'] / mib:.2f} MiB | {e['evaluations']} | {e['rss_start_bytes'] / mib:.1f} MiB | "
                f"{e['rss_after_first_bytes'] / mib:.1f} MiB | {e['rss_after_last_bytes'] / mib:.1f} MiB | "
                f"{e['peak_rss_bytes'] / mib:.1f} MiB | "
                f"{e['peak_over_start_bytes'] / mib:.1f} MiB ({e['peak_over_start_bytes'] / m['model_bytes']:.2f}x model) | "
                f"{e['slope_second_half_bytes_per_eval'] / mib:+.2f} MiB/eval | "
                f"{min(e['model_copies_alive']):g} – {max(e['model_copies_alive']):g} |"
            )
