"""A Neural Compressor 2.x post-training quantization script, run on raytune-inc with its imports changed.

    .venv/bin/python scripts/examples/inc2_migration.py [--tune] [--quant-level auto|0] [--approach static|dynamic|auto]
        [--tolerable-loss 0.01] [--max-trials 100] [--calib-size 100] [--batch-size 32] [--output DIR] [--workers 0]

Written as INC 2.6's own examples are (its torchvision `main.py`): a trained model, an evaluation
function over a test loader, a calibration loader of (image, label) batches, a
`PostTrainingQuantConfig` and `quantization.fit`, then `q_model.save(output)` and
`utils.pytorch.load` to check the saved model. The only lines that differ from the INC 2.6 script
are the four `from raytune_inc.neural_compressor ...` imports (`from neural_compressor ...` there),
and `workers=` (raytune-inc's own option, in fit's **kwargs). The model is the small CNN on
scikit-learn's digits (trained once, a few seconds, cached in runs/).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from raytune_inc.examples import digits
from raytune_inc.neural_compressor import PostTrainingQuantConfig
from raytune_inc.neural_compressor.config import AccuracyCriterion, TuningCriterion
from raytune_inc.neural_compressor.quantization import fit
from raytune_inc.neural_compressor.utils.pytorch import load


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune", action="store_true", help="tune (with eval_func); without it, quantize with the default config")
    parser.add_argument("--quant-level", default="auto", help="'auto' (the default config, then conservative) or 0 (conservative)")
    parser.add_argument("--approach", default="static", choices=("static", "dynamic", "auto"))
    parser.add_argument("--tolerable-loss", type=float, default=0.01)
    parser.add_argument("--max-trials", type=int, default=100)
    parser.add_argument("--calib-size", type=int, default=100, help="calibration_sampling_size")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--output", default="runs/inc2_migration", help="where q_model.save writes the tuned model")
    parser.add_argument("--workers", type=int, default=0, help="raytune-inc's evaluators (0: in this process)")
    parser.add_argument("--json", help="also write the outcome as JSON here")
    return parser.parse_args()


def evaluate(model: torch.nn.Module, loader: DataLoader) -> float:
    correct = total = 0
    model.eval()
    with torch.no_grad():
        for images, labels in loader:
            correct += int((model(images).argmax(1) == labels).sum())
            total += len(labels)
    return correct / total


def main() -> None:
    args = parse_args()
    model = digits.trained_model()
    train_x, train_y, test_x, test_y = digits.dataset()
    calib_loader = DataLoader(TensorDataset(train_x, train_y), batch_size=args.batch_size)
    test_loader = DataLoader(TensorDataset(test_x, test_y), batch_size=128)

    def eval_func(model: torch.nn.Module) -> float:
        return evaluate(model, test_loader)

    quant_level = 0 if args.quant_level == "0" else args.quant_level
    conf = PostTrainingQuantConfig(
        approach=args.approach,
        quant_level=quant_level,
        calibration_sampling_size=[args.calib_size],
        accuracy_criterion=AccuracyCriterion(tolerable_loss=args.tolerable_loss),
        tuning_criterion=TuningCriterion(max_trials=args.max_trials),
    )
    start = time.perf_counter()
    q_model = fit(model, conf, calib_dataloader=calib_loader, eval_func=eval_func if args.tune else None, workers=args.workers)
    elapsed = time.perf_counter() - start
    fp32 = eval_func(model)
    outcome = {"fp32_accuracy": fp32, "seconds": round(elapsed, 2), "found": q_model is not None}
    if q_model is None:
        print(f"no quantized model meets the goal ({fp32:.4f} - {args.tolerable_loss:.2%}) in {elapsed:.1f} s")
    else:
        q_model.save(args.output)
        loaded = load(args.output, model)
        int8 = eval_func(q_model)
        assert eval_func(loaded) == int8, "the saved model evaluates as the tuned one"
        ops = {name: spec["weight"]["dtype"] for (name, _type), spec in q_model.q_config["op"].items()}
        trial = q_model.q_config.get("trial_number")
        outcome.update(accuracy=int8, ops=ops, trial_number=trial, saved=args.output)
        print(f"FP32 accuracy {fp32:.4f}, quantized {int8:.4f}, in {elapsed:.1f} s (the tuned config was trial {trial})")
        print("ops (weight dtype):", ", ".join(f"{k}={v}" for k, v in ops.items()))
        print(f"saved to {args.output}; reloaded with utils.pytorch.load: same accuracy")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(outcome, f, indent=2)


if __name__ == "__main__":
    main()
