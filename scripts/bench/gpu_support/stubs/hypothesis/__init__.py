"""A stand-in for hypothesis where it is not installed: property tests are skipped. gpu_check.py's cuda_test part puts
the folder holding it (scripts/bench/gpu_support/stubs) on the test subprocess's PYTHONPATH only where hypothesis is
missing (or with --force-workarounds)."""

import pytest


class _Anything:
    def __call__(self, *args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]  # used as a decorator
        return _Anything()

    def __getattr__(self, name):
        return _Anything()


def given(*args, **kwargs):
    return pytest.mark.skip(reason="hypothesis is not installed here (gpu_check.py's stub stands in for it)")


def settings(*args, **kwargs):
    return _Anything()


def __getattr__(name):
    return _Anything()
