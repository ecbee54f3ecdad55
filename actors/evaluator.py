"""The evaluator actor: holds the user's evaluation function (shipped once) and evaluates configs."""

from __future__ import annotations

import importlib

import ray

from raytune_inc.evaluation import EvaluateFn, evaluate_config
from raytune_inc.running import Goal
from raytune_inc.space import Config, TuningSpace

# What an evaluation returns to the driver: Evaluation.record(), a small tuple, never a tensor.
EvaluationRecord = tuple

# The lowered-module cache of a model evaluation (`tune`'s), as dashboard gauges: stats() key -> (metric, description).
CACHE_GAUGES = {
    "bytes": ("raytune_inc_lowered_cache_bytes", "Bytes of lowered modules an evaluator keeps between trials"),
    "modules": ("raytune_inc_lowered_cache_modules", "Lowered modules an evaluator keeps between trials"),
}


class Evaluator:
    """Evaluates configs of one space with one evaluation function, one at a time.

    It starts in two steps, so that it can start before the evaluation exists: the actor comes up
    and imports `warm` (e.g. torch and the backend), then `load(space, evaluate)` hands it the
    space and the evaluation (through the object store). An evaluation with a
    `prepare(device, num_threads)` method (the model-level one of `tune`) is then told where it
    runs: the device of the evaluator's GPU share or the CPU, and as many threads as the evaluator
    has CPUs.
    """

    def __init__(self, name: str, warm: tuple[str, ...] = ()):
        for module in warm:
            try:
                importlib.import_module(module)
            except Exception:  # a warm-up only: load() says what is missing, if anything is
                pass
        self._name = name
        self._space: TuningSpace | None = None
        self._evaluate: EvaluateFn | None = None
        gpus = ray.get_gpu_ids()
        self._gpu = bool(gpus)
        self._device = f"cuda:{','.join(str(g) for g in gpus)}" if gpus else "cpu"
        self._context = ray.get_runtime_context()
        self._node = self._context.get_node_id()  # the history's `node`: which cluster node ran it
        self._gauges = None  # the cache's gauges, made at its first report

    def load(self, space: TuningSpace, evaluate: EvaluateFn) -> str:
        """Take the space and the evaluation, and get it ready; returns the id of the Ray node this evaluator runs on."""
        self._space, self._evaluate = space, evaluate
        prepare = getattr(evaluate, "prepare", None)
        if callable(prepare):
            # Ray shows an actor only the GPUs it was given: "cuda" is this evaluator's share of one.
            cpus = self._context.get_assigned_resources().get("CPU") or 1.0
            prepare("cuda" if self._gpu else "cpu", max(1, int(cpus)))
        return self._node

    def evaluate(self, precisions: tuple[str, ...], goal: Goal | None = None) -> EvaluationRecord:
        """Evaluate the config of `precisions`; `goal`: stop once it is surely missed (an evaluation that yields
        `running.Running`). Cancelled (`ray.cancel`, its config moot), it stops where it next looks (between two
        Running steps, before a forward call of `tune`'s model) and Ray returns TaskCancelledError for it."""
        config = Config(self._space, precisions)
        record = evaluate_config(
            self._evaluate, config, worker=self._name, device=self._device, node=self._node, goal=goal,
            cancelled=self._context.is_canceled,
        ).record()  # fmt: skip
        self._report_cache()
        return record

    def cache_stats(self) -> dict | None:
        """What the evaluation's lowered-module cache holds (`LoweredCache.stats()`), or None for an evaluation
        without one."""
        stats = getattr(getattr(self._evaluate, "cache", None), "stats", None)
        return stats() if callable(stats) else None

    def _report_cache(self) -> None:
        """The cache's size to the dashboard, tagged with this evaluator's name (which names the run)."""
        stats = self.cache_stats()
        if stats is None:
            return
        if self._gauges is None:
            from ray.util.metrics import Gauge

            self._gauges = {key: Gauge(name, description=text, tag_keys=("evaluator",)) for key, (name, text) in CACHE_GAUGES.items()}
        for key, gauge in self._gauges.items():
            gauge.set(stats[key], tags={"evaluator": self._name})


RemoteEvaluator = ray.remote(Evaluator)
