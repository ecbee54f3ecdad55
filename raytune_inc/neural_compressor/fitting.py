"""What `quantization.fit` and `mix_precision.fit` share: INC 2.6's evaluation forms, raytune-inc's own keyword
arguments, the run on `tune`, and INC's answer (the tuned model wrapped, or None when no config meets the goal)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from torch import nn

from ..strategies import Strategy
from .config import our_op_dict
from .data import MetricEvaluation, Unevaluated, check_dataloader
from .metric import resolve
from .model import PyTorchModel, q_config

logger = logging.getLogger("raytune_inc.neural_compressor")

# The module types INC 2.6's PyTorch adaptor gives bf16 in a quantization (pytorch_cpu.yaml's bf16 list, matched against
# module class names: its functional names bmm, mm, addmm, _convolution, ... name no module)
BF16_TYPES = ("Linear", "LSTM", "LSTMCell", "GRU", "GRUCell")
# an op_type_dict rule: every other module type may take any precision but bf16
NOT_BF16 = {f"(?!({'|'.join(BF16_TYPES)})$).*": ("fp32", "fp16", "int8_dynamic", "int8")}
# INC 2.6's names of the strategies that run here
INC_NAMES = {"default_first": "auto", "conservative": "conservative", "auto_mixed_precision": "automixedprecision"}
# raytune-inc's own keyword arguments of `tune` that ride in fit's **kwargs, with tune's defaults
OURS = ("workers", "checkpoint", "resume", "eval_timeout", "skip_slower", "sensitivity")


def refuse(unsupported: Sequence[str]) -> None:
    """ValueError listing what a config asks for that raytune-inc does not have, each with what to use instead."""
    if unsupported:
        raise ValueError("not available in raytune-inc: " + "; ".join(unsupported))


def our_options(kwargs: dict) -> dict:
    """fit's **kwargs: raytune-inc's own options of `tune` (TypeError naming any other, which INC would have ignored)."""
    unknown = sorted(set(kwargs) - set(OURS))
    if unknown:
        raise TypeError(f"fit got unexpected keyword arguments {unknown}; raytune-inc's own are {', '.join(OURS)}")
    return dict(kwargs)


def evaluation(eval_func: Callable | None, eval_dataloader: Iterable | None, eval_metric: Any) -> Callable[[nn.Module], float] | None:
    """The eval_fn of a fit: `eval_func` (INC uses it over a dataloader given too), else the metric over `eval_dataloader`;
    None when there is neither (quantize with the default config, no tuning)."""
    check_dataloader("eval_dataloader", eval_dataloader)
    if eval_func is not None:
        if not callable(eval_func):
            raise TypeError(f"eval_func must be callable (model -> a scalar, higher is better by default), got {type(eval_func).__name__}")
        if eval_dataloader is not None:
            logger.warning("Ignore the evaluation dataloader due to evaluation function exist.")
        if eval_metric is not None:
            logger.warning("Ignore the evaluation metric due to evaluation function exist.")
        logger.info("Execute the tuning process due to detect the evaluation function.")
        return eval_func
    if eval_dataloader is not None:
        if eval_metric is None:
            raise ValueError(
                "Detected evaluation dataloader but no evaluation metric, Please provide both to perform tuning process or "
                "neither for the default quantization."
            )
        logger.info("Create evaluation function according to evaluation dataloader and metric and Execute the tuning process.")
        return MetricEvaluation(eval_dataloader, resolve(eval_metric))
    if eval_metric is not None:
        raise ValueError("eval_metric needs eval_dataloader, the (input, label) batches it is measured on")
    logger.info("Quantize model without tuning!")
    return None


def run(
    model: nn.Module,
    conf: Any,
    eval_fn: Callable[[nn.Module], float] | None,
    calib_data: list | None,
    strategy: Strategy,
    precisions: tuple[str, ...],
    options: dict,
    approach: str,
    extra: dict,
    type_rules: dict[str, tuple[str, ...]] | None = None,
) -> PyTorchModel | None:
    """`tune` with what the INC config says (and `type_rules`, op_type_dict rules of the layer's own, applied with the
    config's), then INC's answer: the tuned model wrapped, or None (with INC's log line)."""
    from ..model.tuning import tune

    tuning = conf.tuning_criterion
    settings: dict[str, Any] = {"max_trials": tuning.max_trials, "timeout": tuning.timeout}
    if eval_fn is None:  # the default config only, scored 1.0 as the baseline is: nothing to spread over evaluators
        eval_fn, settings = Unevaluated(), {"max_trials": 1, "timeout": 0}
        options = {"workers": 0, "sensitivity": False, **options}
    else:
        logger.info("Start %s tuning.", INC_NAMES.get(strategy.name, strategy.name))
    res = tune(
        model,
        eval_fn,
        calib_data,
        strategy=strategy,
        accuracy=conf.accuracy_criterion.ours(),
        precisions=precisions,
        op_name_dict=our_op_dict("op_name_dict", conf.op_name_dict),
        op_type_dict={**(our_op_dict("op_type_dict", conf.op_type_dict) or {}), **(type_rules or {})} or None,
        example_inputs=conf.example_inputs,
        **settings,
        **options,
    )
    if res.config is None:
        logger.error("Specified timeout or max trials is reached! Not found any quantized model which meet accuracy goal. Exit.")
        return None
    logger.info("Specified timeout or max trials is reached! Found a quantized model which meet accuracy goal. Exit.")
    trial = next((t.seq for t in reversed(res.trials) if t.meets and t.config == res.config), None)
    return PyTorchModel(res.model, res, model, q_config(model, res.config, approach, {**extra, "trial_number": trial}))
