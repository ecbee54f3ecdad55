"""The main job: tune a CNN trained on scikit-learn's digits with conservative over int8 and bf16.

    .venv/bin/python scripts/examples/tune_digits.py [--workers 2] [--tolerable-loss 0.01] [--checkpoint DIR] [--resume]

Trains the model once (cached in runs/), tunes it on a local Ray instance, prints the
per-op result, baseline vs tuned accuracy, model size and latency, and writes the
Arrow history.
"""

from __future__ import annotations

from job import job_parser, median_ms, state_dict_bytes, tune_job  # job.py: this folder is first on sys.path

from raytune_inc.examples.digits import TestAccuracy, calibration_batches, dataset, trained_model


def main() -> None:
    args = job_parser(__doc__.splitlines()[0], "digits").parse_args()
    model = trained_model()
    eval_fn = TestAccuracy()
    res, elapsed = tune_job(model, eval_fn, calibration_batches(), args)
    print(f"conservative on {len(res.config or {})} ops: {len(res.trials)} trials, {res.evaluations} evaluations, {elapsed:.1f} s")
    for t in res.trials:
        lowered = sum(p != "fp32" for p in t.config.values())
        print(f"  #{t.seq:<3} {t.stage:<18} acc={t.accuracy:.4f} {'meets' if t.meets else 'fails':5}  {lowered} ops lowered")
    print("per-op result:")
    for name, precision in (res.config or {}).items():
        print(f"  {name:<8} {precision}")
    x = dataset()[2]
    print(f"accuracy: baseline {res.baseline:.4f}, tuned {res.accuracy:.4f} (re-evaluated: {eval_fn(res.model):.4f})")
    print(f"model size: {state_dict_bytes(model) / 1024:.1f} KiB -> {state_dict_bytes(res.model) / 1024:.1f} KiB")
    print(f"latency on the {len(x)} test images: {median_ms(lambda: model(x), 30):.2f} ms -> {median_ms(lambda: res.model(x), 30):.2f} ms")
    print(f"history: {res.history.num_rows} evaluations in {args.checkpoint}")


if __name__ == "__main__":
    main()
