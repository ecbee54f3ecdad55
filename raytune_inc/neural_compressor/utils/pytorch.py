"""INC 2.6's `neural_compressor.utils.pytorch.load`: a saved tuned model rebuilt on its FP32 model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn


def load(
    checkpoint_dir: str | os.PathLike | None = None,
    model: nn.Module | None = None,
    layer_wise: bool = False,
    history_cfg: Any = None,
    **kwargs: Any,
) -> nn.Module:
    """The tuned model `PyTorchModel.save(checkpoint_dir)` wrote, rebuilt on `model` (the FP32 model it was tuned from),
    as a plain module. INC's other sources (a state dict, a best_model.pt, a history_cfg, layer-wise and weight-only
    loading) are refused, naming what to give instead."""
    from ...model.saved import load as load_saved

    if layer_wise or kwargs.get("weight_only") or history_cfg is not None:
        raise ValueError("load: layer_wise, weight_only and history_cfg are INC's own formats; give the directory PyTorchModel.save wrote")
    unknown = set(kwargs) - {"weight_only"}
    if unknown:
        raise TypeError(f"load got unexpected keyword arguments {sorted(unknown)}")
    if model is None:
        raise ValueError("load needs model=, the FP32 model the saved one was tuned from")
    if checkpoint_dir is None or not isinstance(checkpoint_dir, str | os.PathLike) or not Path(checkpoint_dir).is_dir():
        raise ValueError(
            f"load: checkpoint_dir={checkpoint_dir!r} is not a directory: give the directory PyTorchModel.save(root) wrote "
            "(INC's best_model.pt files and state dicts are not read here)"
        )
    return load_saved(checkpoint_dir, model)
