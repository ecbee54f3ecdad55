"""Tune a Llama-style decoder of about 1B parameters (random weights, or a checkpoint) with conservative over int8.

    .venv/bin/python scripts/examples/tune_llm.py [--params 1b|0.5b|0.2b] [--layers N] [--hidden N]
        [--model PATH [--text FILE]] [--metric agreement|kl] [--dtype fp32|bf16] [--workers 4]
        [--max-trials 8] [--tolerable-loss 0.02] [--no-sensitivity] [--checkpoint DIR]

Without --model, the decoder is transformers' `LlamaForCausalLM` built from
`raytune_inc.examples.decoder.llama_config(--params)` (--layers / --hidden shrink it for a quick
run) with seeded random weights; with --model, `AutoModelForCausalLM.from_pretrained(PATH)`.
The metric compares the tuned model's next-token predictions on 2 held-out sequences of 128
tokens (seeded random ids, or the start of --text tokenized with the model's tokenizer) with the
FP32 model's, computed once before tuning: top-1 agreement (relative goal) or, with `--metric kl`,
minus the mean KL(FP32 || tuned) per token (absolute goal, in nats). Calibration is 2 other
sequences. Prints the committed trials, the share of Linear ops at each precision, the accuracy,
the wall time of `tune` and the peak memory; the Arrow history goes to --checkpoint.
"""

from __future__ import annotations

import argparse
import os
import resource
import threading
import time
from collections import Counter
from pathlib import Path

import torch

from raytune_inc import AccuracyCriterion, tune
from raytune_inc.examples import decoder

GIB = 1024**3


class SystemMemory:
    """The machine's memory in use (MemTotal - MemAvailable), sampled every `interval` seconds in a thread: its peak."""

    def __init__(self, interval: float = 0.25):
        self.interval, self.peak, self._stop = interval, self.used(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def used() -> int:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        return (int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])) * 1024

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.used())

    def __enter__(self) -> SystemMemory:
        self.start = self.used()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.used())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="1b", choices=list(decoder.SIZES), help="decoder size (default: %(default)s)")
    parser.add_argument("--layers", type=int, help="number of decoder layers (overrides --params')")
    parser.add_argument("--hidden", type=int, help="hidden size (overrides --params'; heads and MLP follow)")
    parser.add_argument("--model", help="a transformers causal LM checkpoint (directory) instead of random weights")
    parser.add_argument("--text", help="with --model: a text file whose tokens are the evaluation and calibration sequences")
    parser.add_argument("--metric", default="agreement", choices=("agreement", "kl"), help="default: %(default)s")
    parser.add_argument("--dtype", default="fp32", choices=list(decoder.DTYPES), help="the dtype the model is made in")
    parser.add_argument("--sequences", type=int, default=2, help="evaluation sequences (default: %(default)s)")
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per sequence (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=4, help="Ray evaluator actors; 0: in-process, sequential")
    parser.add_argument("--max-trials", type=int, default=8)
    parser.add_argument(
        "--tolerable-loss", type=float, help="relative for agreement (default 0.02), absolute in nats for kl (default 0.01)"
    )
    parser.add_argument("--sensitivity", action=argparse.BooleanOptionalAction, default=True, help="measure each op's sensitivity")
    parser.add_argument(
        "--checkpoint", default=time.strftime("runs/llm-%Y%m%d-%H%M%S"), help="the Arrow history (default: runs/llm-<time>)"
    )
    args = parser.parse_args()
    if args.text and not args.model:
        parser.error("--text needs --model: it is tokenized with the model's tokenizer")
    return args


def load_model(args: argparse.Namespace) -> torch.nn.Module:
    if args.model:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=decoder.DTYPES[args.dtype], low_cpu_mem_usage=True)
        return model.eval()
    return decoder.build_decoder(decoder.llama_config(args.params, hidden=args.hidden, layers=args.layers), seed=0, dtype=args.dtype)


def sequences(args: argparse.Namespace, model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(evaluation ids, calibration ids): 2 other sequences for the calibration."""
    n, length = args.sequences, args.seq_len
    if args.text:
        from transformers import AutoTokenizer

        tokens = AutoTokenizer.from_pretrained(args.model)(Path(args.text).read_text())["input_ids"]
        both = decoder.token_batches(n=n + 2, seq_len=length, tokens=tokens)
        return both[:n], both[n:]
    vocab = model.config.vocab_size
    return decoder.token_batches(vocab, n, length, seed=0), decoder.token_batches(vocab, 2, length, seed=1)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    built = time.perf_counter()
    model = load_model(args)
    params = sum(p.numel() for p in model.parameters())
    eval_ids, calib_ids = sequences(args, model)
    metric = decoder.NextTokenKL if args.metric == "kl" else decoder.NextTokenAgreement
    eval_fn = metric(model, eval_ids)
    built = time.perf_counter() - built
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    print(
        f"decoder: {params / 1e9:.3f}B parameters ({size / GIB:.2f} GiB, {args.dtype}), made with its reference in {built:.1f} s; "
        f"metric {args.metric} on {eval_ids.shape[0]} x {eval_ids.shape[1]} tokens",
        flush=True,
    )
    if args.metric == "kl":
        accuracy = AccuracyCriterion(tolerable_loss=0.01 if args.tolerable_loss is None else args.tolerable_loss, criterion="absolute")
    else:
        accuracy = AccuracyCriterion(tolerable_loss=0.02 if args.tolerable_loss is None else args.tolerable_loss)
    with SystemMemory() as memory:
        start = time.perf_counter()
        res = tune(
            model,
            eval_fn,
            decoder.calibration_batches(calib_ids),
            strategy="conservative",
            accuracy=accuracy,
            precisions=("int8_dynamic", "int8"),
            max_trials=args.max_trials,
            workers=args.workers,
            checkpoint=args.checkpoint,
            sensitivity=args.sensitivity,
        )
        elapsed = time.perf_counter() - start
    print(f"conservative: {len(res.trials)} trials, {res.evaluations} evaluations, stop: {res.stop_reason}")
    for t in res.trials:
        counts = Counter(p for p in t.config.values() if p != "fp32")
        accuracy_text = "error" if t.accuracy is None else f"{t.accuracy:.5f}"
        lowered = " ".join(f"{p}={n}" for p, n in sorted(counts.items())) or "all fp32"
        print(f"  #{t.seq:<3} {t.stage:<22} acc={accuracy_text} {'meets' if t.meets else 'fails':5}  {lowered}")
    linears = decoder.linear_summary(model, res.config)
    total = sum(linears.values())
    shares = ", ".join(f"{p} {n}/{total} ({n / total:.0%})" for p, n in sorted(linears.items(), key=lambda kv: -kv[1]))
    print(f"per-op result: Linear ops {shares}" + ("" if res.config else " (no config met the goal)"))
    goal = accuracy.goal(res.baseline)
    tuned = "none" if res.accuracy is None else f"{res.accuracy:.5f}"
    print(f"accuracy ({args.metric}): baseline {res.baseline:.5f}, goal >= {goal:.5f}, tuned {tuned}")
    print(f"wall time of tune: {elapsed:.1f} s (first trial started at {res.first_trial_time or 0:.1f} s); {res.size.text()}")
    driver = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        f"peak memory: this process {driver / GIB:.2f} GiB (max RSS); the machine {memory.peak / GIB:.2f} GiB in use, "
        f"{(memory.peak - memory.start) / GIB:.2f} GiB above its {memory.start / GIB:.2f} GiB before tune "
        f"({(memory.peak - memory.start) / size:.2f}x the model)"
    )
    print(f"history: {res.history.num_rows} evaluations in {args.checkpoint} (raytune-inc history / report read it)")


if __name__ == "__main__":
    main()
