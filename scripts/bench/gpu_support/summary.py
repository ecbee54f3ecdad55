"""The lines the GPU check prints at the end: a line per part (its status, error or outcome) and, under the parts that
measured something, their figures in short."""

from __future__ import annotations

from .env import PARTS


def summary_lines(data: dict) -> list[str]:
    parts = data.get("parts", {})
    env = parts.get("env", {})
    lines = [f"device: {env.get('device', '?')}; workload: {env.get('workload', '?')}; elapsed {data.get('elapsed_s')} s"]
    for name in PARTS:
        if name not in parts:
            continue
        p = parts[name]
        line = f"[{name}] {p.get('status')}"
        if p.get("error"):
            line += f": {p['error'].splitlines()[-1]}"
        if name == "cuda_test" and "outcome" in p:
            line += f": {p['outcome']} ({p.get('summary', '')})"
        lines.append(line)
        if name == "shared_gpu":
            for label, r in p.get("runs", {}).items():
                if "trials" not in r:
                    lines.append(f"    {label}: {r.get('status')}")
                    continue
                same = r.get("same_as_reference", {})
                mem = ", ".join(
                    f"{m.get('cuda_max_allocated_mib', m.get('maxrss_mib'))} MiB"
                    for m in r.get("memory", [])
                    if m["process"] == "evaluator"
                )
                text = f"    {label}: {r['trials']} trials, {r['trials_per_s']} trials/s, {r['evaluations']} evaluations"
                text += f", devices {r['devices']}"
                if same:
                    text += f", same as workers=0: {same.get('equal')}"
                if mem:
                    text += f", peak memory per evaluator {mem}"
                lines.append(text)
        if name == "precisions":
            for n, r in p.get("models", {}).items():
                lines.append(
                    f"    {n}: fidelity {r.get('fidelity_eager')} eager / {r.get('fidelity_compiled')} compiled; "
                    f"{r.get('eager_ms')} ms eager ({r.get('eager_speedup_vs_fp32')}x), {r.get('compiled_ms')} ms compiled "
                    f"({r.get('compiled_speedup_vs_fp32_compiled')}x)" + (" ERROR" if "error" in r or "compiled_error" in r else "")
                )
            fp8 = p.get("fp8", {})
            if "skipped" in fp8:
                lines.append(f"    fp8: {fp8['skipped']} (probe: {fp8.get('probe')})")
        if name == "tuned" and "latency" in p:
            lat = p["latency"]
            lines.append(
                f"    {p['trials']} trials, config {p['config']}; eager {lat['fp32_eager_ms']} -> {lat['tuned_eager_ms']} ms "
                f"({lat['eager_speedup']}x), compiled {lat['fp32_compiled_ms']} -> {lat['tuned_compiled_ms']} ms "
                f"({lat['compiled_speedup']}x); compiled accuracy {p['accuracy_compiled']:.5f} vs goal {p['goal']:.5f}: "
                f"{'meets' if p['compiled_meets_goal'] else 'MISSES'}"
            )
    return lines
