"""The plain-text report of a history: its facts as label/value pairs, the aligned table of its committed
trials, and `history_summary` (what `raytune-inc history DIR` prints)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from ..criterion import AccuracyCriterion
from ..history.measures import Measure
from ..records import CANCELLED, ERROR, LOST, REJECTED
from ..space import FP32, LOWER_PRECISIONS
from .facts import Facts, Row, read_facts

RIGHT = {"seq", "trial", *LOWER_PRECISIONS, "accuracy", "seconds"}  # the columns aligned right


def table_head(precisions: tuple[str, ...]) -> tuple[str, ...]:
    """The columns of the trials table: one count of ops per lower precision of the run."""
    return ("seq", "trial", "stage", *precisions, "accuracy", "meets", "status", "worker", "seconds")


def num(value: float | None) -> str:
    """A number as the report prints it; "-" for none."""
    return "-" if value is None else f"{value:.6g}"


def _precisions_text(row: Row, precisions: tuple[str, ...]) -> str:
    return ", ".join(f"{p} {n}" for p, n in row.counts((FP32, *precisions)).items())


def _criterion_text(c: AccuracyCriterion) -> str:
    if c.criterion == "relative":
        loss = f"{c.tolerable_loss:g} relative ({c.tolerable_loss * 100:g}% of the baseline)"
    else:
        loss = f"{c.tolerable_loss:g} absolute"
    return f"tolerable loss {loss}, {'higher' if c.higher_is_better else 'lower'} is better"


def facts_list(f: Facts) -> list[tuple[str, str]]:
    """The facts of a history as (label, value) pairs."""
    if f.baseline is not None:
        baseline = f"{num(f.baseline)}{' (given)' if f.baseline_given else ''}"
        goal = f"accuracy {'>=' if f.criterion.higher_is_better else '<='} {num(f.goal)}"
    else:
        baseline = "none: the baseline evaluation failed" if f.baseline_failed else "none recorded"
        goal = "none (no baseline accuracy)"
    result = f.result
    if result is None:
        result_text = "none met the goal"
    else:
        counts = _precisions_text(result, f.precisions)
        result_text = f"trial {result.trial_id} (commit {result.commit_seq}): accuracy {num(result.accuracy)}; {counts}"
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
        *_rejected_facts(f),
        ("cancelled", str(f.count(CANCELLED))),
        ("lost", str(f.count(LOST))),
        ("evaluation span", span),
        ("result", result_text),
        *measure_facts(f.measures),
    ]


def _rejected_facts(f: Facts) -> list[tuple[str, str]]:
    """Evaluations read batch by batch: how many were rejected early, and the samples read of those in all."""
    read = [r for r in f.rows if r.samples_total is not None]
    if not read:
        return []
    samples, total = sum(r.samples or 0 for r in read), sum(r.samples_total for r in read)
    return [
        ("rejected", f"{f.count(REJECTED)} (stopped once they surely missed the goal; accuracy column: ~ the bound reached)"),
        ("samples read", f"{samples} of {total} ({samples / total:.0%})"),
    ]


def measure_facts(measures: Sequence[Measure]) -> list[tuple[str, str]]:
    """The tuned model as deployed (what `tune` measured at the end), as (label, value) pairs."""
    out = []
    values = {(m.what, m.subject): m for m in measures}
    for mode in ("eager", "compiled"):
        fp32, tuned = values.get(("latency", f"fp32 {mode}")), values.get(("latency", f"tuned {mode}"))
        if fp32 and tuned and fp32.value and tuned.value:
            out.append(
                (
                    f"latency, {mode}",
                    f"{fp32.value:.3g} ms FP32 -> {tuned.value:.3g} ms tuned ({fp32.value / tuned.value:.2f}x); {tuned.note}",
                )
            )
    eager, compiled = values.get(("accuracy", "tuned eager")), values.get(("accuracy", "tuned compiled"))
    if compiled is not None:
        shown = "-" if compiled.value is None else num(compiled.value)
        eager_text = "-" if eager is None or eager.value is None else num(eager.value)
        out.append(("accuracy as deployed", f"{shown} compiled, {eager_text} eager; {compiled.note}"))
    fp32, tuned = values.get(("size", "fp32")), values.get(("size", "tuned"))
    if fp32 and tuned and fp32.value and tuned.value:
        out.append(
            (
                "model size",
                f"{fp32.value / 2**20:.3g} MiB FP32 -> {tuned.value / 2**20:.3g} MiB tuned ({fp32.value / tuned.value:.2f}x smaller)",
            )
        )
    for m in measures:
        if m.what == "skipped":
            out.append((f"skipped: {m.subject} at {m.precision}", m.note or "slower than FP32"))
    sensitivity: dict[str, list[tuple[float, str]]] = {}
    for m in measures:
        if m.what == "sensitivity" and m.value is not None:
            sensitivity.setdefault(m.precision or "", []).append((m.value, m.subject))
    for precision, ops in sensitivity.items():
        top = ", ".join(f"{name} ({value:.2g})" for value, name in sorted(ops, reverse=True)[:3])
        out.append((f"most sensitive at {precision}", top))
    startup = [m for m in measures if m.what == "startup" and m.value is not None]
    if startup:
        out.append(("evaluator start-up", ", ".join(f"{m.subject.rsplit('-', 1)[-1]}: {m.value:.1f} s" for m in startup)))
    for m in measures:
        if m.what == "first trial" and m.value is not None:
            out.append(("first trial started", f"{m.value:.1f} s after the call"))
    return out


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


def table_cells(rows: Sequence[Row], precisions: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The cells of the trials table (columns `table_head(precisions)`), one tuple per row."""
    spec = _column_format(r.shown for r in rows if r.shown is not None)
    out = []
    for r in rows:
        counts = r.counts(precisions)
        duration = r.duration
        out.append(
            (
                str(r.commit_seq),
                str(r.trial_id),
                r.stage,
                *(str(counts[p]) for p in precisions),
                "-" if r.shown is None else ("~" if r.accuracy is None else "") + format(r.shown, spec),
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
        parts = [v.rjust(w) if h in RIGHT else v.ljust(w) for h, v, w in zip(head, line, widths, strict=True)]
        lines.append("  ".join(parts).rstrip())
    return lines


def history_summary(directory: str | os.PathLike) -> str:
    """A plain-text summary of the history in `directory`: its facts, then its committed trials in commit order.

    Raises HistoryError where the directory holds no history.
    """
    f = read_facts(directory)
    facts = facts_list(f)
    width = max(len(label) for label, _ in facts)
    lines = [f"{label.ljust(width)}  {value}" for label, value in facts]
    committed = f.committed
    lines.append("")
    if committed:
        lines.append(f"committed trials ({len(committed)}), in commit order:")
        lines.extend(_aligned(table_head(f.precisions), table_cells(committed, f.precisions)))
    else:
        lines.append("no committed trials")
    return "\n".join(lines) + "\n"
