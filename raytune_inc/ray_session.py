"""Getting a Ray to run on: reuse an initialised one, connect to RAY_ADDRESS, or start a local one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import ray


@contextlib.contextmanager
def ray_session() -> Iterator[None]:
    """Make Ray available for the duration of the block.

    An initialised Ray is reused and left as it is. Otherwise `ray.init()` connects to `RAY_ADDRESS` when it
    is set (as under `ray job submit`), else starts a local instance sized to the machine.
    """
    if ray.is_initialized():
        yield
        return
    address = os.environ.get("RAY_ADDRESS")
    try:
        ray.init(address=address or None, log_to_driver=True)
    except ConnectionError as exc:
        raise ConnectionError(f"could not connect to the Ray cluster at RAY_ADDRESS={address!r}: {exc}") from exc
    try:
        yield
    finally:
        # Disconnecting from a cluster stops nothing there; a local instance we started is stopped.
        ray.shutdown()


def cpus_per_evaluator(workers: int) -> float:
    """One CPU per evaluator while the cluster has enough, else an equal share of what it has."""
    total = ray.cluster_resources().get("CPU", 1.0)
    return min(1.0, total / workers)
