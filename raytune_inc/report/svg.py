"""A small kit for inline SVG pictures: escaping and number text, axis spans and ticks, the markers of each
kind of evaluation in its colour, labels of reference lines, and the `Svg` builder."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from .facts import BASELINE, ERRORED, FAILS, MEETS, STOPPED, WASTED

COLOURS = {
    MEETS: "#2ca02c",
    FAILS: "#8e44ad",
    WASTED: "#8e9db0",
    BASELINE: "#1f5fbf",
    ERRORED: "#d62728",
    STOPPED: "#ff8c00",
}


def esc(value: object) -> str:
    """`value` as HTML text, quotes escaped too."""
    return html.escape(str(value), quote=True)


def fmt(value: float) -> str:
    """A coordinate: at most two decimals, no trailing zeros."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def axis_span(values: Sequence[float], pad: float = 0.05) -> tuple[float, float]:
    """An axis range holding `values` with a margin of `pad` of their spread (a small one where they are all equal)."""
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        half = max(abs(hi) * 0.01, 1e-3)
        return lo - half, hi + half
    margin = (hi - lo) * pad
    return lo - margin, hi + margin


def axis_ticks(lo: float, hi: float, n: int = 6, integer: bool = False) -> tuple[list[float], int]:
    """Round tick values in [lo, hi] and the decimals to print them with."""
    raw = (hi - lo) / n
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    if integer:
        step = max(1.0, round(step))
    first = math.ceil(lo / step - 1e-9)
    values = [k * step for k in range(first, math.floor(hi / step + 1e-9) + 1)]
    decimals = 0 if integer else max(0, -math.floor(math.log10(step) + 1e-9))
    return values, decimals


def tick_text(value: float, decimals: int) -> str:
    """A tick label with `decimals` decimals; "0", never "-0"."""
    text = f"{value:.{decimals}f}"
    return "0" if text.strip("-0.") == "" else text


class Svg:
    """An SVG picture on a white background, built a part at a time."""

    def __init__(self, width: int, height: int, label: str):
        self.width, self.height = width, height
        self.parts = [
            f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{esc(label)}">',
            f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        ]

    def add(self, part: str) -> None:
        self.parts.append(part)

    def text(self, x: float, y: float, value: str, anchor: str = "start", cls: str = "t", extra: str = "") -> None:
        self.add(f'<text class="{cls}" x="{fmt(x)}" y="{fmt(y)}" text-anchor="{anchor}"{extra}>{esc(value)}</text>')

    def legend(self, items: Sequence[tuple[str, str]], y: float, x: float) -> None:
        """Legend entries (symbol svg drawn at the origin, label) in one row from `x`."""
        for symbol, label in items:
            self.add(f'<g class="legend" transform="translate({fmt(x)},{fmt(y)})">{symbol}</g>')
            self.text(x + 12, y + 4, label)
            x += 26 + 7.0 * len(label)

    def close(self) -> str:
        return "\n".join([*self.parts, "</svg>"])


def marker(kind: str, x: float, y: float, r: float = 4.5) -> str:
    """The marker of an evaluation of `kind` centred at (x, y), in its colour."""
    colour = COLOURS[kind]
    if kind in (ERRORED, STOPPED):
        d = r * 0.9
        return (
            f'<path d="M{fmt(x - d)},{fmt(y - d)}L{fmt(x + d)},{fmt(y + d)}M{fmt(x - d)},{fmt(y + d)}L{fmt(x + d)},{fmt(y - d)}" '
            f'stroke="{colour}" stroke-width="2" fill="none"/>'
        )
    if kind == FAILS:
        return f'<rect x="{fmt(x - r * 0.85)}" y="{fmt(y - r * 0.85)}" width="{fmt(r * 1.7)}" height="{fmt(r * 1.7)}" fill="{colour}"/>'
    if kind == BASELINE:
        d = r * 1.3
        points = f"M{fmt(x)},{fmt(y - d)}L{fmt(x + d)},{fmt(y)}L{fmt(x)},{fmt(y + d)}L{fmt(x - d)},{fmt(y)}Z"
        return f'<path d="{points}" fill="{colour}"/>'
    if kind == WASTED:
        return f'<circle cx="{fmt(x)}" cy="{fmt(y)}" r="{fmt(r * 0.9)}" fill="{colour}" fill-opacity="0.85"/>'
    return f'<circle cx="{fmt(x)}" cy="{fmt(y)}" r="{fmt(r)}" fill="{colour}"/>'


def reference_labels(lines: list[tuple[float, str]], top: float, bottom: float, size: float = 14) -> list[tuple[float, str]]:
    """Baselines of the labels of horizontal lines at screen heights `lines`: the upper line's above it, the other's below,
    kept inside [top, bottom] and apart."""
    lines = sorted(lines)
    out = []
    for i, (y, label) in enumerate(lines):
        below = y + size
        above = y - 5
        ty = above if i == 0 and len(lines) > 1 or len(lines) == 1 else below
        if ty - size + 3 < top:
            ty = below
        if ty > bottom - 3:
            ty = above
        if out and ty < out[-1][0] + size:
            ty = out[-1][0] + size
        out.append((ty, label))
    return out
