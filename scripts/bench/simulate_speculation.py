"""Speculation quality without Ray or sleeping: the real driver against a virtual-time pool.

    .venv/bin/python scripts/bench/simulate_speculation.py [--workers 1 2 4 8] [--spaces 10] [--sensitive 0.15 0.08]
        [--prior none perfect noisy adversarial] [--noise 0.5]

Every evaluation takes one time unit; the driver's speculation, commit order and stop
rules are the real ones. Reports committed trials per time unit (the ceiling is the
number of workers) and wasted evaluations, so speculation policies can be compared
quickly and exactly. A run must commit what workers=0 commits, or this script fails.

`--sensitive` sweeps the fraction of sensitive ops (those whose int8 loss may exhaust the
tolerance): it sets how many op-wise trials fail. For each value the script prints the
op-wise pass rate p and the ceiling of any speculation that knows only that rate: with W
evaluators on a chain of op-wise trials each passing with probability p, a round commits
at most 1 + p + ... + p^(W-1) trials, the W most probable nodes of the decision tree.

`--prior` gives the speculation a prior of each (op, precision)'s loss, as `tune` measures one:
`perfect` (the evaluation's true losses, up to a scale the run fits), `noisy` (each true loss
times a log-normal factor of sigma `--noise`), `adversarial` (the losses turned upside down:
the sensitive ops look safe). A prior can only change how fast the run goes: every run must
still commit what workers=0 commits. The ceiling with a perfect prior is the number of workers.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics

from raytune_inc.pass_model import Prior
from raytune_inc.run import TuningRun
from raytune_inc.sequential import SequentialExecutor
from raytune_inc.settings import RunSettings
from raytune_inc.simulation import simulate
from raytune_inc.synthetic import AdditiveLossEvaluation, random_space


def new_run(space, evaluate, prior: Prior | None = None) -> TuningRun:
    return TuningRun(space, evaluate, RunSettings(), prior=prior)


def make_prior(kind: str, evaluate: AdditiveLossEvaluation, seed: int, noise: float) -> Prior | None:
    """A prior of `kind` for the synthetic evaluation; its scale is left for the run to fit, as tune's is."""
    if kind == "none":
        return None
    rng = random.Random(seed)
    losses = evaluate.losses
    if kind == "perfect":
        return Prior(dict(losses))
    if kind == "noisy":
        return Prior({key: value * rng.lognormvariate(0.0, noise) for key, value in losses.items()})
    if kind == "adversarial":
        top = max(losses.values(), default=0.0)
        return Prior({key: top - value for key, value in losses.items()})
    raise ValueError(f"unknown prior {kind!r}")


def simulate_run(space, evaluate, workers: int, prior: Prior | None = None) -> tuple[list, float, int]:
    run = new_run(space, evaluate, prior)
    elapsed = simulate(run, workers)
    res = run.result()
    return [t.config for t in res.trials], elapsed, res.evaluations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--spaces", type=int, default=10)
    parser.add_argument("--ops", type=int, nargs=2, default=[20, 40])
    parser.add_argument("--sensitive", type=float, nargs="+", default=[0.15])
    parser.add_argument("--prior", nargs="+", default=["none", "perfect", "noisy"], choices=["none", "perfect", "noisy", "adversarial"])
    parser.add_argument("--noise", type=float, default=0.5, help="sigma of the noisy prior's log-normal factor")
    parser.add_argument("--out", help="also write the medians as JSON here")
    args = parser.parse_args()
    results = [sweep(args, sensitive, prior) for sensitive in args.sensitive for prior in args.prior]
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"spaces": args.spaces, "ops": args.ops, "noise": args.noise, "results": results}, f, indent=1)


def chain_ceiling(p: float, workers: int) -> float:
    """Committed trials per round of W evaluations on a chain of trials that each pass with probability p."""
    return sum(p**k for k in range(workers))


def sweep(args: argparse.Namespace, sensitive: float, prior_kind: str) -> dict:
    print(f"sensitive={sensitive} prior={prior_kind}" + (f" (noise {args.noise})" if prior_kind == "noisy" else ""))
    rates: dict[int, list[float]] = {w: [] for w in args.workers}
    waste: dict[int, list[float]] = {w: [] for w in args.workers}
    passes = [0, 0]
    for seed in range(args.spaces):
        n_ops = args.ops[0] + seed * (args.ops[1] - args.ops[0]) // max(1, args.spaces - 1)
        space = random_space(n_ops, seed=seed)
        evaluate = AdditiveLossEvaluation(space, seed=seed, sensitive=sensitive)
        run = new_run(space, evaluate)
        SequentialExecutor().run(run)
        reference = [t.config for t in run.result().trials]
        op_wise = [t.meets for t in run.result().trials if t.stage.endswith("op-wise")]
        passes[0] += sum(op_wise)
        passes[1] += len(op_wise)
        line = [f"ops={n_ops:3d} trials={len(reference):3d}"]
        prior = make_prior(prior_kind, evaluate, seed, args.noise)
        for w in args.workers:
            trials, elapsed, evaluations = simulate_run(space, evaluate, w, prior)
            assert trials == reference, f"workers={w} committed something else"
            rate = len(trials) / elapsed
            rates[w].append(rate)
            waste[w].append((evaluations - 1 - len(trials)) / max(1, len(trials)))
            line.append(f"w{w}: {rate:.2f} trials/unit, {evaluations - 1 - len(trials)} wasted")
        print("  ".join(line))
    p = passes[0] / max(1, passes[1])
    print(f"op-wise trials passing: {p:.1%} of {passes[1]}")
    for w in args.workers:
        ceiling = w if prior_kind == "perfect" else chain_ceiling(p, w)
        print(
            f"workers={w}: median {statistics.median(rates[w]):.2f} committed trials per evaluation time "
            f"(ceiling {ceiling:.2f}{' with perfect foresight' if prior_kind == 'perfect' else ', op-wise chain'}), "
            f"median waste {statistics.median(waste[w]):.2f} per trial"
        )
    return {
        "sensitive": sensitive,
        "prior": prior_kind,
        "op_wise_pass_rate": p,
        "workers": {
            str(w): {
                "rate": statistics.median(rates[w]),
                "ceiling": w if prior_kind == "perfect" else chain_ceiling(p, w),
                "waste_per_trial": statistics.median(waste[w]),
            }
            for w in args.workers
        },
    }


if __name__ == "__main__":
    main()
