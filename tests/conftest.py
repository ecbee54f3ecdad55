"""Shared fixtures: one Ray instance for the whole test session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray, started once per session; runs with workers >= 1 reuse it."""
    import ray

    if not ray.is_initialized():
        # Evaluation functions defined in test modules must import in the evaluator processes too.
        tests = str(Path(__file__).parent)
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": tests}})
    yield ray
    ray.shutdown()
