"""The floating dtype a model is in, by name: what `tune` takes as the model's own (baseline) precision.

A model loaded as LLMs are (`model.to(torch.bfloat16)`) is tuned from its own dtype: its unchanged ops
stay in it (the space still calls that precision "fp32", meaning "as the model has it"), a lowered op
takes inputs in it and returns outputs in it, and a cast to the model's own dtype is no precision
(see `precisions.py`).
"""

from __future__ import annotations

import torch
from torch import nn

# The floating dtypes a model may be tuned from, by the names the backend and the space use.
MODEL_DTYPES: dict[torch.dtype, str] = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def dtype_name(dtype: torch.dtype) -> str:
    """ "fp32" / "bf16" / "fp16" for a dtype a model may be in (ValueError for another)."""
    try:
        return MODEL_DTYPES[dtype]
    except KeyError:
        known = ", ".join(str(d) for d in MODEL_DTYPES)
        raise ValueError(f"{dtype} is not a dtype a model is tuned from (known: {known})") from None


def floating_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of most of the model's floating parameter bytes (each tensor once; float32 for a model without
    floating parameters). Buffers do not count: an LLM in bf16 keeps e.g. its rotary frequencies in float32."""
    seen: dict[int, torch.Tensor] = {}
    for p in model.parameters():
        if p.is_floating_point():
            seen.setdefault(id(p), p)
    bytes_of: dict[torch.dtype, int] = {}
    for p in seen.values():
        bytes_of[p.dtype] = bytes_of.get(p.dtype, 0) + p.numel() * p.element_size()
    return max(bytes_of, key=bytes_of.__getitem__) if bytes_of else torch.float32


def model_dtype(model: nn.Module) -> str:
    """ "fp32", "bf16" or "fp16": the dtype of most of `model`'s floating parameter bytes (ValueError for a model
    mostly in another dtype, e.g. float64)."""
    return dtype_name(floating_dtype(model))


def module_dtype(module: nn.Module) -> torch.dtype | None:
    """The dtype of a module's own floating parameters (not its children's), where they all have one; else None."""
    dtypes = {p.dtype for p in module._parameters.values() if p is not None and p.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else None
