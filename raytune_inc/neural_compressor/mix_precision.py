"""INC 2.6's `neural_compressor.mix_precision.fit`, on raytune-inc's `tune` with auto mixed precision."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

from ..pytorch.checks import check_model
from ..strategies import AutoMixedPrecisionStrategy, DefaultFirstStrategy
from .config import MixedPrecisionConfig
from .fitting import NOT_BF16, evaluation, our_options, refuse, run
from .model import PyTorchModel


def fit(
    model: nn.Module,
    conf: MixedPrecisionConfig | None = None,
    eval_func: Callable[[nn.Module], float] | None = None,
    eval_dataloader: Iterable | None = None,
    eval_metric: Any = None,
    **kwargs: Any,
) -> PyTorchModel | None:
    """Mixed precision as INC 2.6's `mix_precision.fit` (`config=` is the alias of `conf`), tuned by raytune-inc's auto
    mixed precision over the config's precisions less the excluded ones (the first of them is the target; bf16 for the
    module types INC 2.6 gives it, `fitting.BF16_TYPES`): the tuned
    model wrapped, or None when no config meets the goal; without `eval_func` and `eval_dataloader`, every capable op at
    the target, untuned. raytune-inc's own options of `tune` ride in `kwargs`, as in `quantization.fit`."""
    if conf is None:
        conf = kwargs.pop("config", None)
    if not isinstance(conf, MixedPrecisionConfig):
        raise TypeError(f"conf must be a MixedPrecisionConfig, got {type(conf).__name__}")
    refuse(conf.unsupported())
    options = our_options(kwargs)
    check_model(model)
    eval_fn = evaluation(eval_func, eval_dataloader, eval_metric)
    precisions = tuple(p for p in conf.precisions if p not in conf.excluded_precisions)
    strategy = DefaultFirstStrategy(then=None) if eval_fn is None else AutoMixedPrecisionStrategy()
    # bf16 where INC 2.6's adaptor gives it (fp16, which INC 2.6 refuses for PyTorch, goes to every capable op)
    return run(model, conf, eval_fn, None, strategy, precisions, options, "mixed_precision", {}, NOT_BF16 if "bf16" in precisions else None)
