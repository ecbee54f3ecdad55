"""A hash of a model's structure and weights: a checkpoint is only resumed for the same model."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch
from torch import nn


def tensor_chunks(tensor: torch.Tensor) -> Iterator[bytes | memoryview]:
    """The bytes that identify a tensor: its kind, dtype and shape, then its values, for any tensor.

    0-dim tensors (BatchNorm's `num_batches_tracked`), bool, complex, quantized, sparse,
    non-contiguous and tensor subclasses (torchao's int8 weights) included, on any device; a meta
    tensor has no values, so only its kind, dtype and shape count.
    """
    from torch.utils._python_dispatch import is_traceable_wrapper_subclass

    t = tensor.detach()
    yield f"{type(t).__name__}|{t.dtype}|{tuple(t.shape)}|".encode()
    if is_traceable_wrapper_subclass(t):  # e.g. torchao's quantized tensors: their inner tensors
        names, _ = t.__tensor_flatten__()
        for name in names:
            yield from tensor_chunks(getattr(t, name))
        return
    if t.device.type == "meta":
        return
    if t.layout != torch.strided:
        t = t.to_dense()
    if t.is_quantized:
        if t.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            yield f"{t.q_scale()}|{t.q_zero_point()}|".encode()
        else:
            yield from tensor_chunks(t.q_per_channel_scales())
            yield from tensor_chunks(t.q_per_channel_zero_points())
        t = t.int_repr()
    if t.is_complex():
        t = torch.view_as_real(t.resolve_conj())
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    # reshape(-1): a 0-dim tensor cannot be viewed as bytes when its elements are wider than one byte
    # A view of the bytes, not a copy of them: hashlib reads the buffer as it is.
    yield memoryview(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


def model_digest(model: nn.Module) -> str:
    """A hash of the model's structure and weights: a checkpoint is only resumed for the same model."""
    h = hashlib.sha256(repr(model).encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        for chunk in tensor_chunks(tensor):
            h.update(chunk)
    return h.hexdigest()[:16]
