"""What the example jobs share: their command line, the tuning call of the model jobs, and what they print.

torch is imported on first use: tune_space.py takes only the command line.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from raytune_inc import AccuracyCriterion
from raytune_inc.space import LOWER_PRECISIONS

if TYPE_CHECKING:
    import torch

    from raytune_inc import ModelTuneResult


def job_parser(description: str, name: str, precisions: tuple[str, ...] | None = None) -> argparse.ArgumentParser:
    """--workers, --tolerable-loss, --checkpoint (default: a new runs/<name>-<time>), --resume; with `precisions`,
    --precisions (their default)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--workers", type=int, default=2, help="Ray evaluator actors; 0: in-process, sequential")
    parser.add_argument("--tolerable-loss", type=float, default=0.01)
    parser.add_argument(
        "--checkpoint",
        default=time.strftime(f"runs/{name}-%Y%m%d-%H%M%S"),
        help=f"directory of the Arrow history (default: runs/{name}-<time>)",
    )
    parser.add_argument("--resume", action="store_true", help="go on with the history in --checkpoint")
    if precisions is not None:
        parser.add_argument("--precisions", nargs="+", default=list(precisions), choices=LOWER_PRECISIONS, help="default: %(default)s")
    return parser


def tune_job(
    model: torch.nn.Module, eval_fn: Callable, calib_data: Iterable, example_inputs: Any, args: argparse.Namespace
) -> tuple[ModelTuneResult, float]:
    """Conservative over the job's precisions, timing FP32 and tuned on `example_inputs` at the end; returns the result
    and its wall time."""
    from raytune_inc import tune

    start = time.perf_counter()
    res = tune(
        model,
        eval_fn,
        calib_data,
        strategy="conservative",
        accuracy=AccuracyCriterion(tolerable_loss=args.tolerable_loss),
        precisions=tuple(args.precisions),
        workers=args.workers,
        checkpoint=args.checkpoint,
        resume=args.resume,
        example_inputs=example_inputs,
    )
    return res, time.perf_counter() - start


def print_result(res: ModelTuneResult, eval_fn: Callable, elapsed: float, args: argparse.Namespace, what: str) -> None:
    """The trials, the per-op result, the accuracy as tuned, as re-evaluated and as deployed (compiled), size and latency."""
    config = res.config or {}
    print(f"conservative on {len(config)} ops: {len(res.trials)} trials, {res.evaluations} evaluations, {elapsed:.1f} s")
    for t in res.trials:
        counts = Counter(t.config.values())
        lowered = " ".join(f"{p}={counts[p]}" for p in LOWER_PRECISIONS if counts[p])
        accuracy = "error" if t.accuracy is None else f"{t.accuracy:.5f}"
        print(f"  #{t.seq:<3} {t.stage:<22} acc={accuracy} {'meets' if t.meets else 'fails':5}  {lowered or 'all fp32'}")
    print("per-op result:", ", ".join(f"{n} {p}" for p, n in Counter(config.values()).most_common()) or "none met the goal")
    goal = AccuracyCriterion(tolerable_loss=args.tolerable_loss).goal(res.baseline)
    tuned = "none" if res.accuracy is None else f"{res.accuracy:.5f}"
    print(f"accuracy: baseline {res.baseline:.5f}, goal >= {goal:.5f}, tuned {tuned} (re-evaluated {eval_fn(res.model):.5f})")
    if res.deployed is not None:
        print(res.deployed.text())
    print(res.size.text())
    if res.latency is not None:
        print(f"{res.latency.text()}, on {what}")
    print(f"history: {res.history.num_rows} evaluations in {args.checkpoint} (raytune-inc history / report read it)")
