"""Reports of a history directory: a plain-text summary for a terminal and a self-contained HTML page.

The HTML page has no scripts and no external resources: inline CSS and two inline SVG
pictures, the accuracy of every trial and the timeline of the evaluators.
"""

from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from .criterion import AccuracyCriterion
from .history.files import read_history
from .history.fingerprint import criterion_from_fingerprint, space_from_fingerprint
from .records import BASELINE_STAGE, CANCELLED, ERROR, LOST, OK
from .space import LOWER_PRECISIONS, PRECISION_CODES, PRECISIONS

# Kinds of evaluation, each with its colour: the same in both pictures.
MEETS, FAILS, WASTED, BASELINE, ERRORED, STOPPED = "meets", "fails", "wasted", "baseline", "errored", "stopped"
COLOURS = {
    MEETS: "#2ca02c",
    FAILS: "#8e44ad",
    WASTED: "#8e9db0",
    BASELINE: "#1f5fbf",
    ERRORED: "#d62728",
    STOPPED: "#ff8c00",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class _Row:
    trial_id: int
    commit_seq: int | None
    config: str
    stage: str
    status: str
    accuracy: float | None  # None where there is none, or it is not finite
    meets: bool | None
    worker: str
    start: float | None  # seconds since the epoch
    end: float | None

    @property
    def is_baseline(self) -> bool:
        return self.stage == BASELINE_STAGE

    @property
    def committed(self) -> bool:
        return self.commit_seq is not None

    @property
    def wasted(self) -> bool:
        """Evaluated (ok or error) but never committed, and not the baseline."""
        return not self.committed and not self.is_baseline and self.status in (OK, ERROR)

    @property
    def kind(self) -> str:
        if self.status in (CANCELLED, LOST):
            return STOPPED
        if self.status == ERROR or self.accuracy is None:
            return ERRORED
        if self.is_baseline:
            return BASELINE
        if self.committed:
            return MEETS if self.meets else FAILS
        return WASTED

    @property
    def duration(self) -> float | None:
        return None if self.start is None or self.end is None else max(0.0, self.end - self.start)

    def counts(self) -> dict[str, int]:
        """Ops at each precision."""
        return {p: self.config.count(PRECISION_CODES[p]) for p in PRECISIONS}


@dataclass(frozen=True)
class _Facts:
    directory: Path
    run_id: str
    strategy: str
    criterion: AccuracyCriterion
    baseline: float | None
    baseline_given: bool
    baseline_failed: bool
    n_ops: int
    rows: list[_Row]

    @property
    def goal(self) -> float | None:
        if self.baseline is None:
            return None
        return self.criterion.goal(self.baseline)

    @property
    def committed(self) -> list[_Row]:
        return sorted((r for r in self.rows if r.committed), key=lambda r: r.commit_seq)

    @property
    def result(self) -> _Row | None:
        """The last committed trial that meets the goal."""
        return next((r for r in reversed(self.committed) if r.meets), None)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.rows)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _seconds(column: pa.ChunkedArray) -> list[float | None]:
    micros = pc.cast(column, pa.int64()).to_pylist()
    return [None if m is None else m / 1e6 for m in micros]


def _text(value: object) -> str:
    """History text on one line."""
    return _CONTROL.sub(" ", "" if value is None else str(value))


def _read(directory: str | os.PathLike) -> _Facts:
    loaded = read_history(directory)
    fp = loaded.fingerprint
    table = loaded.finished_table()
    names = ("trial_id", "commit_seq", "config", "stage", "status", "accuracy", "meets", "worker")
    columns = {name: table[name].to_pylist() for name in names}
    starts, ends = _seconds(table["start_time"]), _seconds(table["end_time"])
    rows = [
        _Row(
            trial_id=columns["trial_id"][i],
            commit_seq=columns["commit_seq"][i],
            config=columns["config"][i] or "",
            stage=_text(columns["stage"][i]),
            status=_text(columns["status"][i]),
            accuracy=_finite(columns["accuracy"][i]),
            meets=columns["meets"][i],
            worker=_text(columns["worker"][i]),
            start=starts[i],
            end=ends[i],
        )
        for i in range(table.num_rows)
    ]
    baseline = _finite(loaded.baseline())
    given = fp["baseline"] is not None
    failed = baseline is None and any(r.is_baseline and r.status == ERROR for r in rows)
    return _Facts(
        directory=Path(directory),
        run_id=_text(loaded.run_id),
        strategy=_text(fp.get("strategy")),
        criterion=criterion_from_fingerprint(fp),
        baseline=baseline,
        baseline_given=given,
        baseline_failed=failed,
        n_ops=len(space_from_fingerprint(fp)),
        rows=rows,
    )


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _precisions_text(row: _Row) -> str:
    return ", ".join(f"{p} {n}" for p, n in row.counts().items())


def _criterion_text(c: AccuracyCriterion) -> str:
    if c.criterion == "relative":
        loss = f"{c.tolerable_loss:g} relative ({c.tolerable_loss * 100:g}% of the baseline)"
    else:
        loss = f"{c.tolerable_loss:g} absolute"
    return f"tolerable loss {loss}, {'higher' if c.higher_is_better else 'lower'} is better"


def _facts_list(f: _Facts) -> list[tuple[str, str]]:
    if f.baseline is not None:
        baseline = f"{_num(f.baseline)}{' (given)' if f.baseline_given else ''}"
        goal = f"accuracy {'>=' if f.criterion.higher_is_better else '<='} {_num(f.goal)}"
    else:
        baseline = "none: the baseline evaluation failed" if f.baseline_failed else "none recorded"
        goal = "none (no baseline accuracy)"
    result = f.result
    if result is None:
        result_text = "none met the goal"
    else:
        result_text = f"trial {result.trial_id} (commit {result.commit_seq}): accuracy {_num(result.accuracy)}; {_precisions_text(result)}"
    starts = [r.start for r in f.rows if r.start is not None]
    ends = [r.end for r in f.rows if r.end is not None]
    span = f"{max(ends) - min(starts):.2f} s" if starts and ends else "-"
    return [
        ("run", f.run_id),
        ("directory", str(f.directory)),
        ("strategy", f.strategy),
        ("criterion", _criterion_text(f.criterion)),
        ("baseline", baseline),
        ("goal", goal),
        ("ops in the space", str(f.n_ops)),
        ("evaluations", f"{len(f.rows)} (the baseline included)"),
        ("committed trials", str(len(f.committed))),
        ("wasted", f"{sum(r.wasted for r in f.rows)} (evaluated, never committed)"),
        ("errored", str(f.count(ERROR))),
        ("cancelled", str(f.count(CANCELLED))),
        ("lost", str(f.count(LOST))),
        ("evaluation span", span),
        ("result", result_text),
    ]


_TABLE_HEAD = ("seq", "trial", "stage", *LOWER_PRECISIONS, "accuracy", "meets", "status", "worker", "seconds")
_RIGHT = {"seq", "trial", *LOWER_PRECISIONS, "accuracy", "seconds"}


def _yes_no(meets: bool | None) -> str:
    return "-" if meets is None else "yes" if meets else "no"


def _column_format(values: Iterable[float]) -> str:
    """A format spec for a column of numbers: as many decimals as the most precise needs (up to 6), one for all."""
    decimals = 0
    for v in values:
        text = f"{v:.6g}"
        if "e" in text:
            return ".6g"
        decimals = max(decimals, len(text.partition(".")[2]))
    return f".{decimals}f"


def _table_cells(rows: Sequence[_Row]) -> list[tuple[str, ...]]:
    spec = _column_format(r.accuracy for r in rows if r.accuracy is not None)
    out = []
    for r in rows:
        counts = r.counts()
        duration = r.duration
        out.append(
            (
                str(r.commit_seq),
                str(r.trial_id),
                r.stage,
                *(str(counts[p]) for p in LOWER_PRECISIONS),
                "-" if r.accuracy is None else format(r.accuracy, spec),
                _yes_no(r.meets),
                r.status,
                r.worker,
                "-" if duration is None else f"{duration:.3f}",
            )
        )
    return out


def _aligned(head: Sequence[str], cells: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(x) for x in column) for column in zip(head, *cells, strict=True)]
    lines = []
    for line in (tuple(head), *cells):
        parts = [v.rjust(w) if h in _RIGHT else v.ljust(w) for h, v, w in zip(head, line, widths, strict=True)]
        lines.append("  ".join(parts).rstrip())
    return lines


def history_summary(directory: str | os.PathLike) -> str:
    """A plain-text summary of the history in `directory`: its facts, then its committed trials in commit order.

    Raises HistoryError where the directory holds no history.
    """
    f = _read(directory)
    facts = _facts_list(f)
    width = max(len(label) for label, _ in facts)
    lines = [f"{label.ljust(width)}  {value}" for label, value in facts]
    committed = f.committed
    lines.append("")
    if committed:
        lines.append(f"committed trials ({len(committed)}), in commit order:")
        lines.extend(_aligned(_TABLE_HEAD, _table_cells(committed)))
    else:
        lines.append("no committed trials")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ SVG


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _span(values: Sequence[float], pad: float = 0.05) -> tuple[float, float]:
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        half = max(abs(hi) * 0.01, 1e-3)
        return lo - half, hi + half
    margin = (hi - lo) * pad
    return lo - margin, hi + margin


def _ticks(lo: float, hi: float, n: int = 6, integer: bool = False) -> tuple[list[float], int]:
    """Round tick values in [lo, hi] and the decimals to print them with."""
    raw = (hi - lo) / n
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    if integer:
        step = max(1.0, round(step))
    first = math.ceil(lo / step - 1e-9)
    ticks = [k * step for k in range(first, math.floor(hi / step + 1e-9) + 1)]
    decimals = 0 if integer else max(0, -math.floor(math.log10(step) + 1e-9))
    return ticks, decimals


def _tick_text(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    return "0" if text.strip("-0.") == "" else text


class _Svg:
    def __init__(self, width: int, height: int, label: str):
        self.width, self.height = width, height
        self.parts = [
            f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(label)}">',
            f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        ]

    def add(self, part: str) -> None:
        self.parts.append(part)

    def text(self, x: float, y: float, value: str, anchor: str = "start", cls: str = "t", extra: str = "") -> None:
        self.add(f'<text class="{cls}" x="{_fmt(x)}" y="{_fmt(y)}" text-anchor="{anchor}"{extra}>{_esc(value)}</text>')

    def legend(self, items: Sequence[tuple[str, str]], y: float, x: float) -> None:
        """Legend entries (symbol svg drawn at the origin, label) in one row from `x`."""
        for symbol, label in items:
            self.add(f'<g class="legend" transform="translate({_fmt(x)},{_fmt(y)})">{symbol}</g>')
            self.text(x + 12, y + 4, label)
            x += 26 + 7.0 * len(label)

    def close(self) -> str:
        return "\n".join([*self.parts, "</svg>"])


def _marker(kind: str, x: float, y: float, r: float = 4.5) -> str:
    colour = COLOURS[kind]
    if kind in (ERRORED, STOPPED):
        d = r * 0.9
        return (
            f'<path d="M{_fmt(x - d)},{_fmt(y - d)}L{_fmt(x + d)},{_fmt(y + d)}M{_fmt(x - d)},{_fmt(y + d)}L{_fmt(x + d)},{_fmt(y - d)}" '
            f'stroke="{colour}" stroke-width="2" fill="none"/>'
        )
    if kind == FAILS:
        return f'<rect x="{_fmt(x - r * 0.85)}" y="{_fmt(y - r * 0.85)}" width="{_fmt(r * 1.7)}" height="{_fmt(r * 1.7)}" fill="{colour}"/>'
    if kind == BASELINE:
        d = r * 1.3
        points = f"M{_fmt(x)},{_fmt(y - d)}L{_fmt(x + d)},{_fmt(y)}L{_fmt(x)},{_fmt(y + d)}L{_fmt(x - d)},{_fmt(y)}Z"
        return f'<path d="{points}" fill="{colour}"/>'
    if kind == WASTED:
        return f'<circle cx="{_fmt(x)}" cy="{_fmt(y)}" r="{_fmt(r * 0.9)}" fill="{colour}" fill-opacity="0.85"/>'
    return f'<circle cx="{_fmt(x)}" cy="{_fmt(y)}" r="{_fmt(r)}" fill="{colour}"/>'


def _tooltip(r: _Row) -> str:
    parts = [f"trial {r.trial_id}", r.stage, f"accuracy {_num(r.accuracy)}", r.status]
    if r.committed:
        parts.insert(1, f"commit {r.commit_seq}")
    if r.duration is not None:
        parts.append(f"{r.duration:.3f} s")
    if r.worker:
        parts.append(r.worker)
    return " · ".join(parts)


_ACCURACY_LEGEND = (
    (MEETS, "committed, meets"),
    (FAILS, "committed, fails"),
    (WASTED, "speculative, never committed"),
    (BASELINE, "baseline"),
    (ERRORED, "errored (no accuracy)"),
    (STOPPED, "cancelled / lost"),
)


def _reference_labels(lines: list[tuple[float, str]], top: float, bottom: float, size: float = 14) -> list[tuple[float, str]]:
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


def _accuracy_svg(f: _Facts, width: int = 1100, height: int = 440) -> str:
    svg = _Svg(width, height, "Accuracy of every trial")
    left, right, top, bottom = 84, 24, 44, 52
    x0, x1, y0, y1 = left, width - right, top, height - bottom
    band = 18  # the strip at the bottom where evaluations without accuracy are drawn
    svg.legend([(_marker(k, 0, 0), label) for k, label in _ACCURACY_LEGEND], y=16, x=left)

    ids = [r.trial_id for r in f.rows]
    xlo, xhi = (min(ids), max(ids)) if ids else (0, 1)
    if xhi - xlo < 2:
        xlo, xhi = xlo - 1, xhi + 1
    pad = (xhi - xlo) * 0.02
    xlo, xhi = xlo - pad, xhi + pad
    lines = [(v, name) for v, name in ((f.baseline, "baseline"), (f.goal, "goal")) if v is not None]
    ylo, yhi = _span([r.accuracy for r in f.rows if r.accuracy is not None] + [v for v, _ in lines])
    if lines:
        yhi = max(yhi, max(v for v, _ in lines) + (yhi - ylo) * 20 / (y1 - band - y0 - 20))

    def sx(v: float) -> float:
        return x0 + (v - xlo) / (xhi - xlo) * (x1 - x0)

    def sy(v: float) -> float:
        return (y1 - band) - (v - ylo) / (yhi - ylo) * (y1 - band - y0)

    for tick in (t for t in _ticks(xlo, xhi, 10, integer=True)[0] if not ids or min(ids) <= t <= max(ids)):
        svg.add(f'<line class="grid" x1="{_fmt(sx(tick))}" y1="{y0}" x2="{_fmt(sx(tick))}" y2="{y1}"/>')
        svg.text(sx(tick), y1 + 16, _tick_text(tick, 0), "middle")
    yticks, decimals = _ticks(ylo, yhi, 6)
    for tick in yticks:
        svg.add(f'<line class="grid" x1="{x0}" y1="{_fmt(sy(tick))}" x2="{x1}" y2="{_fmt(sy(tick))}"/>')
        svg.text(x0 - 6, sy(tick) + 4, _tick_text(tick, decimals), "end")
    svg.add(f'<rect class="band" x="{x0}" y="{y1 - band}" width="{x1 - x0}" height="{band}"/>')
    svg.text(x0 - 6, y1 - band / 2 + 4, "no accuracy", "end", "t small")
    svg.add(f'<rect class="frame" x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}"/>')
    svg.text((x0 + x1) / 2, height - 10, "trial id (dispatch order)", "middle", "t axis")
    svg.text(18, (y0 + y1) / 2, "accuracy", "middle", "t axis", f' transform="rotate(-90 18 {_fmt((y0 + y1) / 2)})"')

    if lines:
        for v, name in lines:
            dash = ' stroke-dasharray="7 5"' if name == "goal" else ""
            svg.add(f'<line class="ref" x1="{x0}" y1="{_fmt(sy(v))}" x2="{x1}" y2="{_fmt(sy(v))}"{dash}/>')
        for y, label in _reference_labels([(sy(v), f"{name} {_num(v)}") for v, name in lines], y0, y1 - band):
            svg.text(x1 - 6, y, label, "end", "t ref-label")
    else:
        svg.text((x0 + x1) / 2, y0 + 20, "no goal: the baseline has no accuracy", "middle", "t note")

    for r in f.rows:
        kind = r.kind
        y = y1 - band / 2 if r.accuracy is None else sy(r.accuracy)
        svg.add(f'<g class="mark {kind}"><title>{_esc(_tooltip(r))}</title>{_marker(kind, sx(r.trial_id), y)}</g>')
    return svg.close()


_TIMELINE_LEGEND = (
    (MEETS, "committed"),
    (WASTED, "speculative, never committed"),
    (ERRORED, "errored"),
    (STOPPED, "cancelled / lost"),
    (BASELINE, "baseline"),
)


def _bar_colour(r: _Row) -> str:
    kind = r.kind
    return COLOURS[MEETS] if kind == FAILS else COLOURS[kind]


def _timeline_svg(f: _Facts, width: int = 1100) -> str:
    timed = [r for r in f.rows if r.worker and r.start is not None and r.end is not None]
    workers = sorted({r.worker for r in timed})
    row_height, bar_height = 24, 15
    longest = max((len(w) for w in workers), default=8)
    names = {w: w if len(w) <= 44 else w[:20] + "…" + w[-23:] for w in workers}
    left = int(min(longest, 44) * 6.6) + 20
    right, top, bottom = 24, 44, 48
    height = top + max(1, len(workers)) * row_height + bottom
    svg = _Svg(width, height, "Evaluator timeline")
    x0, x1, y0, y1 = left, width - right, top, top + max(1, len(workers)) * row_height
    legend = [(f'<rect x="-5" y="-5" width="10" height="10" fill="{COLOURS[k]}"/>', label) for k, label in _TIMELINE_LEGEND]
    svg.legend(legend, y=16, x=left)

    t0 = min((r.start for r in f.rows if r.start is not None), default=0.0)
    span = max((r.end - t0 for r in timed), default=0.0)
    span = span if span > 0 else 1.0

    def sx(t: float) -> float:
        return x0 + (t - t0) / span * (x1 - x0)

    ticks, decimals = _ticks(0.0, span, 10)
    for tick in ticks:
        svg.add(f'<line class="grid" x1="{_fmt(sx(t0 + tick))}" y1="{y0}" x2="{_fmt(sx(t0 + tick))}" y2="{y1}"/>')
        svg.text(sx(t0 + tick), y1 + 16, _tick_text(tick, decimals), "middle")
    svg.text((x0 + x1) / 2, height - 10, "seconds since the first evaluation started", "middle", "t axis")
    for i, w in enumerate(workers):
        y = y0 + i * row_height
        if i % 2:
            svg.add(f'<rect class="stripe" x="{x0}" y="{y}" width="{x1 - x0}" height="{row_height}"/>')
        svg.add(f"<g><title>{_esc(w)}</title>")
        svg.text(x0 - 8, y + row_height / 2 + 4, names[w], "end")
        svg.add("</g>")
    if not workers:
        svg.text((x0 + x1) / 2, y0 + row_height / 2 + 4, "no timed evaluations", "middle", "t note")
    svg.add(f'<rect class="frame" x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}"/>')
    index = {w: i for i, w in enumerate(workers)}
    for r in sorted(timed, key=lambda r: r.start):
        y = y0 + index[r.worker] * row_height + (row_height - bar_height) / 2
        bw = max(3.0, sx(r.end) - sx(r.start))
        bx = min(sx(r.start), x1 - bw)  # a short last bar stays inside the frame
        svg.add(
            f'<rect class="bar {r.kind}" x="{_fmt(bx)}" y="{_fmt(y)}" width="{_fmt(bw)}" height="{bar_height}" '
            f'fill="{_bar_colour(r)}"><title>{_esc(_tooltip(r))}</title></rect>'
        )
    return svg.close()


_CSS = """
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; color: #222; margin: 24px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 12px; }
h2 { font-size: 17px; margin: 26px 0 8px; }
table { border-collapse: collapse; font-size: 13px; }
table.facts th { text-align: left; font-weight: 600; padding: 2px 16px 2px 0; vertical-align: top; white-space: nowrap; }
table.facts td { padding: 2px 0; }
table.trials th, table.trials td { padding: 2px 10px; border-bottom: 1px solid #e4e4e4; white-space: nowrap; }
table.trials th { text-align: left; background: #f3f3f3; }
table.trials td.n { text-align: right; font-variant-numeric: tabular-nums; }
svg { display: block; }
svg .t { font-size: 12px; fill: #333; }
svg .small { font-size: 11px; fill: #777; }
svg .axis { font-size: 13px; fill: #222; }
svg .note { font-size: 13px; fill: #a33; }
svg .ref-label { font-size: 12px; fill: #111; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
svg .grid { stroke: #e6e6e6; stroke-width: 1; shape-rendering: crispEdges; }
svg .frame { fill: none; stroke: #555; stroke-width: 1; shape-rendering: crispEdges; }
svg .band { fill: #f7f1f1; }
svg .stripe { fill: #f6f6f6; }
svg .ref { stroke: #222; stroke-width: 1.4; }
svg .bar { shape-rendering: crispEdges; }
"""


_NUMERIC = ' class="n"'


def _trials_table(f: _Facts) -> str:
    committed = f.committed
    if not committed:
        return "<p>No committed trials.</p>"
    head = "".join(f"<th>{_esc(h)}</th>" for h in _TABLE_HEAD)
    body = []
    for cells in _table_cells(committed):
        tds = "".join(f"<td{_NUMERIC if h in _RIGHT else ''}>{_esc(v)}</td>" for h, v in zip(_TABLE_HEAD, cells, strict=True))
        body.append(f"<tr>{tds}</tr>")
    return f'<table class="trials"><thead><tr>{head}</tr></thead><tbody>\n' + "\n".join(body) + "\n</tbody></table>"


def write_report(directory: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write a self-contained HTML report of the history in `directory` to `out`; returns the path written.

    Raises HistoryError where the directory holds no history.
    """
    f = _read(directory)
    facts = "\n".join(f"<tr><th>{_esc(label)}</th><td>{_esc(value)}</td></tr>" for label, value in _facts_list(f))
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Tuning report: run {_esc(f.run_id)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>Tuning report: run {_esc(f.run_id)}</h1>
<table class="facts">
{facts}
</table>
<h2>Accuracy of every trial</h2>
{_accuracy_svg(f)}
<h2>Evaluator timeline</h2>
{_timeline_svg(f)}
<h2>Committed trials</h2>
{_trials_table(f)}
</body>
</html>
"""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
