"""The nncf part of run_all.py: OpenVINO NNCF's quantize_with_accuracy_control on MiniLM (nncf_minilm.py in
.venv-nncf) beside ours (the deployed part's MiniLM figures, or deployed.py on MiniLM alone): its table and notes."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

from common import ROOT, ms

from . import runner
from .deployed import deployed_command, latency_text, timing_text
from .runner import BENCH, relative, run


def nncf_part(args, out: Path, deployed: dict | None) -> dict | None:
    """NNCF's side runs in .venv-nncf; ours comes from this run's deployed part, or from deployed.py on MiniLM."""
    combined = args.results_dir / "nncf-report.json"
    nncf_json = args.results_dir / "nncf.json"
    command = [str(ROOT / ".venv-nncf" / "bin" / "python"), str(BENCH / "nncf_minilm.py"), "--out", str(nncf_json)]
    command += ["--presets", "transformer", "--min-calls", "5", "--min-seconds", "0.5"] if args.quick else []
    ours_json = args.results_dir / "nncf-ours.json"
    ours_command = deployed_command(args, ours_json, ["--workloads", "minilm", "--no-bf16"])
    if runner.RENDER_ONLY:
        if not combined.exists():
            return None
        data = json.loads(combined.read_text())
    else:
        if not (ROOT / ".venv-nncf" / "bin" / "python").exists():
            run(["bash", str(BENCH / "setup_nncf.sh")], out / "setup_nncf.log")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        run(command, out / "nncf.log", env=env)
        if deployed is not None and "minilm" in deployed["workloads"]:
            ours, ours_from = deployed["workloads"]["minilm"], "the deployed part of this run"
        else:
            run(ours_command, out / "nncf-ours.log")
            ours, ours_from = json.loads(ours_json.read_text())["workloads"]["minilm"], f"`{relative(ours_command)}`"
        data = {"nncf": json.loads(nncf_json.read_text()), "ours": ours, "ours_from": ours_from, "command": relative(command)}
        combined.write_text(json.dumps(data, indent=1))
    rows, raw, notes = nncf_rows(data)
    return {
        "part": "nncf",
        "command": data.get("command", relative(command)) + f"; ours: {data['ours_from']}",
        "sections": [
            {
                "title": "OpenVINO NNCF quantize_with_accuracy_control vs raytune-inc on all-MiniLM-L6-v2 (1% relative goal)",
                "columns": [
                    "tool, configuration",
                    "wall time to the tuned model",
                    "evaluations",
                    "Linear / MatMul at int8",
                    "metric (FP32 1.0, goal 0.99)",
                    "runtime",
                    "FP32 → tuned, 48 sentences (median)",
                ],
                "rows": rows,
                "notes": notes,
            }
        ],
        "raw": raw,
    }


def nncf_rows(data: dict) -> tuple[list[list[str]], list[dict], list[str]]:
    nncf, ours = data["nncf"], data["ours"]
    rows, raw, notes = [], [], []
    names = {"transformer": "NNCF, ModelType.TRANSFORMER, SmoothQuant off", "default": "NNCF, default preset"}
    runtimes = {
        "f32": "OpenVINO CPU, inference precision f32",
        "default": "OpenVINO CPU, default inference precision ({})",
    }
    tuned_ms = {}
    for preset, r in nncf["presets"].items():
        for hint, lat in r["latency"].items():
            runtime = runtimes[hint].format(lat["int8_compiled"]["inference_precision"])
            metric = r["metric"] if hint == "f32" else r["metric_default_precision"]
            rows.append(
                [
                    names[preset],
                    ms(r["wall_s"]),
                    f"{r['evaluations']} (+{r['per_sentence_calls']} per-sentence calls)",
                    f"{r['int8_matmul']}/{r['matmul']} MatMul",
                    f"{metric:.4f}",
                    runtime,
                    latency_text(lat, "int8_ms"),
                ]
            )
            tuned_ms[f"{names[preset]}, {runtime}"] = lat["int8_ms"]
            raw.append(
                {
                    "tool": "NNCF",
                    "configuration": preset,
                    "runtime": f"openvino:{hint}",
                    "wall_s": r["wall_s"],
                    "evaluations": r["evaluations"],
                    "int8_ops": r["int8_matmul"],
                    "ops": r["matmul"],
                    "metric": metric,
                    "fp32_ms": lat["fp32_ms"],
                    "tuned_ms": lat["int8_ms"],
                    "calls": lat["calls"],
                }
            )
    for v in ours["variants"]:
        if not v["tuned"]:
            continue
        linear = v["ops"].get("Linear", {})
        int8 = linear.get("int8", 0) + linear.get("int8_dynamic", 0)
        lat = v["compiled"]
        label = f"raytune-inc, precisions {','.join(v['precisions'])}"
        runtime = "torch.compile (inductor, freezing), 2.13 CPU"
        rows.append(
            [
                label,
                ms(v["wall_s"]),
                str(v["evaluations"]),
                f"{int8}/{sum(linear.values())} Linear (" + ", ".join(f"{n} {p}" for p, n in linear.items()) + ")",
                f"{v['accuracy_eager']:.4f} eager, {v['accuracy_compiled']:.4f} compiled",
                runtime,
                latency_text(lat),
            ]
        )
        tuned_ms[f"{label}, {runtime}"] = lat["tuned_ms"]
        raw.append(
            {
                "tool": "raytune-inc",
                "configuration": ",".join(v["precisions"]),
                "runtime": "torch.compile",
                "wall_s": v["wall_s"],
                "evaluations": v["evaluations"],
                "int8_ops": int8,
                "ops": sum(linear.values()),
                "metric": v["accuracy_compiled"],
                "fp32_ms": lat["fp32_ms"],
                "tuned_ms": lat["tuned_ms"],
                "calls": lat["calls"],
            }
        )
    fp32_ms = {
        "torch, compiled": statistics.median(v["compiled"]["fp32_ms"] for v in ours["variants"]),
        **{
            f"OpenVINO, {hint if hint == 'f32' else 'default precision'}": statistics.median(
                r["latency"][hint]["fp32_ms"] for r in nncf["presets"].values()
            )
            for hint in ("f32", "default")
            if nncf["presets"]
        },
    }
    notes.append("FP32 model on the 48 sentences (median): " + ", ".join(f"{k} {v:.1f} ms" for k, v in fp32_ms.items()) + ".")
    if tuned_ms:
        best = min(tuned_ms, key=tuned_ms.get)
        ours_best = min((k for k in tuned_ms if k.startswith("raytune-inc")), key=tuned_ms.get, default=None)
        line = f"Fastest tuned model: {best}, {tuned_ms[best]:.1f} ms."
        if ours_best and ours_best != best:
            line += (
                f" **Ours is slower as deployed**: our fastest ({ours_best}) takes {tuned_ms[ours_best]:.1f} ms, "
                f"{tuned_ms[ours_best] / tuned_ms[best]:.2f}x that."
            )
        notes.append(line)
    notes += [
        f"NNCF: the model converted with openvino.convert_model (inputs {', '.join(f'{k} {v}' for k, v in nncf['inputs'].items())}; "
        f"{ms(nncf['convert_s'])}, not in the wall time), FP32 IR metric {nncf['fp32']['metric']:.4f} (f32), "
        f"{nncf['fp32']['metric_default_precision']:.4f} (default precision). Its wall time is the quantize_with_accuracy_control "
        "call; an evaluation is a validation on all 48 sentences (NNCF's own runs use inference precision f32); "
        "per-sentence calls are NNCF's mode detection and op ranking. Int8 MatMul: both inputs quantized.",
        f"Ours: tune(..., precisions, workers=0) on the torch model (from {data['ours_from']}); the wall time is the tune() call "
        "(op discovery, one calibration, the baseline and the trials, eager). Latency: the tuned model compiled against the "
        "FP32 model compiled the same way. Same sentences, metric, 16 calibration sentences (2 batches of 8) and goal on both sides.",
        f"OpenVINO {nncf['machine'].get('openvino', '?')}, NNCF {nncf['machine'].get('nncf', '?')}: the FP32 IR and the int8 IRs timed "
        "in one alternation, inference precision by inference precision (PERFORMANCE_HINT LATENCY, "
        + ", ".join(sorted({str(r["latency"][h]["fp32_compiled"]["threads"]) for r in nncf["presets"].values() for h in r["latency"]}))
        + " threads)"
        + (f"; load average (1, 5, 15 min) after its timings: {nncf['load_average_after']}." if "load_average_after" in nncf else ".")
        + (" " + timing_text(nncf["timing_attempts"]) if "timing_attempts" in nncf else ""),
    ]
    return rows, raw, notes
