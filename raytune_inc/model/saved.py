"""A tuned model saved without pickle, and loaded again onto its FP32 model.

A saved directory holds `tuned.json` (the per-op config, the calibration statistics, the FP32
model's digest and op list, the versions) and `weights.safetensors` (the tensors of every
lowered op, a tensor subclass as its inner tensors). `load(directory, fp32_model)` checks that
`fp32_model` is the model that was tuned, rebuilds the tuned model from it with the saved config
and calibration, and puts the saved weights in place.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from torch import nn

from ..pytorch.checks import check_model
from ..pytorch.digest import model_digest
from ..pytorch.lowering import apply_config
from ..pytorch.ops import discover_ops
from ..pytorch.qparams import Calibration
from ..space import FP32
from ..versions import package_versions

FORMAT = 1
CONFIG_FILE, WEIGHTS_FILE = "tuned.json", "weights.safetensors"


def _flat(prefix: str, tensor: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
    from torch.utils._python_dispatch import is_traceable_wrapper_subclass

    if is_traceable_wrapper_subclass(tensor):
        names, _ = tensor.__tensor_flatten__()
        for name in names:
            yield from _flat(f"{prefix}::{name}", getattr(tensor, name))
    else:
        yield prefix, tensor


def lowered_tensors(model: nn.Module, config: Mapping[str, str]) -> dict[str, torch.Tensor]:
    """Every tensor of the lowered ops of `model`, by `op.key` (a tensor subclass's inner tensors as `op.key::inner`)."""
    out: dict[str, torch.Tensor] = {}
    for name, precision in config.items():
        if precision == FP32:
            continue
        for key, tensor in model.get_submodule(name).state_dict().items():
            for flat_key, flat in _flat(f"{name}.{key}", tensor.detach()):
                out[flat_key] = flat.cpu().contiguous()
    return out


def _ops(model: nn.Module) -> list[list]:
    return [[op.name, op.type] for op in discover_ops(model)]


def save(
    directory: str | os.PathLike, model: nn.Module, fp32_model: nn.Module, config: Mapping[str, str], calibration: Calibration
) -> Path:
    """Write the tuned `model` (made from `fp32_model` with `config` and `calibration`) to `directory`."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    record = {
        "format": FORMAT,
        "config": dict(config),
        "calibration": calibration.as_json(),
        "model": model_digest(fp32_model),
        "ops": _ops(fp32_model),
        "versions": package_versions("raytune-inc", "torch", "torchao"),
    }
    save_file(lowered_tensors(model, config), str(directory / WEIGHTS_FILE))
    (directory / CONFIG_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return directory


def _differences(record: dict, fp32_model: nn.Module) -> str:
    """What differs between the model `record` was saved from and `fp32_model`, in words."""
    saved = {name: op_type for name, op_type in record["ops"]}
    given = {name: op_type for name, op_type in _ops(fp32_model)}
    missing = [n for n in saved if n not in given]
    extra = [n for n in given if n not in saved]
    retyped = [f"{n} ({saved[n]} != {given[n]})" for n in saved if n in given and saved[n] != given[n]]
    parts = []
    if missing:
        parts.append(f"ops missing from the model given: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if extra:
        parts.append(f"ops the saved model does not have: {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
    if retyped:
        parts.append(f"ops of another type: {', '.join(retyped[:5])}")
    return "; ".join(parts) or "the same ops, other weights (or another structure around them)"


def load(directory: str | os.PathLike, fp32_model: nn.Module) -> nn.Module:
    """The tuned model saved in `directory`, rebuilt on `fp32_model`, the FP32 model it was tuned from."""
    from safetensors.torch import load_file

    directory = Path(directory)
    if not (directory / CONFIG_FILE).is_file() or not (directory / WEIGHTS_FILE).is_file():
        raise ValueError(f"{directory} holds no saved tuned model (no {CONFIG_FILE} and {WEIGHTS_FILE}; ModelTuneResult.save writes them)")
    try:
        record = json.loads((directory / CONFIG_FILE).read_text())
        if record.get("format") != FORMAT:
            raise ValueError(f"format {record.get('format')!r} is not the one this version reads ({FORMAT})")
        config, calibration = dict(record["config"]), Calibration.from_json(record["calibration"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{directory / CONFIG_FILE} cannot be read: {exc}") from None
    check_model(fp32_model)
    if model_digest(fp32_model) != record["model"]:
        raise ValueError(
            f"{directory} was saved from another model than the one given: {_differences(record, fp32_model)}; "
            "pass the FP32 model that was tuned"
        )
    model = apply_config(fp32_model, config, calibration)
    saved = load_file(str(directory / WEIGHTS_FILE))
    rebuilt = lowered_tensors(model, config)
    if set(saved) != set(rebuilt):
        raise ValueError(
            f"{directory / WEIGHTS_FILE} does not hold the tensors of its config's ops ({len(saved)} saved, {len(rebuilt)} expected)"
        )
    live = {}
    for name, precision in config.items():
        if precision != FP32:
            for key, tensor in model.get_submodule(name).state_dict(keep_vars=True).items():
                live.update(_flat(f"{name}.{key}", tensor))
    with torch.no_grad():
        for key, tensor in saved.items():
            target = live[key]
            if target.shape != tensor.shape or target.dtype != tensor.dtype:
                raise ValueError(
                    f"saved tensor {key} is {tuple(tensor.shape)} {tensor.dtype}; the rebuilt op has {tuple(target.shape)} {target.dtype}"
                )
            target.copy_(tensor.to(target.device))
    return model
