"""The main job: tune a ResNet-style network trained on scikit-learn's digits (upscaled to 32x32) to int8 and bf16.

    .venv/bin/python scripts/examples/tune_digits.py [--model resnet|cnn] [--workers 2] [--tolerable-loss 0.01]
        [--precisions int8 bf16] [--checkpoint DIR] [--resume]

Trains the model once (a minute on two cores; cached in runs/), tunes it with conservative on
a local Ray instance, prints the trials, the per-op result, the accuracy before and after
(eager and compiled, as deployed), the model size and the latency of FP32 against tuned, eager
and compiled, and writes the Arrow history. `--model cnn` tunes the small digits CNN instead.
"""

from __future__ import annotations

from job import job_parser, print_result, tune_job  # job.py: this folder is first on sys.path

from raytune_inc.examples import digits, resnet


def main() -> None:
    parser = job_parser(__doc__.splitlines()[0], "digits", precisions=("int8", "bf16"))
    parser.add_argument("--model", choices=("resnet", "cnn"), default="resnet")
    args = parser.parse_args()
    workload = resnet if args.model == "resnet" else digits
    model = workload.trained_model()
    eval_fn = workload.TestAccuracy()
    example = workload.dataset()[2][:64]
    res, elapsed = tune_job(model, eval_fn, workload.calibration_batches(), example, args)
    print_result(res, eval_fn, elapsed, args, f"a batch of {len(example)} test images")


if __name__ == "__main__":
    main()
