"""`skip_slower` (ours, off by default): leave out of a run the (op type, precision) pairs that are slower than FP32.

Each pair is timed once, on the model's device: one op of the type, alone, compiled as deployed
(`compile_model`), on a random input of the shape calibration saw it take, against the same op
in FP32 compiled the same way. Ops whose input is not floating (an Embedding's indices) are not
timed and keep their precisions. It costs two compilations per pair, seconds each on a CPU.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from ..space import Op, TuningSpace
from .costs import alternate_medians
from .deployment import compile_model
from .lowering import lowered_op
from .qparams import Calibration


def without_slower(
    model: nn.Module,
    space: TuningSpace,
    calibration: Calibration,
    shapes: Mapping[str, tuple[int, ...]],
    precisions: tuple[str, ...],
    device: torch.device,
) -> tuple[TuningSpace, dict[tuple[str, str], str]]:
    """`space` without the (op type, precision) pairs slower than FP32 here, and those pairs, each with its timing.
    `shapes`: the input shape of each op, as calibration saw it."""
    representative: dict[tuple[str, str], str] = {}
    for op in space:
        if op.name not in shapes:
            continue
        for p in op.precisions:
            if p in precisions:
                representative.setdefault((op.type, p), op.name)
    skipped: dict[tuple[str, str], str] = {}
    fp32_compiled: dict[str, nn.Module] = {}
    for (op_type, precision), name in representative.items():
        shape = shapes[name]
        x = torch.randn(shape, device=device)
        if name not in fp32_compiled:
            fp32_compiled[name] = compile_model(copy.deepcopy(model.get_submodule(name)).eval())
        lowered = compile_model(lowered_op(model, name, precision, calibration))
        calls = [lambda m=fp32_compiled[name], x=x: m(x), lambda m=lowered, x=x: m(x)]
        (fp32_ms, lowered_ms), rounds = alternate_medians(calls, device, 7, 0.3)
        if lowered_ms > fp32_ms:
            skipped[(op_type, precision)] = (
                f"{lowered_ms:.3f} ms at {precision} vs {fp32_ms:.3f} ms FP32, compiled, on {device} "
                f"({name}, input {tuple(shape)}, median of {rounds} calls)"
            )
    if not skipped:
        return space, skipped
    ops = []
    for op in space:
        keep = tuple(p for p in op.precisions if (op.type, p) not in skipped)
        if keep:
            ops.append(Op(op.name, op.type, keep))
    if not ops:
        raise ValueError(f"skip_slower left no op to tune: every (op type, precision) pair is slower than FP32 here: {skipped}")
    return TuningSpace(ops), skipped
