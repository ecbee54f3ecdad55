"""The tuning space: ops, their precisions, and configs (one precision per op).

Knows nothing of Ray, torch or Arrow: a space is data, a config is a value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

FP32 = "fp32"
# The lower precisions, in the order the conservative strategy visits their pools.
LOWER_PRECISIONS: tuple[str, ...] = ("bf16", "fp16", "int8")
PRECISIONS: tuple[str, ...] = (FP32, *LOWER_PRECISIONS)


def check_precisions(precisions: Iterable[str], where: str) -> tuple[str, ...]:
    """Return `precisions` as a tuple without duplicates, or raise naming the unknown one."""
    if isinstance(precisions, str):
        precisions = (precisions,)
    out: list[str] = []
    for p in precisions:
        if p not in PRECISIONS:
            raise ValueError(f"{where}: unknown precision {p!r}; known precisions are {', '.join(PRECISIONS)}")
        if p not in out:
            out.append(p)
    return tuple(out)


@dataclass(frozen=True)
class Op:
    """One tunable unit of a model: a unique name, a type, and the lower precisions it supports.

    Every op also supports fp32; listing it is allowed and changes nothing.
    """

    name: str
    type: str
    precisions: tuple[str, ...] = LOWER_PRECISIONS

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"op name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.type, str) or not self.type:
            raise ValueError(f"op {self.name!r}: type must be a non-empty string, got {self.type!r}")
        precisions = check_precisions(self.precisions, f"op {self.name!r}")
        object.__setattr__(self, "precisions", tuple(p for p in precisions if p != FP32))

    def supports(self, precision: str) -> bool:
        return precision == FP32 or precision in self.precisions


class TuningSpace:
    """The ops of a model in model order. Immutable."""

    def __init__(self, ops: Iterable[Op]):
        ops = tuple(ops)
        if not ops:
            raise ValueError("the tuning space is empty: give at least one Op")
        index: dict[str, int] = {}
        for i, op in enumerate(ops):
            if not isinstance(op, Op):
                raise TypeError(f"TuningSpace takes Op objects, got {type(op).__name__} at position {i}")
            if op.name in index:
                raise ValueError(f"duplicate op name {op.name!r} (positions {index[op.name]} and {i}); op names must be unique")
            index[op.name] = i
        self.ops: tuple[Op, ...] = ops
        self.names: tuple[str, ...] = tuple(op.name for op in ops)
        self._index = index

    def __len__(self) -> int:
        return len(self.ops)

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TuningSpace) and self.ops == other.ops

    def __hash__(self) -> int:
        return hash(self.ops)

    def __repr__(self) -> str:
        return f"TuningSpace({list(self.ops)!r})"

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"no op named {name!r} in the tuning space") from None

    def all_fp32(self) -> Config:
        return Config(self, (FP32,) * len(self.ops))

    def config(self, mapping: Mapping[str, str]) -> Config:
        """The config given by a full mapping op name -> precision, checked against the space."""
        unknown = set(mapping) - set(self._index)
        if unknown:
            raise ValueError(f"config names ops not in the space: {sorted(unknown)}")
        missing = [n for n in self.names if n not in mapping]
        if missing:
            raise ValueError(f"config has no precision for ops {missing}")
        for op in self.ops:
            if not op.supports(mapping[op.name]):
                raise ValueError(f"op {op.name!r} does not support {mapping[op.name]!r}; it supports fp32, {', '.join(op.precisions)}")
        return Config(self, tuple(mapping[n] for n in self.names))


class Config(Mapping[str, str]):
    """An immutable, hashable mapping of every op of a space to one precision.

    Stored as a tuple aligned with the space's ops, so building and hashing configs
    in strategy replays is cheap.
    """

    __slots__ = ("space", "precisions", "_hash")

    def __init__(self, space: TuningSpace, precisions: tuple[str, ...]):
        self.space = space
        self.precisions = precisions
        self._hash = hash(precisions)

    def __getitem__(self, name: str) -> str:
        return self.precisions[self.space.index(name)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.space.names)

    def __len__(self) -> int:
        return len(self.precisions)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Config):
            return self.precisions == other.precisions and self.space.names == other.space.names
        return Mapping.__eq__(self, other)

    def __repr__(self) -> str:
        return f"Config({self.as_dict()!r})"

    def replace(self, names: Iterable[str], precision: str) -> Config:
        """A copy with each op in `names` set to `precision`."""
        precisions = list(self.precisions)
        for name in names:
            precisions[self.space.index(name)] = precision
        return Config(self.space, tuple(precisions))

    @property
    def is_all_fp32(self) -> bool:
        return all(p == FP32 for p in self.precisions)

    def as_dict(self) -> dict[str, str]:
        return dict(zip(self.space.names, self.precisions, strict=True))

    def key(self) -> str:
        """Canonical text of the config: JSON of the mapping in space order."""
        return json.dumps(self.as_dict(), separators=(",", ":"))

    def digest(self) -> str:
        """A short stable hash of `key()`."""
        return hashlib.sha256(self.key().encode()).hexdigest()[:16]
