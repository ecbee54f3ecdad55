"""What calibration chooses, in plain values (floats, ints, names) that the driver hands to every evaluator and a saved
model keeps as JSON: each op's static int8 qparams, each op's first input shape, the BatchNorms folded at int8."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class OpStats:
    """The static int8 qparams of one op: its input's (uint8 with a zero point, chosen on the calibration data) and
    its weight's (int8, symmetric, one scale per output channel, of the weight the op will have: a folded
    BatchNorm included). Chosen once in the driver, so that an evaluator builds int8 ops without an observer."""

    input_scale: float
    input_zero_point: int
    weight_scale: tuple[float, ...] = ()
    input_quant_max: int = 255  # 127 where activations take 7 bits (`calibration.reduce_range`)


@dataclass(frozen=True)
class Calibration:
    """The static activation qparams of each calibrated op, the first input shape of each op, and the BatchNorm
    each convolution absorbs at int8 (conv name -> BatchNorm name)."""

    stats: Mapping[str, OpStats] = field(default_factory=dict)
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    folded: Mapping[str, str] = field(default_factory=dict)

    def as_json(self) -> dict:
        return {
            "stats": {name: asdict(s) for name, s in self.stats.items()},
            "shapes": {name: list(shape) for name, shape in self.shapes.items()},
            "folded": dict(self.folded),
        }

    @classmethod
    def from_json(cls, data: dict) -> Calibration:
        return cls(
            {
                name: OpStats(
                    float(s["input_scale"]),
                    int(s["input_zero_point"]),
                    tuple(float(w) for w in s["weight_scale"]),
                    int(s.get("input_quant_max", 255)),  # a calibration written before it was kept: full range
                )
                for name, s in data["stats"].items()
            },
            {name: tuple(int(d) for d in shape) for name, shape in data["shapes"].items()},
            {str(k): str(v) for k, v in data["folded"].items()},
        )
