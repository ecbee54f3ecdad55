"""The real driver on a virtual clock: speculation and commit order without Ray or waiting.

`simulate(run, workers)` drives `run` with the asyncio driver of the Ray executor against
a pool whose evaluations each take one time unit, evaluated in this process. It gives
the exact committed trials of a parallel run and how many trials it commits per unit
of evaluation time, which makes speculation policies cheap to compare and to test.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from typing import Any

from .driver import Driver
from .evaluation import evaluate_config
from .records import Cancelled
from .run import TuningRun
from .running import Goal
from .space import Config


class VirtualPool:
    """A `Pool` on a virtual clock: each evaluation takes `cost` time units, evaluated in this process when it ends; a
    cancelled one ends at once (as one that looks between small batches nearly does)."""

    def __init__(self, run: TuningRun, size: int, cost: float = 1.0):
        self.run = run
        self.cost = cost
        self.now = 0.0
        self.idle: deque[str] = deque(f"virtual-{i}" for i in range(size))
        self.starting: dict = {}
        self.in_flight: dict[int, tuple[str, Any]] = {}
        self._finishing: list[tuple[float, int, tuple[str, ...]]] = []
        self._order = itertools.count()
        self.here_idle = False  # the driver's process is never lent here

    def submit(self, precisions: tuple[str, ...], payload: Any, task_name: str, here: bool = False, goal: Goal | None = None) -> str:
        slot = self.idle.popleft()
        key = next(self._order)
        self.in_flight[key] = (slot, payload)
        heapq.heappush(self._finishing, (self.now + self.cost, key, precisions, goal))
        return slot

    def cancel(self, payload: Any) -> bool:
        """The evaluation of `payload` ends now, cancelled; its evaluator is free at once."""
        key = next(k for k, (_, p) in self.in_flight.items() if p is payload)
        self._finishing = [entry for entry in self._finishing if entry[1] != key]
        heapq.heapify(self._finishing)
        heapq.heappush(self._finishing, (self.now, key, None, None))
        return True

    async def wait(self, timeout: float | None) -> list:
        finish, key, precisions, goal = heapq.heappop(self._finishing)
        self.now = finish
        slot, payload = self.in_flight.pop(key)
        self.idle.append(slot)
        if precisions is None:
            return [(payload, Cancelled(slot))]
        return [(payload, evaluate_config(self.run.evaluate, Config(self.run.space, precisions), worker=slot, goal=goal).record())]


def simulate(run: TuningRun, workers: int) -> float:
    """Drive `run` on `workers` virtual evaluators; returns the virtual time it took."""
    pool = VirtualPool(run, workers)
    asyncio.run(Driver(run, pool, max_lost=3).drive())
    return pool.now
