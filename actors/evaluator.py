"""The evaluator actor: holds the user's evaluation function (shipped once) and evaluates configs."""

from __future__ import annotations

import ray

from raytune_inc.evaluation import EvaluateFn, evaluate_config
from raytune_inc.space import Config, TuningSpace

# What an evaluation returns to the driver: Evaluation.record(), a small tuple, never a tensor.
EvaluationRecord = tuple


class Evaluator:
    """Evaluates configs of one space with one evaluation function, one at a time."""

    def __init__(self, space: TuningSpace, evaluate: EvaluateFn, name: str):
        self._space = space
        self._evaluate = evaluate
        self._name = name
        gpus = ray.get_gpu_ids()
        self._device = f"cuda:{','.join(str(g) for g in gpus)}" if gpus else "cpu"
        self._node = ray.get_runtime_context().get_node_id()  # the history's `node`: which cluster node ran it

    def ready(self) -> str:
        """The id of the Ray node this evaluator runs on, once it is up."""
        return self._node

    def evaluate(self, precisions: tuple[str, ...]) -> EvaluationRecord:
        config = Config(self._space, precisions)
        return evaluate_config(self._evaluate, config, worker=self._name, device=self._device, node=self._node).record()


RemoteEvaluator = ray.remote(Evaluator)
