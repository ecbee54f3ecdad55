"""The evaluator actor: holds the user's evaluation function (shipped once) and evaluates configs."""

from __future__ import annotations

import importlib

import ray

from raytune_inc.evaluation import EvaluateFn, evaluate_config
from raytune_inc.space import Config, TuningSpace

# What an evaluation returns to the driver: Evaluation.record(), a small tuple, never a tensor.
EvaluationRecord = tuple


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

    def load(self, space: TuningSpace, evaluate: EvaluateFn) -> str:
        """Take the space and the evaluation, and get it ready; returns the id of the Ray node this evaluator runs on."""
        self._space, self._evaluate = space, evaluate
        prepare = getattr(evaluate, "prepare", None)
        if callable(prepare):
            # Ray shows an actor only the GPUs it was given: "cuda" is this evaluator's share of one.
            cpus = self._context.get_assigned_resources().get("CPU") or 1.0
            prepare("cuda" if self._gpu else "cpu", max(1, int(cpus)))
        return self._node

    def evaluate(self, precisions: tuple[str, ...]) -> EvaluationRecord:
        config = Config(self._space, precisions)
        return evaluate_config(self._evaluate, config, worker=self._name, device=self._device, node=self._node).record()


RemoteEvaluator = ray.remote(Evaluator)
