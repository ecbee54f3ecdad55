"""A pytest plugin (`-p gpu_check_ray`) that gpu_check.py's cuda_test part puts on the test subprocess's PYTHONPATH
where ray is imported from PYTHONPATH (the GPU machine's /tmp/site), or with --force-workarounds: start Ray before
conftest.py's `ray_local` fixture (which reuses it), with the tests folder put in front of the evaluators' PYTHONPATH
instead of replacing it (ray itself is on that path here)."""

import os

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    import ray
    import torch

    if not ray.is_initialized():
        tests = os.path.join(str(session.config.rootpath), "tests")
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        ray.init(
            num_cpus=4,
            num_gpus=gpus,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": tests + os.pathsep + "${PYTHONPATH}"}},
        )
