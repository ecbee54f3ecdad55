"""The space-level example: tune a built-in synthetic space (no model) with a deterministic evaluation and print the result.

    .venv/bin/python scripts/examples/tune_space.py [--ops 24] [--strategy conservative] [--workers 2]
        [--cost 0] [--checkpoint runs/space-<time>] [--resume]

The space and its evaluation are `raytune_inc.synthetic`'s (`random_space`, `AdditiveLossEvaluation`;
`--cost` seconds of sleep per evaluation). The trial history is written as Arrow to --checkpoint (a new
directory per run unless --resume is given, which goes on with the history there).
"""

from __future__ import annotations

import collections
import time

from job import job_parser  # job.py: this folder is first on sys.path

from raytune_inc import AccuracyCriterion, known_strategies, tune_space
from raytune_inc.synthetic import AdditiveLossEvaluation, random_space


def main() -> None:
    parser = job_parser(__doc__.splitlines()[0], "space")
    parser.add_argument("--ops", type=int, default=24, help="ops in the example space")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategy", default="conservative", choices=known_strategies())
    parser.add_argument("--cost", type=float, default=0.0, help="seconds each evaluation sleeps")
    args = parser.parse_args()

    space = random_space(args.ops, seed=args.seed)
    evaluate = AdditiveLossEvaluation(space, seed=args.seed, cost=args.cost)
    accuracy = AccuracyCriterion(tolerable_loss=args.tolerable_loss)
    start = time.perf_counter()
    res = tune_space(
        space,
        evaluate,
        strategy=args.strategy,
        accuracy=accuracy,
        workers=args.workers,
        checkpoint=args.checkpoint,
        resume=args.resume,
    )
    elapsed = time.perf_counter() - start

    print(
        f"{args.strategy} on {len(space)} ops: {len(res.trials)} trials, {res.evaluations} evaluations, "
        f"{elapsed:.2f} s, stopped: {res.stop_reason}"
    )
    for t in res.trials:
        changed = {k: v for k, v in t.config.items() if v != "fp32"}
        print(f"  #{t.seq:<3} {t.stage:<22} acc={t.accuracy!s:<9} {'meets' if t.meets else 'fails':5}  {len(changed)} ops lowered")
    print(f"baseline {res.baseline:.4f}, goal >= {accuracy.goal(res.baseline):.4f}")
    print(f"history: {res.history.num_rows} evaluations in {args.checkpoint} (raytune_inc.load_history reads it)")
    if res.config is None:
        print("no config meets the goal")
        return
    counts = collections.Counter(res.config.values())
    print(f"tuned accuracy {res.accuracy:.4f}; precisions: {dict(sorted(counts.items()))}")
    for name, precision in res.config.items():
        print(f"  {name:<24} {precision}")


if __name__ == "__main__":
    main()
