"""The HTML report of a history: one self-contained page (inline CSS, no scripts) with the facts, the accuracy
of every trial, the evaluator timeline and the committed trials; `write_report` writes it."""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..space import PRECISION_CODES
from .facts import BASELINE, ERRORED, FAILS, MEETS, STOPPED, WASTED, Facts, Row, read_facts
from .svg import COLOURS, Svg, axis_span, axis_ticks, esc, fmt, marker, reference_labels, tick_text
from .text import RIGHT, facts_list, num, table_cells, table_head


def _tooltip(r: Row) -> str:
    value = f"accuracy {num(r.accuracy)}"
    if r.bound is not None:
        value = f"rejected at the bound {num(r.bound)}, {r.samples} of {r.samples_total} samples read"
    parts = [f"trial {r.trial_id}", r.stage, value, r.status]
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


def _accuracy_svg(f: Facts, width: int = 1100, height: int = 440) -> str:
    svg = Svg(width, height, "Accuracy of every trial")
    left, right, top, bottom = 84, 24, 44, 52
    x0, x1, y0, y1 = left, width - right, top, height - bottom
    band = 18  # the strip at the bottom where evaluations without accuracy are drawn
    svg.legend([(marker(k, 0, 0), label) for k, label in _ACCURACY_LEGEND], y=16, x=left)

    ids = [r.trial_id for r in f.rows]
    xlo, xhi = (min(ids), max(ids)) if ids else (0, 1)
    if xhi - xlo < 2:
        xlo, xhi = xlo - 1, xhi + 1
    pad = (xhi - xlo) * 0.02
    xlo, xhi = xlo - pad, xhi + pad
    lines = [(v, name) for v, name in ((f.baseline, "baseline"), (f.goal, "goal")) if v is not None]
    ylo, yhi = axis_span([r.shown for r in f.rows if r.shown is not None] + [v for v, _ in lines])
    if lines:
        yhi = max(yhi, max(v for v, _ in lines) + (yhi - ylo) * 20 / (y1 - band - y0 - 20))

    def sx(v: float) -> float:
        return x0 + (v - xlo) / (xhi - xlo) * (x1 - x0)

    def sy(v: float) -> float:
        return (y1 - band) - (v - ylo) / (yhi - ylo) * (y1 - band - y0)

    for tick in (t for t in axis_ticks(xlo, xhi, 10, integer=True)[0] if not ids or min(ids) <= t <= max(ids)):
        svg.add(f'<line class="grid" x1="{fmt(sx(tick))}" y1="{y0}" x2="{fmt(sx(tick))}" y2="{y1}"/>')
        svg.text(sx(tick), y1 + 16, tick_text(tick, 0), "middle")
    yticks, decimals = axis_ticks(ylo, yhi, 6)
    for tick in yticks:
        svg.add(f'<line class="grid" x1="{x0}" y1="{fmt(sy(tick))}" x2="{x1}" y2="{fmt(sy(tick))}"/>')
        svg.text(x0 - 6, sy(tick) + 4, tick_text(tick, decimals), "end")
    svg.add(f'<rect class="band" x="{x0}" y="{y1 - band}" width="{x1 - x0}" height="{band}"/>')
    svg.text(x0 - 6, y1 - band / 2 + 4, "no accuracy", "end", "t small")
    svg.add(f'<rect class="frame" x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}"/>')
    svg.text((x0 + x1) / 2, height - 10, "trial id (dispatch order)", "middle", "t axis")
    svg.text(18, (y0 + y1) / 2, "accuracy", "middle", "t axis", f' transform="rotate(-90 18 {fmt((y0 + y1) / 2)})"')

    if lines:
        for v, name in lines:
            dash = ' stroke-dasharray="7 5"' if name == "goal" else ""
            svg.add(f'<line class="ref" x1="{x0}" y1="{fmt(sy(v))}" x2="{x1}" y2="{fmt(sy(v))}"{dash}/>')
        for y, label in reference_labels([(sy(v), f"{name} {num(v)}") for v, name in lines], y0, y1 - band):
            svg.text(x1 - 6, y, label, "end", "t ref-label")
    else:
        svg.text((x0 + x1) / 2, y0 + 20, "no goal: the baseline has no accuracy", "middle", "t note")

    for r in f.rows:
        kind = r.kind
        y = y1 - band / 2 if r.shown is None else sy(r.shown)
        svg.add(f'<g class="mark {kind}"><title>{esc(_tooltip(r))}</title>{marker(kind, sx(r.trial_id), y)}</g>')
    return svg.close()


_TIMELINE_LEGEND = (
    (MEETS, "committed"),
    (WASTED, "speculative, never committed"),
    (ERRORED, "errored"),
    (STOPPED, "cancelled / lost"),
    (BASELINE, "baseline"),
)


def _bar_colour(r: Row) -> str:
    kind = r.kind
    return COLOURS[MEETS] if kind == FAILS else COLOURS[kind]


def _timeline_svg(f: Facts, width: int = 1100) -> str:
    timed = [r for r in f.rows if r.worker and r.start is not None and r.end is not None]
    workers = sorted({r.worker for r in timed})
    row_height, bar_height = 24, 15
    longest = max((len(w) for w in workers), default=8)
    names = {w: w if len(w) <= 44 else w[:20] + "…" + w[-23:] for w in workers}
    left = int(min(longest, 44) * 6.6) + 20
    right, top, bottom = 24, 44, 48
    height = top + max(1, len(workers)) * row_height + bottom
    svg = Svg(width, height, "Evaluator timeline")
    x0, x1, y0, y1 = left, width - right, top, top + max(1, len(workers)) * row_height
    legend = [(f'<rect x="-5" y="-5" width="10" height="10" fill="{COLOURS[k]}"/>', label) for k, label in _TIMELINE_LEGEND]
    svg.legend(legend, y=16, x=left)

    t0 = min((r.start for r in f.rows if r.start is not None), default=0.0)
    span = max((r.end - t0 for r in timed), default=0.0)
    span = span if span > 0 else 1.0

    def sx(t: float) -> float:
        return x0 + (t - t0) / span * (x1 - x0)

    ticks, decimals = axis_ticks(0.0, span, 10)
    for tick in ticks:
        svg.add(f'<line class="grid" x1="{fmt(sx(t0 + tick))}" y1="{y0}" x2="{fmt(sx(t0 + tick))}" y2="{y1}"/>')
        svg.text(sx(t0 + tick), y1 + 16, tick_text(tick, decimals), "middle")
    svg.text((x0 + x1) / 2, height - 10, "seconds since the first evaluation started", "middle", "t axis")
    for i, w in enumerate(workers):
        y = y0 + i * row_height
        if i % 2:
            svg.add(f'<rect class="stripe" x="{x0}" y="{y}" width="{x1 - x0}" height="{row_height}"/>')
        svg.add(f"<g><title>{esc(w)}</title>")
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
            f'<rect class="bar {r.kind}" x="{fmt(bx)}" y="{fmt(y)}" width="{fmt(bw)}" height="{bar_height}" '
            f'fill="{_bar_colour(r)}"><title>{esc(_tooltip(r))}</title></rect>'
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


def _trials_table(f: Facts) -> str:
    committed = f.committed
    if not committed:
        return "<p>No committed trials.</p>"
    columns = table_head(f.precisions)
    head = "".join(f"<th>{esc(h)}</th>" for h in columns)
    body = []
    for cells in table_cells(committed, f.precisions):
        tds = "".join(f"<td{_NUMERIC if h in RIGHT else ''}>{esc(v)}</td>" for h, v in zip(columns, cells, strict=True))
        body.append(f"<tr>{tds}</tr>")
    return f'<table class="trials"><thead><tr>{head}</tr></thead><tbody>\n' + "\n".join(body) + "\n</tbody></table>"


def _sensitivity_table(f: Facts) -> str:
    """Each op's sensitivity at each precision of the run (how far it alone moves its own output), shaded on a
    log scale from the least to the most sensitive, beside the precision the op ended at."""
    values = {(m.subject, m.precision): m.value for m in f.measures if m.what == "sensitivity" and m.value is not None}
    if not values:
        return ""
    finite = [v for v in values.values() if math.isfinite(v) and v > 0]
    lo, hi = (math.log10(min(finite)), math.log10(max(finite))) if finite else (0.0, 0.0)
    ended = {}
    if f.result is not None and len(f.result.config) == len(f.ops):
        codes = {code: p for p, code in PRECISION_CODES.items()}
        ended = {name: codes.get(code, "?") for (name, _), code in zip(f.ops, f.result.config, strict=True)}
    precisions = [p for p in f.precisions if any(key[1] == p for key in values)]
    head = "".join(f"<th>{esc(h)}</th>" for h in ("op", "type", *precisions, "ended at"))
    rows = []
    for name, op_type in f.ops:
        cells = [f"<td>{esc(name)}</td>", f"<td>{esc(op_type)}</td>"]
        for p in precisions:
            v = values.get((name, p))
            if v is None:
                cells.append("<td></td>")
                continue
            shade = 1.0 if not math.isfinite(v) else (0.0 if v <= 0 or hi == lo else (math.log10(v) - lo) / (hi - lo))
            text = "breaks" if not math.isfinite(v) else f"{v:.2g}"
            cells.append(f'<td class="n" style="background: rgba(214, 39, 40, {0.08 + 0.72 * max(0.0, shade):.2f})">{esc(text)}</td>')
        cells.append(f"<td>{esc(ended.get(name, ''))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    note = (
        "<p>How far each op alone, lowered to each precision, moves its own output on a calibration batch "
        "(relative squared error against FP32): the darker, the more fragile. The speculation takes it as its prior.</p>"
    )
    return (
        f'<h2>Sensitivity of each op</h2>\n{note}\n<table class="trials"><thead><tr>{head}</tr></thead><tbody>\n'
        + "\n".join(rows)
        + "\n</tbody></table>"
    )


def write_report(directory: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write a self-contained HTML report of the history in `directory` to `out`; returns the path written.

    Raises HistoryError where the directory holds no history.
    """
    f = read_facts(directory)
    facts = "\n".join(f"<tr><th>{esc(label)}</th><td>{esc(value)}</td></tr>" for label, value in facts_list(f))
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Tuning report: run {esc(f.run_id)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>Tuning report: run {esc(f.run_id)}</h1>
<table class="facts">
{facts}
</table>
<h2>Accuracy of every trial</h2>
{_accuracy_svg(f)}
<h2>Evaluator timeline</h2>
{_timeline_svg(f)}
<h2>Committed trials</h2>
{_trials_table(f)}
{_sensitivity_table(f)}
</body>
</html>
"""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
