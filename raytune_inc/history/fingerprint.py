"""A run's fingerprint: what a resumed run must share with the run that wrote the history."""

from __future__ import annotations

import contextlib
import json
import platform
from typing import Any

from ..criterion import AccuracyCriterion
from ..space import Op, TuningSpace
from ..versions import package_version, package_versions

# Fingerprint entries that are recorded but do not have to match on resume.
NOT_COMPARED = ("environment",)


def fingerprint(
    space: TuningSpace, strategy: Any, criterion: AccuracyCriterion, precisions: tuple[str, ...], baseline: float | None
) -> dict:
    """What a resumed run must share with the run that wrote the history (see NOT_COMPARED)."""
    return {
        "space": [[op.name, op.type, list(op.precisions)] for op in space],
        "strategy": strategy.name,
        "strategy_options": strategy.options(),
        "tolerable_loss": criterion.tolerable_loss,
        "criterion": criterion.criterion,
        "higher_is_better": criterion.higher_is_better,
        "precisions": list(precisions),
        "baseline": baseline,
        "raytune_inc": package_version("raytune-inc"),
        "environment": {"python": platform.python_version(), **package_versions("pyarrow", "numpy", "ray", "torch", "torchao")},
    }


def fingerprint_differences(recorded: dict, asked: dict) -> list[str]:
    """What differs between two fingerprints, one line each: 'name recorded != asked'."""
    out = []
    for name in sorted(set(recorded) | set(asked)):
        if name in NOT_COMPARED:
            continue
        a, b = recorded.get(name), asked.get(name)
        if a == b:
            continue
        if name == "space" and isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                out.append(f"space: {len(a)} ops != {len(b)} ops")
            else:
                i = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
                out.append(f"space: op #{i} {_op_text(a[i])} != {_op_text(b[i])}")
        else:
            out.append(f"{name} {json.dumps(a)} != {json.dumps(b)}")
    return out


def _op_text(op: Any) -> str:
    with contextlib.suppress(TypeError, ValueError):
        name, op_type, precisions = op
        return f"{name!r} ({op_type}: {', '.join(precisions)})"
    return repr(op)


def space_from_fingerprint(fp: dict) -> TuningSpace:
    return TuningSpace(Op(name, op_type, tuple(precisions)) for name, op_type, precisions in fp["space"])


def criterion_from_fingerprint(fp: dict) -> AccuracyCriterion:
    return AccuracyCriterion(fp["tolerable_loss"], fp["criterion"], fp["higher_is_better"])
