"""The `raytune-inc` command: tune a model, summarise a history, write a report.

    raytune-inc tune MODEL EVAL [--calib DATA] [--strategy conservative] [--tolerable-loss 0.01]
        [--criterion relative] [--lower-is-better] [--precisions bf16 fp16 int8] [--workers 4]
        [--num-cpus N] [--num-gpus G] [--max-trials 100] [--timeout 0] [--eval-timeout 0] [--checkpoint DIR] [--resume]
        [--example-inputs DATA] [--skip-slower] [--save DIR] [--save-model FILE]
    raytune-inc history DIR
    raytune-inc report DIR [--out FILE]

MODEL, EVAL and DATA are `module:name`, imported with the current directory on the path:
MODEL a model, or a function that returns one; EVAL a function `eval(model) -> accuracy`,
or a class whose instances are (made with no arguments); DATA the calibration batches, or a
function that returns them. Bad input ends with a one-line error and exit status 1.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from .errors import CliError, RaytuneError
from .space import LOWER_PRECISIONS

EXIT_ERROR = 1


def import_object(spec: str, what: str) -> Any:
    """The object that `module:name` names (`name` may be dotted); CliError naming the cause otherwise."""
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise CliError(f"{what} must be given as module:name, got {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise CliError(f"{what} {spec!r}: cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from None
    for part in name.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CliError(f"{what} {spec!r}: module {module_name!r} has no attribute {name!r}") from None
    return obj


def _model(spec: str) -> Any:
    from torch import nn

    obj = import_object(spec, "model")
    if not isinstance(obj, nn.Module):
        if not callable(obj):
            raise CliError(f"model {spec!r} is a {type(obj).__name__}, not a torch.nn.Module or a function that returns one")
        obj = obj()
        if not isinstance(obj, nn.Module):
            raise CliError(f"model {spec!r} returned a {type(obj).__name__}, not a torch.nn.Module")
    return obj


def _eval_fn(spec: str) -> Any:
    obj = import_object(spec, "eval function")
    if inspect.isclass(obj):
        obj = obj()
    if not callable(obj):
        raise CliError(f"eval function {spec!r} is a {type(obj).__name__}, not callable")
    return obj


def _calibration(spec: str | None) -> Any:
    if spec is None:
        return None
    obj = import_object(spec, "calibration data")
    return obj() if callable(obj) else obj


def _tune(args: argparse.Namespace) -> int:
    address = os.environ.get("RAY_ADDRESS", "").strip()
    if args.workers and address:
        from .ray_session import check_address

        check_address(address)  # before the model is built and its baseline evaluated
    from .criterion import AccuracyCriterion
    from .workers import Workers

    model = _model(args.model)
    eval_fn = _eval_fn(args.eval)
    calib = _calibration(args.calib)
    example_inputs = _calibration(args.example_inputs) if args.example_inputs else None
    from .model.tuning import tune  # after the user's modules: an error in them comes first

    workers: Any = args.workers
    if args.workers and (args.num_cpus is not None or args.num_gpus):
        workers = Workers(args.workers, num_cpus=args.num_cpus, num_gpus=args.num_gpus or 0.0)
    criterion = AccuracyCriterion(tolerable_loss=args.tolerable_loss, criterion=args.criterion, higher_is_better=not args.lower_is_better)
    res = tune(
        model,
        eval_fn,
        calib,
        strategy=args.strategy,
        accuracy=criterion,
        precisions=tuple(args.precisions),
        max_trials=args.max_trials,
        timeout=args.timeout,
        eval_timeout=args.eval_timeout,
        workers=workers,
        checkpoint=args.checkpoint,
        resume=args.resume,
        example_inputs=example_inputs,
        skip_slower=args.skip_slower,
    )
    print(f"{res.strategy}: {len(res.trials)} trials committed, {res.evaluations} evaluations, stopped: {res.stop_reason}")
    print(f"baseline accuracy {res.baseline:.6g}, goal {'>=' if criterion.higher_is_better else '<='} {criterion.goal(res.baseline):.6g}")
    if res.config is None:
        print("no config met the goal: the model stays FP32")
    else:
        counts = Counter(res.config.values())
        print(f"tuned accuracy {res.accuracy:.6g}; ops: " + ", ".join(f"{n} {p}" for p, n in sorted(counts.items())))
        print(json.dumps(res.config, indent=1))
    for (op_type, precision), why in res.skipped.items():
        print(f"skipped {op_type} at {precision}: {why}")
    if res.latency is not None:
        print(res.latency.text())
    if res.deployed is not None:
        print(res.deployed.text())
    print(res.size.text())
    if args.checkpoint:
        print(f"history: {args.checkpoint} (raytune-inc history / report read it)")
    if args.save:
        res.save(args.save)
        print(f"tuned model: {args.save} (raytune_inc.load({args.save!r}, fp32_model) rebuilds it; no pickle)")
    if args.save_model:
        import torch

        Path(args.save_model).parent.mkdir(parents=True, exist_ok=True)
        torch.save(res.model, args.save_model)
        print(f"tuned model: {args.save_model} (torch.load(..., weights_only=False); trusted files only)")
    return 0


def _history(args: argparse.Namespace) -> int:
    from .report import history_summary

    print(history_summary(_directory(args.directory)))
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report import write_report

    directory = _directory(args.directory)
    out = Path(args.out) if args.out else directory / "report.html"
    print(write_report(directory, out))
    return 0


def _directory(path: str) -> Path:
    directory = Path(path)
    if not directory.exists():
        raise CliError(f"history directory {path!r} does not exist")
    if not directory.is_dir():
        raise CliError(f"{path!r} is not a directory (a history is a directory written by checkpoint=DIR)")
    return directory


def parser() -> argparse.ArgumentParser:
    from .strategies import known_strategies

    top = argparse.ArgumentParser(prog="raytune-inc", description="Accuracy-driven low-precision tuning of PyTorch models on Ray.")
    commands = top.add_subparsers(dest="command", required=True)

    t = commands.add_parser("tune", help="tune a model", description="Tune a model; see `raytune-inc --help` for MODEL, EVAL, DATA.")
    t.add_argument("model", metavar="MODEL", help="module:name of a torch.nn.Module or a function returning one")
    t.add_argument("eval", metavar="EVAL", help="module:name of eval(model) -> accuracy (a class is instantiated first)")
    t.add_argument("--calib", metavar="DATA", help="module:name of the calibration batches or a function returning them (int8)")
    t.add_argument("--strategy", default="conservative", choices=known_strategies())
    t.add_argument("--tolerable-loss", type=float, default=0.01)
    t.add_argument("--criterion", choices=("relative", "absolute"), default="relative")
    t.add_argument("--lower-is-better", action="store_true", help="the metric is a loss: lower is better")
    t.add_argument("--precisions", nargs="+", default=["bf16", "fp16", "int8"], choices=LOWER_PRECISIONS)
    t.add_argument("--workers", type=int, default=4, help="Ray evaluator actors (0: in this process, sequentially)")
    t.add_argument("--num-cpus", type=float, help="CPUs per evaluator (default: one, or an equal share of the cluster)")
    t.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per evaluator, fractions allowed (0.25: four share one)")
    t.add_argument("--max-trials", type=int, default=100)
    t.add_argument("--timeout", type=float, default=0, help="seconds; 0: none")
    t.add_argument(
        "--eval-timeout",
        metavar="SECONDS",
        type=float,
        default=0,
        help="seconds one evaluation may take (0: no limit); longer ones are errors",
    )
    t.add_argument("--checkpoint", metavar="DIR", help="write the Arrow history to DIR")
    t.add_argument("--resume", action="store_true", help="go on with the history in --checkpoint")
    t.add_argument(
        "--example-inputs", metavar="DATA", help="module:name of one input batch (or a function returning it): time the models on it"
    )
    t.add_argument("--skip-slower", action="store_true", help="leave out (op type, precision) pairs slower than FP32 here, compiled")
    t.add_argument("--save", metavar="DIR", help="save the tuned model to DIR without pickle (raytune_inc.load reads it)")
    t.add_argument("--save-model", metavar="FILE", help="torch.save the tuned model to FILE (a pickle)")
    t.set_defaults(handler=_tune)

    h = commands.add_parser("history", help="summary table of a history directory")
    h.add_argument("directory", metavar="DIR")
    h.set_defaults(handler=_history)

    r = commands.add_parser("report", help="write an HTML report of a history directory")
    r.add_argument("directory", metavar="DIR")
    r.add_argument("--out", metavar="FILE", help="the HTML file to write (default: DIR/report.html)")
    r.set_defaults(handler=_report)
    return top


def one_line(message: str) -> str:
    """A message on one line: its first line, and the last line of what follows (a traceback's exception line)."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ""
    return f"{lines[0].rstrip(':')}: {lines[-1]}"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.handler(args)
    except (RaytuneError, ConnectionError) as exc:
        print(f"raytune-inc {args.command}: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except (ValueError, TypeError) as exc:
        # The library's checks of its arguments (an unknown precision, a model with no tunable op, ...).
        print(f"raytune-inc {args.command}: error: {type(exc).__name__}: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"raytune-inc {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
