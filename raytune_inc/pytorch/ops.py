"""The tunable ops of an nn.Module: its modules that some precision handler takes, in model order."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from torch import nn

from ..space import LOWER_PRECISIONS, Op, TuningSpace
from .modules import LEFT_OUT
from .precisions import handler, precisions_of
from .qparams import Calibration


def discover_ops(
    model: nn.Module,
    op_name_dict: Mapping[str, Sequence[str]] | None = None,
    op_type_dict: Mapping[str, Sequence[str]] | None = None,
) -> TuningSpace:
    """The tunable ops of `model`, in model order, each with the precisions the registry has handlers for.

    `op_name_dict` / `op_type_dict` map a regex (matched in full against the op's name,
    or its module class name) to the precisions allowed for the ops it matches, as
    Neural Compressor's dicts of the same names did; `("fp32",)` leaves an op out. A module
    that holds other ops is left to them (no op is inside another), except MultiheadAttention,
    which reads its out_proj's weights itself: it is one op and its out_proj none. Kinds in
    `LEFT_OUT` are never ops. One module registered under two names is one op, by its first name.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    rules = [(_pattern(k, "op_name_dict"), v, "name") for k, v in (op_name_dict or {}).items()]
    rules += [(_pattern(k, "op_type_dict"), v, "type") for k, v in (op_type_dict or {}).items()]
    ops = []
    attention: list[str] = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(m + ".") for m in attention):
            continue
        if isinstance(module, nn.MultiheadAttention):
            attention.append(name)
        if isinstance(module, tuple(LEFT_OUT)):
            continue
        allowed = set(precisions_of(module))
        op_type = type(module).__name__
        for pattern, precisions, what in rules:
            if pattern.fullmatch(name if what == "name" else op_type):
                allowed &= set(precisions)
        precisions = tuple(p for p in LOWER_PRECISIONS if p in allowed)
        if precisions:
            ops.append(Op(name, op_type, precisions))
    names = [op.name for op in ops]
    ops = [op for op in ops if not any(other.startswith(op.name + ".") for other in names)]
    if not ops:
        raise ValueError(
            f"no tunable op in {type(model).__name__}: it has no Linear, Conv1d/2d/3d or other module with weights"
            + (" left by op_name_dict/op_type_dict" if rules else "")
        )
    return TuningSpace(ops)


def _pattern(key: str, argument: str) -> re.Pattern:
    """The compiled regex of a key of `op_name_dict` / `op_type_dict`, or ValueError naming the argument, the key and why."""
    try:
        return re.compile(key)
    except re.error as exc:
        raise ValueError(
            f"{argument} key {key!r} is not a valid regex ({exc}); fix the pattern, or match the name literally with re.escape({key!r})"
        ) from None


def reachable(model: nn.Module, space: TuningSpace, calibration: Calibration, calibrated: Sequence[str]) -> TuningSpace:
    """`space` without the calibrated precisions (static int8) of the ops in `calibrated` the calibration data never
    reached (they have no activation qparams); ValueError where no op is left."""
    unreached = {name for name in calibrated if name not in calibration.stats}
    if not unreached:
        return space
    ops = []
    for op in space:
        if op.name in unreached:
            module = model.get_submodule(op.name)
            keep = tuple(p for p in op.precisions if not handler(p, module).calibrated)
            if not keep:
                continue
            op = Op(op.name, op.type, keep)
        ops.append(op)
    if not ops:
        raise ValueError(f"the calibration data reaches none of the ops {sorted(unreached)[:5]}: no op is left to tune")
    return TuningSpace(ops)
