"""What several test modules and the job scripts they start (checkpoint_job.py, cluster_job.py) share.

The tests folder is on the path of the tests, of the job scripts (run as `python tests/NAME.py`, or with
`own_ray_env()`), and of the Ray evaluator processes (conftest.py's runtime_env, and `own_ray_env()` for
a job's own Ray), so the evaluations defined here unpickle wherever they are sent.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from raytune_inc import tune_space
from raytune_inc.records import TuneResult
from raytune_inc.space import TuningSpace
from raytune_inc.synthetic import AdditiveLossEvaluation, random_space

TESTS = Path(__file__).resolve().parent
SENSITIVE = 0.3  # the job scripts' evaluation: enough sensitive ops for op-wise fallbacks, so many trials


def committed(res: TuneResult) -> list[tuple]:
    """The committed trials of a result, to compare two runs by."""
    return [(t.config, t.accuracy, t.meets, t.stage) for t in res.trials]


def same_trials(a: TuneResult, b: TuneResult, rel: float = 1e-6) -> bool:
    """Whether two runs of a torch model committed the same trials: the same configs, stages and verdicts, and the same
    accuracies up to their last bits. A torch evaluation may round differently in another process (its thread count,
    its memory's alignment); the contract (same trials, same result) is the sequential run's for an evaluation that
    returns the same value for the same config, and such a difference changes a decision only on the goal itself."""
    if [(t.config, t.meets, t.stage) for t in a.trials] != [(t.config, t.meets, t.stage) for t in b.trials]:
        return False
    return all(x.accuracy == pytest.approx(y.accuracy, rel=rel) for x, y in zip(a.trials, b.trials, strict=True))


def outcome(res: TuneResult) -> dict[str, Any]:
    """A result's config and committed trials ([config, accuracy, meets] each) as the job scripts print them, read back."""
    return json.loads(json.dumps({"config": res.config, "trials": [[t.config, t.accuracy, t.meets] for t in res.trials]}))


def reference(ops: int, seed: int) -> dict[str, Any]:
    """The `outcome` of the job scripts' tuning (a `random_space(ops, seed)`, `LoggedEvaluation`'s accuracies), run sequentially."""
    space = random_space(ops, seed=seed)
    return outcome(tune_space(space, AdditiveLossEvaluation(space, seed=seed, sensitive=SENSITIVE), workers=0))


def own_ray_env(**extra: str) -> dict[str, str]:
    """The environment for a child process that starts a Ray of its own: this one without RAY_ADDRESS (it would join
    that cluster instead), with the repository and the tests folder first on PYTHONPATH (for its Ray workers too)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS.parent), str(TESTS), *filter(None, [env.get("PYTHONPATH")])])
    return {**env, **extra}


def first_time(marker: str | Path) -> bool:
    """Whether this is the first call for `marker` (a file it creates), in any process: exactly one caller gets True."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


class LoggedEvaluation:
    """The job scripts' additive-loss evaluation, `cost` seconds long, appending a line to `log` per evaluation:
    its config's key as it starts; with `where=True` (on Ray), 'start|end KEY NODE_ID EVALUATOR' as it starts and ends."""

    def __init__(self, space: TuningSpace, seed: int, log: str | Path, cost: float, where: bool = False):
        self.space = space
        self.inner = AdditiveLossEvaluation(space, seed=seed, sensitive=SENSITIVE, cost=cost)
        self.log = str(log)
        self.where = where

    def _write(self, line: str) -> None:
        with open(self.log, "a") as f:  # one short write in append mode: lines of concurrent evaluators never mix
            f.write(line + "\n")

    def __call__(self, config: dict[str, str]) -> float:
        key = self.space.config(config).key()
        if not self.where:
            self._write(key)
            return self.inner(config)
        import ray

        context = ray.get_runtime_context()
        where = f"{key} {context.get_node_id()} {context.get_actor_name()}"
        self._write(f"start {where}")
        accuracy = self.inner(config)
        self._write(f"end {where}")
        return accuracy


class Hangs:
    """An additive-loss evaluation that hangs on `victim` (a config dict): in one long `time.sleep` ("sleep"), in a
    Python loop of short ones ("loop", which gives up with an error after a minute, so that a test of a deadline that
    never comes fails instead of hanging), or, to compare with, fails at once ("raise"). Each call appends its config's
    key to `log` as it starts."""

    def __init__(self, space: TuningSpace, seed: int, victim: dict[str, str], log: str | Path, how: str = "sleep"):
        self.space = space
        self.inner = AdditiveLossEvaluation(space, seed=seed, sensitive=SENSITIVE)
        self.victim = victim
        self.log = str(log)
        self.how = how

    def __call__(self, config: dict[str, str]) -> float:
        with open(self.log, "a") as f:
            f.write(self.space.config(config).key() + "\n")
        if config == self.victim:
            if self.how == "raise":
                raise RuntimeError("the victim fails at once")
            if self.how == "sleep":
                time.sleep(3600)
            end = time.monotonic() + 60
            while time.monotonic() < end:
                time.sleep(0.01)
            raise AssertionError("the evaluation was not interrupted within a minute")
        return self.inner(config)

    def calls(self) -> list[str]:
        """The config key of every call so far, in order."""
        return Path(self.log).read_text().splitlines() if Path(self.log).exists() else []


def seeded_mlp(seed: int):
    """A small MLP (5 Linear, a LayerNorm) with the weights of `seed`: the same model, and digest, in every process."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(
        *(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.LayerNorm(64)),
        *(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)),
    ).eval()


def mlp_inputs():
    """512 fixed inputs of `seeded_mlp`: its calibration batches and what `LoggedAgreement` scores on."""
    import torch

    return torch.randn(512, 16, generator=torch.Generator().manual_seed(1))


class LoggedAgreement:
    """eval_fn of the model-level job: how often the model's top class is the FP32 `model`'s on `mlp_inputs()` (a
    multiple of 1/512, which a last-bit difference between processes does not move), `cost` seconds long. As it
    starts, it appends the key of the config it was given (each op's precision, as the lowered modules say) to `log`."""

    def __init__(self, model, log: str | Path, cost: float):
        from raytune_inc.pytorch.ops import discover_ops

        self.space = discover_ops(model)
        self.inputs = mlp_inputs()
        self.labels = model(self.inputs).argmax(1).detach()
        self.log = str(log)
        self.cost = cost

    def __call__(self, model) -> float:
        config = {name: getattr(model.get_submodule(name), "raytune_precision", "fp32") for name in self.space.names}
        with open(self.log, "a") as f:
            f.write(self.space.config(config).key() + "\n")
        time.sleep(self.cost)
        return float((model(self.inputs).argmax(1) == self.labels).float().mean())


def run_on(executor, space, evaluate, **settings):
    """`tune_space` of `space` on an executor made by the test (e.g. a RayExecutor with its own `max_lost`)."""
    from raytune_inc.run import TuningRun
    from raytune_inc.settings import RunSettings
    from raytune_inc.space_tuning import execute

    try:
        return execute(TuningRun(space, evaluate, RunSettings(**settings)), executor)
    finally:
        executor.close()
