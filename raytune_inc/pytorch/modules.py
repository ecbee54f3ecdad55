"""What kind of module a module is, as far as lowering it goes; and where a model's tensors are."""

from __future__ import annotations

import torch
from torch import nn

CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)

# Module kinds that are left out of the space on purpose, with the reason.
LEFT_OUT: dict[type[nn.Module], str] = {
    nn.modules.batchnorm._BatchNorm: "BatchNorm stays FP32: at inference it is a per-channel scale and shift that the int8 "
    "convolution before it absorbs (folded into its weights), and alone it is too cheap to gain from a lower precision",
}


def has_floating_weights(module: nn.Module) -> bool:
    """Whether `module` has weights of its own (not its children's), all floating point."""
    own = [p for p in module._parameters.values() if p is not None]
    return bool(own) and all(p.is_floating_point() for p in own)


def is_transposed_linear(module: nn.Module) -> bool:
    """transformers' `Conv1D` (GPT-2 and its relatives): a Linear whose weight is stored transposed, (in, out)."""
    weight = getattr(module, "weight", None)
    return (
        type(module).__name__ == "Conv1D"
        and type(module).__module__.startswith("transformers")
        and isinstance(weight, torch.Tensor)
        and weight.dim() == 2
    )


def as_linear(module: nn.Module) -> nn.Linear:
    """An nn.Linear computing what the transposed-weight `module` (transformers' Conv1D) computes."""
    n_in, n_out = module.weight.shape
    bias = getattr(module, "bias", None)
    linear = nn.Linear(n_in, n_out, bias=bias is not None, device=module.weight.device, dtype=module.weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(module.weight.detach().t())
        if bias is not None:
            linear.bias.copy_(bias.detach())
    return linear


def model_device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def fold_batchnorm(conv: nn.Module, norm: nn.Module) -> nn.Module:
    """A new convolution computing `norm(conv(x))` at inference: the BatchNorm's scale and shift folded into the
    convolution's weights and bias (torch's `fuse_conv_bn_eval`)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    conv_mode, norm_mode = conv.training, norm.training
    conv.eval()
    norm.eval()
    try:
        return fuse_conv_bn_eval(conv, norm)
    finally:
        conv.train(conv_mode)
        norm.train(norm_mode)


def tensor_bytes(tensor: torch.Tensor) -> int:
    """The bytes a tensor holds: its elements, or for a tensor subclass (torchao's int8 weights) its inner tensors'."""
    from torch.utils._python_dispatch import is_traceable_wrapper_subclass

    if is_traceable_wrapper_subclass(tensor):
        names, _ = tensor.__tensor_flatten__()
        return sum(tensor_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()


def module_bytes(module: nn.Module) -> int:
    """The bytes of a module's parameters and buffers (each distinct tensor once), without serializing anything."""
    seen: dict[int, torch.Tensor] = {}
    for t in (*module.parameters(), *module.buffers()):
        seen.setdefault(id(t), t)
    return sum(tensor_bytes(t) for t in seen.values())
