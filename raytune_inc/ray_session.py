"""Getting a Ray to run on: reuse an initialised one, connect to RAY_ADDRESS, or start a local one."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import ray
from ray.job_config import JobConfig

# RAY_ADDRESS values that name no host to check: Ray finds the cluster itself.
_FOUND_BY_RAY = ("auto", "local")


def check_address(address: str, timeout: float = 5.0) -> None:
    """Raise ConnectionError, in one line, when the cluster address `address` names a host and port that
    cannot be reached (Ray itself would retry for a minute before it fails)."""
    if address in _FOUND_BY_RAY:
        return
    split = urlsplit(address if "://" in address else f"tcp://{address}")
    if split.scheme in ("http", "https"):
        raise ConnectionError(
            f"RAY_ADDRESS={address!r} is a dashboard (job submission) address; a driver connects to the cluster's "
            "GCS address, host:port (6379 by default), or ray://host:10001 for Ray Client"
        )
    try:
        host, port = split.hostname, split.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise ConnectionError(f"RAY_ADDRESS={address!r} is not a Ray cluster address (host:port, ray://host:port, auto or local)")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ConnectionError(
            f"cannot reach the Ray cluster at RAY_ADDRESS={address!r}: {reason}; start one with `ray start --head` "
            "or unset RAY_ADDRESS to run on a local Ray"
        ) from None


@contextlib.contextmanager
def ray_session(job_name: str | None = None) -> Iterator[None]:
    """Make Ray available for the duration of the block.

    An initialised Ray is reused and left as it is. Otherwise `ray.init()` connects to `RAY_ADDRESS` when it
    is set (as under `ray job submit`), else starts a local instance sized to the machine. The driver's job
    carries `job_name` in its metadata (key `job_name`), which the dashboard's job page shows.
    """
    if ray.is_initialized():
        yield
        return
    address = os.environ.get("RAY_ADDRESS", "").strip()
    if address:
        check_address(address)
    job_config = JobConfig(metadata={"job_name": job_name}) if job_name else None
    try:
        ray.init(address=address or None, log_to_driver=True, job_config=job_config)
    except ConnectionError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConnectionError(f"could not connect to the Ray cluster at RAY_ADDRESS={address!r}: {first}") from exc
    try:
        yield
    finally:
        # Disconnecting from a cluster stops nothing there; a local instance we started is stopped.
        ray.shutdown()


def cpus_per_evaluator(workers: int) -> float:
    """One CPU per evaluator while the cluster has enough, else an equal share of what it has."""
    total = ray.cluster_resources().get("CPU", 1.0)
    return min(1.0, total / workers)
