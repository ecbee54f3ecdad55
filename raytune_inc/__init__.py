"""raytune-inc: accuracy-driven low-precision tuning of PyTorch models, run on Ray.

The public names below (`_PUBLIC`, the one list of them: `__all__` and `dir()` come from it) are
imported when first used, so that an evaluator process, which needs only `raytune_inc.space` and
`raytune_inc.evaluation`, does not pay for pyarrow and numpy at start-up, and `tune_space` users
do not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the module (under raytune_inc) that defines it
_PUBLIC = {
    "AccuracyCriterion": "criterion",
    "AutoMixedPrecisionStrategy": "strategies",
    "Config": "space",
    "ConservativeStrategy": "strategies",
    "CpuShareWarning": "errors",
    "DeploymentError": "errors",
    "Evaluation": "records",
    "EvaluatorStartError": "errors",
    "HistoryError": "errors",
    "HistoryWarning": "errors",
    "ModelTuneResult": "model.result",
    "Op": "space",
    "RaytuneError": "errors",
    "Running": "running",
    "Strategy": "strategies",
    "StrategyError": "errors",
    "Trial": "records",
    "TuneResult": "records",
    "TuningError": "errors",
    "TuningSpace": "space",
    "Workers": "workers",
    "compile_model": "pytorch.deployment",
    "get_strategy": "strategies",
    "known_strategies": "strategies",
    "load": "model.saved",
    "load_history": "history",
    "register_strategy": "strategies",
    "tune": "model.tuning",
    "tune_space": "space_tuning",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'raytune_inc' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
