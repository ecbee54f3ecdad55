"""The PyTorch backend: a model's ops (`ops`), the precision handlers (`precisions`), calibration, a config applied
to a copy of the model and the evaluation of it (`evaluation`), the model digest, and `tune` (`tune`).

torchao is imported here once, quietly: on a CPU it warns on every import about the CUDA kernels it
cannot load and about a torch API it still calls, lines that say nothing about a tuning run.
"""

import logging


def _import_torchao_quietly() -> None:
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        import torchao  # noqa: F401
        import torchao.quantization  # noqa: F401
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


_import_torchao_quietly()
