"""The evaluator actor: holds the user's evaluation function (shipped once) and evaluates configs."""

from __future__ import annotations

import ray

from raytune_inc.evaluation import EvaluateFn, evaluate_config
from raytune_inc.space import Config, TuningSpace

# What an evaluation returns to the driver: Evaluation.record(), a small tuple, never a tensor.
EvaluationRecord = tuple


class Evaluator:
    """Evaluates configs of one space with one evaluation function, one at a time.

    An evaluation with a `prepare(device, num_threads)` method (the model-level one of `tune`)
    is told once, when the evaluator starts, where it runs: the device of the evaluator's GPU
    share or the CPU, and as many threads as the evaluator has CPUs.
    """

    def __init__(self, space: TuningSpace, evaluate: EvaluateFn, name: str):
        self._space = space
        self._evaluate = evaluate
        self._name = name
        gpus = ray.get_gpu_ids()
        self._device = f"cuda:{','.join(str(g) for g in gpus)}" if gpus else "cpu"
        context = ray.get_runtime_context()
        self._node = context.get_node_id()  # the history's `node`: which cluster node ran it
        prepare = getattr(evaluate, "prepare", None)
        if callable(prepare):
            # Ray shows an actor only the GPUs it was given: "cuda" is this evaluator's share of one.
            cpus = context.get_assigned_resources().get("CPU") or 1.0
            prepare("cuda" if gpus else "cpu", max(1, int(cpus)))

    def ready(self) -> str:
        """The id of the Ray node this evaluator runs on, once it is up."""
        return self._node

    def evaluate(self, precisions: tuple[str, ...]) -> EvaluationRecord:
        config = Config(self._space, precisions)
        return evaluate_config(self._evaluate, config, worker=self._name, device=self._device, node=self._node).record()


RemoteEvaluator = ray.remote(Evaluator)
