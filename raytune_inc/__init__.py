"""raytune-inc: accuracy-driven low-precision tuning of PyTorch models, run on Ray.

The names below are imported when first used, so that an evaluator process, which
needs only `raytune_inc.space` and `raytune_inc.evaluation`, does not pay for pyarrow
and numpy at start-up, and `tune_space` users do not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AccuracyCriterion": "criterion",
    "AutoMixedPrecisionStrategy": "strategies",
    "Config": "space",
    "ConservativeStrategy": "strategies",
    "Evaluation": "records",
    "CpuShareWarning": "errors",
    "EvaluatorStartError": "errors",
    "ModelTuneResult": "pytorch.result",
    "compile_model": "pytorch.deployment",
    "DeploymentError": "errors",
    "load": "pytorch.saved",
    "HistoryError": "errors",
    "HistoryWarning": "errors",
    "Op": "space",
    "Strategy": "strategies",
    "Trial": "records",
    "TuneResult": "records",
    "RaytuneError": "errors",
    "StrategyError": "errors",
    "TuningError": "errors",
    "TuningSpace": "space",
    "Workers": "workers",
    "get_strategy": "strategies",
    "known_strategies": "strategies",
    "load_history": "history",
    "register_strategy": "strategies",
    "tune": "pytorch.tune",
    "tune_space": "tuner",
}
__all__ = [
    "AccuracyCriterion",
    "AutoMixedPrecisionStrategy",
    "Config",
    "ConservativeStrategy",
    "CpuShareWarning",
    "DeploymentError",
    "Evaluation",
    "EvaluatorStartError",
    "HistoryError",
    "HistoryWarning",
    "ModelTuneResult",
    "Op",
    "RaytuneError",
    "Strategy",
    "StrategyError",
    "Trial",
    "TuneResult",
    "TuningError",
    "TuningSpace",
    "Workers",
    "compile_model",
    "get_strategy",
    "known_strategies",
    "load",
    "load_history",
    "register_strategy",
    "tune",
    "tune_space",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'raytune_inc' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from .criterion import AccuracyCriterion
    from .errors import (
        CpuShareWarning,
        DeploymentError,
        EvaluatorStartError,
        HistoryError,
        HistoryWarning,
        RaytuneError,
        StrategyError,
        TuningError,
    )
    from .history import load_history
    from .pytorch.deployment import compile_model
    from .pytorch.result import ModelTuneResult
    from .pytorch.saved import load
    from .pytorch.tune import tune
    from .records import Evaluation, Trial, TuneResult
    from .space import Config, Op, TuningSpace
    from .strategies import (
        AutoMixedPrecisionStrategy,
        ConservativeStrategy,
        Strategy,
        get_strategy,
        known_strategies,
        register_strategy,
    )
    from .tuner import tune_space
    from .workers import Workers
