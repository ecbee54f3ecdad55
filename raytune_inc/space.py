"""The tuning space: ops, their precisions, and configs (one precision per op).

Knows nothing of Ray, torch or Arrow: a space is data, a config is a value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

FP32 = "fp32"
# The lower precisions, from the least to the most aggressive: the order the conservative strategy
# visits their pools in. int8_dynamic: int8 weights, activations quantized per token at run time;
# int8: int8 weights, activations quantized with scales calibrated once (static).
LOWER_PRECISIONS: tuple[str, ...] = ("bf16", "fp16", "int8_dynamic", "int8")
PRECISIONS: tuple[str, ...] = (FP32, *LOWER_PRECISIONS)
# One character per precision: a config's canonical key is one of these per op, in space order.
PRECISION_CODES: dict[str, str] = {FP32: ".", "bf16": "b", "fp16": "h", "int8_dynamic": "d", "int8": "i"}
_PRECISION_OF_CODE = {c: p for p, c in PRECISION_CODES.items()}
_FP32_CODE = PRECISION_CODES[FP32]


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

    def config_from_key(self, key: str) -> Config:
        """The config whose `Config.key()` is `key`, checked against the space."""
        if not isinstance(key, str) or len(key) != len(self.ops):
            raise ValueError(f"a config key of this space has {len(self.ops)} characters, one per op; got {key!r:.80}")
        for op, code in zip(self.ops, key, strict=True):
            precision = _PRECISION_OF_CODE.get(code)
            if precision is None or not op.supports(precision):
                raise ValueError(f"config key {key!r:.80}: {code!r} is not a precision op {op.name!r} supports")
        return Config.of_key(self, key)


class Config(Mapping[str, str]):
    """An immutable, hashable mapping of every op of a space to one precision.

    Stored as its key (one precision code per op, in space order: see `key()`), so that
    building, hashing and comparing configs in strategy replays stays cheap for spaces
    of thousands of ops. `precisions` is the same as a tuple of precision names.
    """

    __slots__ = ("space", "_key")

    def __init__(self, space: TuningSpace, precisions: Iterable[str]):
        self.space = space
        self._key = "".join(map(PRECISION_CODES.__getitem__, precisions))

    @classmethod
    def of_key(cls, space: TuningSpace, key: str) -> Config:
        """A config from a key known to be valid for `space` (see TuningSpace.config_from_key)."""
        config = cls.__new__(cls)
        config.space = space
        config._key = key
        return config

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(map(_PRECISION_OF_CODE.__getitem__, self._key))

    def __getitem__(self, name: str) -> str:
        return _PRECISION_OF_CODE[self._key[self.space.index(name)]]

    def __iter__(self) -> Iterator[str]:
        return iter(self.space.names)

    def __len__(self) -> int:
        return len(self._key)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Config):
            return self._key == other._key and (self.space is other.space or self.space.names == other.space.names)
        return Mapping.__eq__(self, other)

    def __repr__(self) -> str:
        return f"Config({self.as_dict()!r})"

    def replace(self, names: Iterable[str], precision: str) -> Config:
        """A copy with each op in `names` set to `precision`."""
        code = ord(PRECISION_CODES[precision])
        chars = bytearray(self._key, "ascii")
        for name in names:
            chars[self.space.index(name)] = code
        return Config.of_key(self.space, chars.decode("ascii"))

    @property
    def is_all_fp32(self) -> bool:
        return not self._key.strip(_FP32_CODE)

    def as_dict(self) -> dict[str, str]:
        return dict(zip(self.space.names, self.precisions, strict=True))

    def key(self) -> str:
        """Canonical text of the config, relative to its space: one character per op, in space order
        ("." fp32, "b" bf16, "h" fp16, "d" int8_dynamic, "i" int8; see PRECISION_CODES)."""
        return self._key

    def digest(self) -> str:
        """A short stable hash of `key()`."""
        return hashlib.sha256(self._key.encode()).hexdigest()[:16]
