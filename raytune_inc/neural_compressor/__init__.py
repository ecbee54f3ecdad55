"""Neural Compressor 2.x's PyTorch API on raytune-inc: a script written for INC 2.6 runs with its imports changed from
`neural_compressor` to `raytune_inc.neural_compressor`, and nothing else.

The names INC 2.6's `__init__` exports for these (`PostTrainingQuantConfig`, `MixedPrecisionConfig`, `Metric`,
`METRICS`) and its submodules (`config`, `quantization`, `mix_precision`, `metric`, `utils.pytorch`). docs/
neural_compressor.md says what carries over, what maps to what and what is refused.
"""

from . import config, metric, mix_precision, quantization
from .config import AccuracyCriterion, MixedPrecisionConfig, PostTrainingQuantConfig, TuningCriterion
from .metric import METRICS, BaseMetric, Metric
from .model import PyTorchModel

__all__ = [
    "METRICS",
    "AccuracyCriterion",
    "BaseMetric",
    "Metric",
    "MixedPrecisionConfig",
    "PostTrainingQuantConfig",
    "PyTorchModel",
    "TuningCriterion",
    "config",
    "metric",
    "mix_precision",
    "quantization",
]
