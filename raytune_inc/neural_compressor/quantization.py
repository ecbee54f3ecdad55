"""INC 2.6's `neural_compressor.quantization.fit`, on raytune-inc's `tune`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

from ..pytorch.checks import check_model
from ..strategies import ConservativeStrategy, DefaultFirstStrategy
from .config import PostTrainingQuantConfig
from .data import calibration_batches, check_dataloader, recorded_calibration
from .fitting import NOT_BF16, evaluation, our_options, refuse, run
from .model import PyTorchModel

# INC 2.6's approaches as raytune-inc's precisions (bf16 joins them as INC adds it: see `precisions`)
APPROACH_PRECISIONS = {"static": ("int8",), "dynamic": ("int8_dynamic",), "auto": ("int8_dynamic", "int8")}


def bf16_supported() -> bool:
    """Whether this CPU has native bf16 (AVX512-BF16 or AMX), where INC 2.6 adds bf16 to a quantization's precisions."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def precisions(conf: PostTrainingQuantConfig) -> tuple[str, ...]:
    """The precisions a quantization config tunes over: its approach's int8, with bf16 first where the CPU has native
    bf16 and `excluded_precisions` does not name it (as INC 2.6 adds it, for the module types of `fitting.BF16_TYPES` only)."""
    ours = APPROACH_PRECISIONS[conf.short_approach]
    return ("bf16", *ours) if conf.use_bf16 and bf16_supported() else ours


def fit(
    model: nn.Module,
    conf: PostTrainingQuantConfig,
    calib_dataloader: Iterable | None = None,
    calib_func: Callable[[nn.Module], Any] | None = None,
    eval_func: Callable[[nn.Module], float] | None = None,
    eval_dataloader: Iterable | None = None,
    eval_metric: Any = None,
    **kwargs: Any,
) -> PyTorchModel | None:
    """Quantize `model` as INC 2.6's `fit` does, tuned by raytune-inc: the tuned model wrapped (`PyTorchModel`), or None
    when no config meets the goal. `quant_level=0` runs conservative; `"auto"` the default config first, then
    conservative; without `eval_func` and `eval_dataloader` the default config is returned untuned. raytune-inc's own
    options of `tune` ride in `kwargs` (workers, checkpoint, resume, eval_timeout, skip_slower, sensitivity), with
    tune's defaults. docs/neural_compressor.md says what maps to what."""
    if not isinstance(conf, PostTrainingQuantConfig):
        raise TypeError(
            f"conf must be a PostTrainingQuantConfig, got {type(conf).__name__} (mix precision: mix_precision.fit with a "
            "MixedPrecisionConfig; quantization-aware training is not here)"
        )
    refuse(conf.unsupported())
    options = our_options(kwargs)
    check_model(model)
    check_dataloader("calib_dataloader", calib_dataloader)
    if calib_func is not None and not callable(calib_func):
        raise TypeError(
            f"calib_func must be callable (model -> None, running the model on calibration data), got {type(calib_func).__name__}"
        )
    eval_fn = evaluation(eval_func, eval_dataloader, eval_metric)
    approach = conf.short_approach
    calib_data = None
    if calib_func is not None and approach != "dynamic":  # INC does not calibrate dynamic quantization
        calib_data = recorded_calibration(model, calib_func)
    elif calib_dataloader is not None:
        calib_data = calibration_batches(calib_dataloader, conf.calibration_sampling_size[0])
    elif approach != "dynamic":
        raise ValueError(
            f"approach={approach!r} quantizes activations statically: give calib_dataloader (batches of (input, label) or "
            "inputs) or calib_func (which runs the model on calibration data), or use approach='dynamic'"
        )
    if eval_fn is None:
        strategy = DefaultFirstStrategy(then=None)
    elif conf.quant_level == 0:
        strategy = ConservativeStrategy()
    else:
        strategy = DefaultFirstStrategy()
    extra = {"calib_sampling_size": conf.calibration_sampling_size[0], "calib_iteration": 0 if calib_data is None else len(calib_data)}
    chosen = precisions(conf)
    rules = NOT_BF16 if "bf16" in chosen else {}
    return run(model, conf, eval_fn, calib_data, strategy, chosen, options, conf.approach, extra, rules)
