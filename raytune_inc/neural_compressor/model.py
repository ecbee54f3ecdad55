"""What `fit` returns: Neural Compressor 2.6's model wrapper, an `nn.Module` that runs the tuned model."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from torch import nn

logger = logging.getLogger("raytune_inc.neural_compressor")

# raytune-inc's precisions as INC 2.6's q_config names each side's dtype
_DTYPES = {
    "fp32": ("fp32", "fp32"),
    "bf16": ("bf16", "bf16"),
    "fp16": ("fp16", "fp16"),
    "int8_dynamic": ("int8", "uint8"),
    "int8": ("int8", "uint8"),
}


class PyTorchModel(nn.Module):
    """The tuned model, as INC 2.6's `PyTorchModel`: calling it runs `.model` (the tuned module), `.save(root)` writes it
    (raytune-inc's pickle-free format; `utils.pytorch.load` rebuilds it), `.q_config` says each op's dtypes, and
    `.result` holds the whole tuning (trials, accuracy, baseline, history; `ModelTuneResult`), `.compile()` its checked
    compiled model. `.fp32_model` is the model `fit` was given (not a submodule: `.to()` and `state_dict()` leave it)."""

    def __init__(self, model: nn.Module, result: Any = None, fp32_model: nn.Module | None = None, q_config: dict | None = None):
        super().__init__()
        self._model = model
        self.__dict__["_fp32_model"] = fp32_model
        self.result, self.q_config, self.is_quantized = result, q_config, True

    @property
    def model(self) -> nn.Module:
        return self._model

    @model.setter
    def model(self, model: nn.Module) -> None:
        self._model = model

    @property
    def fp32_model(self) -> nn.Module | None:
        return self.__dict__["_fp32_model"]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._model(*args, **kwargs)

    def framework(self) -> str:
        return "pytorch"

    def save(self, root: str | os.PathLike | None = None) -> Path:
        """Write the tuned model to `root` (INC's default: ./nc_workspace/<time>/), without pickle."""
        if root is None:
            root = Path("nc_workspace") / time.strftime("%Y-%m-%d_%H-%M-%S")
        path = self.result.save(root)
        logger.info("Save config file and weights of quantized model to %s.", os.path.abspath(path))
        return path

    def compile(self):
        """The tuned model compiled and checked as deployed (`ModelTuneResult.compile`)."""
        return self.result.compile()


def q_config(fp32_model: nn.Module, config: dict[str, str], approach: str, extra: dict) -> dict:
    """INC 2.6's q_config of a tuned model: "op" maps (op name, op type) to its weight and activation dtypes (and, for int8,
    whether its activations are quantized statically or dynamically), then `extra` (approach, calibration, trial)."""
    ops = {}
    for name, precision in config.items():
        weight, activation = _DTYPES[precision]
        entry = {"weight": {"dtype": weight}, "activation": {"dtype": activation}}
        if precision in ("int8", "int8_dynamic"):
            entry["activation"]["quant_mode"] = "static" if precision == "int8" else "dynamic"
        ops[(name, type(fp32_model.get_submodule(name)).__name__)] = entry
    return {"op": ops, "approach": approach, "framework": "raytune_inc", **extra}
