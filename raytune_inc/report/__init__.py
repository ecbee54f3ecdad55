"""Reports of a history directory: a plain-text summary for a terminal (`history_summary`) and a
self-contained HTML page with two inline SVG pictures (`write_report`)."""

from .facts import BASELINE, ERRORED, FAILS, MEETS, STOPPED, WASTED
from .html import write_report
from .svg import COLOURS
from .text import history_summary

__all__ = ["BASELINE", "COLOURS", "ERRORED", "FAILS", "MEETS", "STOPPED", "WASTED", "history_summary", "write_report"]
