"""The PyTorch backend: a model's ops (`ops`), the precision registry (`precisions`), calibration and what it chooses
(`calibration`, `qparams`), a config applied to the FP32 model (`lowering`) and evaluated (`model_evaluation`), the
checks of `tune`'s inputs (`checks`, `batches`), the model digest, the sensitivity, the compiled model and its check
(`deployment`), latency and size (`costs`). It knows modules and precisions only: nothing of runs, strategies, the
speculation or Ray (`scripts/layers.py --check` holds it so); `tune` itself is the model level's (`raytune_inc.model`).

torchao is imported where it is used (`import_torchao`), quietly: on a CPU it warns on every import
about the CUDA kernels it cannot load and about a torch API it still calls, lines that say nothing
about a tuning run; and an evaluator that runs only static int8 and bf16 never pays its seconds of
import.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType


def import_torchao(name: str = "torchao.quantization") -> ModuleType:
    """`import name` (a torchao module), with torchao's import-time warnings silenced."""
    loggers = [logging.getLogger(logger) for logger in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        return importlib.import_module(name)
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
