"""A tuning job for the crash tests: run it, SIGKILL it, resume it.

    python tests/checkpoint_job.py DIR LOG --workers N [--resume] [--ops 12] [--seed 3] [--cost 0.15]
        [--kill-after-save K] [--kill-mid-save K] [--model]

It tunes a random space of `--ops` ops with `tune_space`; with `--model`, `seeded_mlp(--seed)`
with `tune`, single-threaded, over int8 and bf16. Every evaluation appends the key of its
config to LOG before it starts, so a test can count what was evaluated. `--kill-after-save K` SIGKILLs the job right after its K-th
durable save (between trials); `--kill-mid-save K` SIGKILLs it halfway through writing
its K-th save (a torn last record). The result is printed as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal

import pyarrow as pa
from helpers import LoggedAgreement, LoggedEvaluation, mlp_inputs, outcome, seeded_mlp

from raytune_inc import tune, tune_space
from raytune_inc.history import files, writer
from raytune_inc.records import TuneResult
from raytune_inc.synthetic import random_space


def kill_on_save(after: int | None, mid: int | None) -> None:
    """Make the K-th append to the history SIGKILL this process, after it or halfway through it."""
    append = writer._Stream.append
    count = 0

    def patched(self, table: pa.Table) -> None:
        nonlocal count
        count += 1
        if count == mid:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            # The batch message alone (the schema is already in the file), cut in half.
            data = sink.getvalue().to_pybytes()
            header = len(files._stream_header(table.schema)) if self.file.tell() else 0
            body = data[header:-8]
            self.file.write((data[:header] + body)[: header + len(body) // 2])
            self.file.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        append(self, table)
        if count == after:
            os.kill(os.getpid(), signal.SIGKILL)

    writer._Stream.append = patched


def tune_model(args: argparse.Namespace) -> TuneResult:
    """`tune` of the model of `--seed`, on one torch thread in this process (and one per evaluator, each with one CPU):
    the calibration and every evaluation compute the same in the run, its resumes, and the reference run."""
    import torch

    torch.set_num_threads(1)
    model = seeded_mlp(args.seed)
    evaluate = LoggedAgreement(model, args.log, args.cost)
    calib = list(mlp_inputs().split(128))
    return tune(model, evaluate, calib, precisions=("int8", "bf16"), workers=args.workers, checkpoint=args.dir, resume=args.resume)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("log")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--ops", type=int, default=12)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--cost", type=float, default=0.15)
    parser.add_argument("--kill-after-save", type=int)
    parser.add_argument("--kill-mid-save", type=int)
    parser.add_argument("--model", action="store_true")
    args = parser.parse_args()
    kill_on_save(args.kill_after_save, args.kill_mid_save)
    if args.model:
        res = tune_model(args)
    else:
        space = random_space(args.ops, seed=args.seed)
        evaluate = LoggedEvaluation(space, args.seed, args.log, args.cost)
        res = tune_space(space, evaluate, workers=args.workers, checkpoint=args.dir, resume=args.resume)
    print(json.dumps({**outcome(res), "accuracy": res.accuracy, "evaluations": res.evaluations}))


if __name__ == "__main__":
    main()
