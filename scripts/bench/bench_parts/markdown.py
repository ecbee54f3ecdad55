"""BENCHMARKS.md as run_all.py writes it: the command, date and machine, then each part's sections (title, command,
table, notes)."""

from __future__ import annotations

import os
from pathlib import Path

from common import ROOT


def markdown(reports: list[dict], info: dict, command: str, results: Path, elapsed: float) -> str:
    later = info.get("later", {})
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{command}` on {info['date']}, in one run of {elapsed / 60:.0f} minutes on one machine; every figure "
        + "below was taken in that run, "
        + ("except those of the parts run again later (named below), " if later else "")
        + "and figures are only compared within a run. Raw figures: "
        f"`{os.path.relpath(results, ROOT)}/<part>.csv` and `.arrow` (one row per measurement), machine and date in `run.json`.",
        "",
        "| machine | |",
        "| --- | --- |",
        *(f"| {k} | {v} |" for k, v in info["machine"].items()),
        "",
    ]
    if later:
        lines += [
            "Run again later, alone (`run_all.py --parts`), each on the machine its section names; their figures are "
            "compared only among themselves: " + ", ".join(f"{part} ({run['date']})" for part, run in later.items()) + ".",
            "",
        ]
    for report in reports:
        for section in report["sections"]:
            lines += [f"## {section['title']}", "", f"`{report['command']}`", ""]
            if (run := later.get(report.get("part"))) is not None:
                m = run["machine"]
                lines += [
                    f"Run on {run['date']}, alone, in {run['elapsed_s'] / 60:.0f} minutes, on: {m['cpu']} ({m['cpu features']}), "
                    f"{m['cores']} cores, {m['memory']}, load average at start {m['load average at start']}; torch {m['torch']}, "
                    f"torchao {m['torchao']}, ray {m['ray']}.",
                    "",
                ]
            lines.append("| " + " | ".join(section["columns"]) + " |")
            lines.append("| " + " | ".join("---" for _ in section["columns"]) + " |")
            lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in section["rows"]]
            lines.append("")
            lines += [f"- {n}" for n in section.get("notes", [])]
            lines.append("")
    return "\n".join(lines)
