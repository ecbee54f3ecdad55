"""What the example jobs share: their command line, the tuning call of the model jobs, and the size and latency they report.

torch is imported on first use: tune_space.py takes only the command line.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from raytune_inc import AccuracyCriterion

if TYPE_CHECKING:
    import torch

    from raytune_inc.pytorch.tune import ModelTuneResult


def job_parser(description: str, name: str) -> argparse.ArgumentParser:
    """--workers, --tolerable-loss, --checkpoint (default: a new runs/<name>-<time>) and --resume."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--workers", type=int, default=2, help="Ray evaluator actors; 0: in-process, sequential")
    parser.add_argument("--tolerable-loss", type=float, default=0.01)
    parser.add_argument(
        "--checkpoint",
        default=time.strftime(f"runs/{name}-%Y%m%d-%H%M%S"),
        help=f"directory of the Arrow history (default: runs/{name}-<time>)",
    )
    parser.add_argument("--resume", action="store_true", help="go on with the history in --checkpoint")
    return parser


def tune_job(model: torch.nn.Module, eval_fn: Callable, calib_data: Iterable, args: argparse.Namespace) -> tuple[ModelTuneResult, float]:
    """Conservative over int8 and bf16, as the job's arguments say; returns the result and its wall time."""
    from raytune_inc.pytorch.tune import tune

    start = time.perf_counter()
    res = tune(
        model,
        eval_fn,
        calib_data,
        strategy="conservative",
        accuracy=AccuracyCriterion(tolerable_loss=args.tolerable_loss),
        precisions=("int8", "bf16"),
        workers=args.workers,
        checkpoint=args.checkpoint,
        resume=args.resume,
    )
    return res, time.perf_counter() - start


def state_dict_bytes(model: torch.nn.Module) -> int:
    """The size of the model's state_dict as torch.save writes it."""
    import torch

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def median_ms(call: Callable[[], object], repeats: int) -> float:
    """The median wall time of `call()` in milliseconds, without autograd."""
    import torch

    times = []
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)
