"""raytune-inc: accuracy-driven low-precision tuning of PyTorch models, run on Ray."""

from .checkpoint import HistoryError, HistoryWarning, load_history
from .criterion import AccuracyCriterion
from .records import Evaluation, Trial, TuneResult
from .run import TuningError
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

__all__ = [
    "AccuracyCriterion",
    "AutoMixedPrecisionStrategy",
    "Config",
    "ConservativeStrategy",
    "Evaluation",
    "HistoryError",
    "HistoryWarning",
    "Op",
    "Strategy",
    "Trial",
    "TuneResult",
    "TuningError",
    "TuningSpace",
    "Workers",
    "get_strategy",
    "known_strategies",
    "load_history",
    "register_strategy",
    "tune_space",
]
