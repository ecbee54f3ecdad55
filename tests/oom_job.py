"""A tuning job for the out-of-memory test: Ray's own memory monitor kills the evaluator of one config.

    python tests/oom_job.py MARKER

It starts a Ray of its own whose memory monitor kills a worker once the machine's memory in use
is 4 GiB above what it is now, then tunes a random space on one evaluator. The evaluation of
the second trial's config allocates memory, on its first attempt only (MARKER records it), until
it is killed, and raises if it is not. It prints the victim's config key, the result's `outcome`
and the history's rows (status, config, worker, error) as one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import ray
from helpers import SENSITIVE, outcome

from raytune_inc import tune_space
from raytune_inc.synthetic import AdditiveLossEvaluation, random_space

OPS, SEED = 6, 7  # helpers.reference(OPS, SEED) is the result of an uninterrupted run
MARGIN = 4 * 2**30  # above the memory in use at the start: this Ray's own processes take about 0.5 GiB of it


def memory() -> tuple[int, int]:
    """(bytes in use, bytes in all) on this machine, as the kernel counts what is available."""
    info = {key: int(value.split()[0]) * 1024 for key, value in (line.split(":", 1) for line in open("/proc/meminfo"))}
    return info["MemTotal"] - info["MemAvailable"], info["MemTotal"]


class Hog:
    """The additive-loss evaluation; on `victim`'s first evaluation it allocates memory until its process is killed,
    and raises once the memory in use is 2 GiB above `limit` (bytes) without a kill."""

    def __init__(self, space, victim: dict[str, str], marker: str, limit: int):
        self.inner = AdditiveLossEvaluation(space, seed=SEED, sensitive=SENSITIVE)
        self.victim, self.marker, self.limit = victim, marker, limit

    def __call__(self, config: dict[str, str]) -> float:
        if config == self.victim and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            blocks = []
            while memory()[0] < self.limit + 2 * 2**30:
                blocks.append(np.ones(16 * 2**20))  # 128 MiB, every page written
                time.sleep(0.05)
            raise RuntimeError("Ray's memory monitor did not kill the evaluator")
        return self.inner(config)


def main() -> None:
    space = random_space(OPS, seed=SEED)
    victim = tune_space(space, AdditiveLossEvaluation(space, seed=SEED, sensitive=SENSITIVE), workers=0).trials[1].config
    used, total = memory()
    limit = used + MARGIN
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _system_config={"memory_usage_threshold": limit / total, "memory_monitor_refresh_ms": 100},
    )
    res = tune_space(space, Hog(space, victim, sys.argv[1], limit), workers=1)
    rows = [[r["status"], r["config"], r["worker"], r["error"]] for r in res.history.sort_by("trial_id").to_pylist()]
    print(json.dumps({"victim": space.config(victim).key(), **outcome(res), "rows": rows}))


if __name__ == "__main__":
    main()
