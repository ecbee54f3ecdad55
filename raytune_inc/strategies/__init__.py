"""Tuning strategies as pure sequential generators, registered by name."""

from .auto_mixed_precision import AutoMixedPrecisionStrategy
from .base import Candidate, ForkablePlan, Outcome, Plan, Strategy, get_strategy, known_strategies, register_strategy
from .conservative import ConservativeStrategy, is_op_wise, op_type_order
from .default_first import DefaultFirstStrategy, default_config

__all__ = [
    "AutoMixedPrecisionStrategy",
    "Candidate",
    "ConservativeStrategy",
    "DefaultFirstStrategy",
    "default_config",
    "Outcome",
    "Plan",
    "ForkablePlan",
    "Strategy",
    "get_strategy",
    "is_op_wise",
    "known_strategies",
    "op_type_order",
    "register_strategy",
]
