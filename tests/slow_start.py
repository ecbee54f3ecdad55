"""An eval function whose module takes seconds to import in a Ray actor (not in the test's own process): evaluators
that import it as they come up (tune's warm-up of the eval function's module) start that much later."""

from __future__ import annotations

import time

import ray

from raytune_inc.examples import outliers

START_DELAY = 4.0  # seconds added to each evaluator's start
CALL_TIME = 0.25  # seconds each evaluation takes, at least

if ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None:
    time.sleep(START_DELAY)


class SlowFidelity(outliers.OutputFidelity):
    def __call__(self, model) -> float:
        time.sleep(CALL_TIME)
        return super().__call__(model)
