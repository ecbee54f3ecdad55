"""Every benchmark against the peers, in one run, on one machine: writes BENCHMARKS.md and the raw figures.

    .venv/bin/python scripts/bench/run_all.py [--quick]
        [--parts inc,speculation,ray_tune,scaling,deployed,nncf,parallel,early_decisions,llm_scale]
        [--out-dir runs/bench] [--markdown BENCHMARKS.md]

Parts, each a script of this folder that can also run alone (their commands are in BENCHMARKS.md):
- inc: Intel Neural Compressor 2.6's conservative strategy vs ours (workers=0, one process each, the same
  models, eval functions, calibration data and criterion), through backend.py; INC runs in
  `.venv-inc`, made by setup_inc.sh (run here if it is missing).
- speculation: sequential (workers=0) vs speculative at 1, 2, 4, 8 workers, through driver.py.
- ray_tune: Ray Tune running the same configs as trials vs our driver (ray_tune_compare.py;
  needs the `bench` extra, `pip install -e ".[bench]"`, installed here if missing).
- scaling: time per trial and memory against the number of ops and the history length (scaling.py).
- deployed: tuned models as deployed (MiniLM at int8, int8_dynamic+int8 and bf16+int8; the ResNet-style network at
  int8; every op bf16 for information): accuracy eager and compiled, latency against the FP32 model compiled the
  same way (deployed.py).
- nncf: OpenVINO NNCF's quantize_with_accuracy_control on MiniLM (nncf_minilm.py in `.venv-nncf`, made by
  setup_nncf.sh if missing) beside ours on the same model, metric, calibration and goal (the deployed part's
  MiniLM figures when it runs too, else deployed.py on MiniLM alone).
- parallel: tune() on 1, 2, 4 and 8 Ray evaluators, with and without the sensitivity prior, on a residual MLP with
  7 int8-sensitive layers (0.5 s evaluations) and on MiniLM (1 s evaluations) (parallel.py); beside it, the same
  driver on a virtual clock with no prior, a perfect one and a noisy one (simulate_speculation.py).
- early_decisions: tune() with evaluations read batch by batch, a trial stopped once it surely fails, against every
  evaluation read to its end, and moot speculative evaluations cancelled, on the ResNet-style digits network,
  MiniLM and the outlier MLP, at 0, 1 and 4 evaluators (early_decisions.py).
- llm_scale: Llama-style decoders of about 0.2B, 0.5B and 1B parameters tuned in-process and on 1, 2 and 4
  evaluators: peak memory in use (system-wide and per process as PSS), time to the first trial, per-trial overhead
  outside the evaluation, wall time, committed trials identical; at 1B the sensitivity measurement's cost
  (llm_scale.py).

The raw figures of each part, one row per measurement, go to `<results>/<part>.csv` and
`<results>/<part>.arrow` (Arrow IPC file), with each script's own JSON and the machine and date
(`run.json`); they are published with BENCHMARKS.md, and `--render` writes it again from them (a part whose
results are not there renders nothing). Logs
go to `<out-dir>`. Only figures taken
in this run are compared with each other. `--parts` runs those parts alone, again, and renders the others from
their published results: `run.json` and BENCHMARKS.md then say which parts ran later, when and on which machine
(each part's figures are compared only among themselves).
`--quick` makes every part smaller (fewer repeats and sizes): for checking the pipeline, not for publishing.

This file is the entry point (options, the parts in order, run.json and the Markdown); each part's run and rendering
is a module of bench_parts/, beside the Markdown and the raw CSV/Arrow writing (its __init__.py lists them).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time

from bench_parts import runner  # this folder is first on sys.path
from bench_parts.deployed import deployed_part
from bench_parts.inc import inc_part
from bench_parts.markdown import markdown
from bench_parts.nncf import nncf_part
from bench_parts.parallel import parallel_part
from bench_parts.raw import write_raw
from bench_parts.runner import ensure_ray_tune, script_part
from bench_parts.speculation import speculation_part
from common import ROOT, machine

PARTS = ("inc", "speculation", "ray_tune", "scaling", "deployed", "nncf", "parallel", "early_decisions", "llm_scale")  # run order


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    parser.add_argument("--quick", action="store_true", help="smaller runs, to check the pipeline (not for publishing)")
    parser.add_argument("--out-dir", default="runs/bench", help="logs and the scripts' JSON")
    parser.add_argument("--results", default="scripts/bench/results", help="the raw figures published with the Markdown")
    parser.add_argument("--markdown", default="BENCHMARKS.md")
    parser.add_argument("--render", action="store_true", help="write the Markdown again from the last run's outputs; run nothing")
    args = parser.parse_args()
    parts = args.parts.split(",")
    if unknown := set(parts) - set(PARTS):
        raise SystemExit(f"--parts: unknown {sorted(unknown)}; choose from {', '.join(PARTS)}")
    out = (ROOT / args.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = args.results_dir = (ROOT / args.results).resolve()
    results.mkdir(parents=True, exist_ok=True)
    published = json.loads((results / "run.json").read_text()) if (results / "run.json").exists() else None
    now = None  # this run's date and machine, when it runs anything
    if not args.render:
        now = {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine("ray", "torch", "torchao", "pyarrow", "numpy"),
        }
    alone = not args.render and published is not None and set(parts) != set(PARTS)  # run again alone, the rest rendered
    info = published if args.render or alone else now
    start = time.perf_counter()
    reports = []
    deployed = None  # the deployed part's figures, for the nncf part's side of ours
    for part in PARTS if alone else sorted(parts, key=PARTS.index):
        runner.RENDER_ONLY = args.render or part not in parts
        part_start = time.perf_counter()
        print(f"== {part}" + (" (rendered from the published results)" if alone and part not in parts else ""), flush=True)
        if part == "inc":
            report = inc_part(args, out)
        elif part == "speculation":
            report = speculation_part(args, out)
        elif part == "deployed":
            report = deployed_part(args, out)
            if report is not None and not args.render:
                deployed = json.loads((args.results_dir / "deployed.json").read_text())
        elif part == "nncf":
            report = nncf_part(args, out, deployed)
        elif part == "parallel":
            report = parallel_part(args, out)
        elif part == "ray_tune":
            if not runner.RENDER_ONLY:
                ensure_ray_tune(out)
            report = script_part("ray_tune", "ray_tune_compare.py", args, out, ["--repeats", "1"])
        elif part == "early_decisions":
            quick = ["--workloads", "resnet", "--workers", "0", "4"]
            report = script_part("early_decisions", "early_decisions.py", args, out, quick)
        elif part == "llm_scale":
            quick = ["--sizes", "0.2b", "--workers", "0", "2", "--sensitivity-at"]
            report = script_part("llm_scale", "llm_scale.py", args, out, quick)
        else:
            report = script_part("scaling", "scaling.py", args, out, ["--ops", "10", "100", "--history", "1000", "--repeats", "1"])
        if report is None:  # rendering, and this part's results are not there
            continue
        write_raw(report, out, results)
        if alone and not runner.RENDER_ONLY:  # this part's own run: when, on which machine, how long
            info.setdefault("later", {})[part] = {**now, "elapsed_s": time.perf_counter() - part_start}
        reports.append(report)
    if args.render or alone:
        elapsed = info["elapsed_s"]
    else:
        elapsed = info["elapsed_s"] = time.perf_counter() - start
    if not args.render:
        (results / "run.json").write_text(json.dumps(info, indent=1))
    command = "python scripts/bench/run_all.py"
    command += (f" --parts {args.parts}" if parts != list(PARTS) and not alone else "") + (" --quick" if args.quick else "")
    text = markdown(reports, info, command, results, elapsed)
    (ROOT / args.markdown).write_text(text)
    print(f"wrote {args.markdown} and {os.path.relpath(results, ROOT)}/ ({elapsed / 60:.1f} min)")


if __name__ == "__main__":
    main()
