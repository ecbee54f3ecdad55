"""Reports of a history directory: the text summary, the HTML page, and how the page renders in Chromium."""

from __future__ import annotations

import math
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from raytune_inc import AccuracyCriterion, HistoryError, Op, TuningError, TuningSpace, load_history, tune_space
from raytune_inc.history.fingerprint import fingerprint
from raytune_inc.history.table import HistoryRow, rows_table
from raytune_inc.history.writer import HistoryWriter
from raytune_inc.records import LOST, OK, Evaluation
from raytune_inc.report import COLOURS, MEETS, WASTED, history_summary, write_report
from raytune_inc.strategies import get_strategy
from raytune_inc.synthetic import AdditiveLossEvaluation, random_space

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
GEOMETRY = {"x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "width", "height", "d", "transform", "viewbox"}


class SometimesFailing:
    """AdditiveLossEvaluation where about one config in ten raises and one in five loses 0.05 more:
    failures the speculation cannot foresee, so that it wastes evaluations."""

    def __init__(self, space: TuningSpace, seed: int):
        self.inner = AdditiveLossEvaluation(space, seed=seed, cost=0.05)

    def __call__(self, config: dict[str, str]) -> float:
        h = zlib.crc32(repr(sorted(config.items())).encode()) % 10
        if h == 0 and any(p != "fp32" for p in config.values()):
            raise RuntimeError("no kernel for this layout")
        return self.inner(config) - (0.05 if h in (1, 2) else 0.0)


class Raising:
    """Raises for every config, or for every config but the all-fp32 one."""

    def __init__(self, baseline: float | None):
        self.baseline = baseline

    def __call__(self, config: dict[str, str]) -> float:
        if self.baseline is not None and all(p == "fp32" for p in config.values()):
            return self.baseline
        raise ValueError("dataset missing")


@pytest.fixture(scope="module")
def history(ray_local, tmp_path_factory) -> Path:
    """One run on two Ray evaluators: committed, speculative-wasted, errored rows.

    Whether the second evaluator comes up in time to take work, and so whether a guess is
    wasted, depends on the machine's load: up to three runs are made to get every kind of row."""
    for attempt in range(3):
        directory = tmp_path_factory.mktemp(f"report-{attempt}") / "history"
        space = random_space(10, seed=2)
        tune_space(space, SometimesFailing(space, seed=2), workers=2, checkpoint=directory)
        rows = load_history(directory).to_pylist()
        if len({r["worker"] for r in rows}) == 2 and any(is_wasted(r) and r["status"] == OK for r in rows):
            break
    return directory


def is_wasted(row: dict) -> bool:
    return row["commit_seq"] is None and row["stage"] != "baseline" and row["status"] in ("ok", "error")


def summary_fact(summary: str, label: str) -> str:
    match = re.search(rf"^{re.escape(label)}\s+(.*)$", summary, re.MULTILINE)
    assert match, f"no {label!r} in\n{summary}"
    return match.group(1)


class Page(HTMLParser):
    """Every element of a page, and whether its tags are balanced."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.titles: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1] == "title":
            self.titles.append(data)

    def with_class(self, tag: str, cls: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and cls in a.get("class", "").split()]


def check_page(path: Path, directory: Path) -> Page:
    """The page of `directory` parses, is balanced, self-contained, and draws each row of the history."""
    text = path.read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    page.close()
    assert not page.errors and not page.stack, (page.errors, page.stack)
    assert [t for t, _ in page.elements].count("svg") == 2
    assert "<script" not in text.lower() and "http://" not in text and "https://" not in text
    for tag, attrs in page.elements:
        for name, value in attrs.items():
            if name in GEOMETRY:
                assert not re.search(r"nan|inf", value or "", re.IGNORECASE), (tag, name, value)
    table = load_history(directory)
    marks = page.with_class("g", "mark")
    assert len(marks) == table.num_rows
    timed = [r for r in table.to_pylist() if r["worker"] and r["start_time"] is not None and r["end_time"] is not None]
    assert len(page.with_class("rect", "bar")) == len(timed)
    return page


def test_the_history_has_every_kind_of_row(history):
    rows = load_history(history).to_pylist()
    assert sum(r["commit_seq"] is not None for r in rows) >= 5
    assert sum(is_wasted(r) and r["status"] == OK for r in rows) >= 1, "no speculative evaluation was wasted"
    assert sum(r["status"] == "error" for r in rows) >= 1
    assert len({r["worker"] for r in rows}) == 2


def test_summary_names_the_counts_and_the_result(history):
    summary = history_summary(history)
    table = load_history(history)
    rows = table.to_pylist()
    committed = sorted((r for r in rows if r["commit_seq"] is not None), key=lambda r: r["commit_seq"])
    assert summary_fact(summary, "run") == rows[0]["run_id"]
    assert summary_fact(summary, "strategy") == "conservative"
    assert summary_fact(summary, "criterion") == "tolerable loss 0.01 relative (1% of the baseline), higher is better"
    assert summary_fact(summary, "baseline") == "0.95"
    assert summary_fact(summary, "goal") == f"accuracy >= {0.95 * 0.99:.6g}"
    assert summary_fact(summary, "ops in the space") == "10"
    assert summary_fact(summary, "evaluations").startswith(f"{len(rows)} ")
    assert summary_fact(summary, "committed trials") == str(len(committed))
    assert summary_fact(summary, "wasted").startswith(f"{sum(map(is_wasted, rows))} ")
    for status in ("errored", "cancelled", "lost"):
        expected = sum(r["status"] == {"errored": "error"}.get(status, status) for r in rows)
        assert summary_fact(summary, status) == str(expected)
    result = [r for r in committed if r["meets"]][-1]
    counts = ", ".join(f"{p} {result['config'].count(c)}" for p, c in (("fp32", "."), ("bf16", "b"), ("fp16", "h"), ("int8", "i")))
    expected = f"trial {result['trial_id']} (commit {result['commit_seq']}): accuracy {result['accuracy']:.6g}; {counts}"
    assert summary_fact(summary, "result") == expected

    lines = summary.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("seq "))
    body = lines[head + 1 :]
    assert [int(line.split()[0]) for line in body] == [r["commit_seq"] for r in committed]
    assert [int(line.split()[1]) for line in body] == [r["trial_id"] for r in committed]
    assert len({line.index(" yes ") if " yes " in line else line.index(" no ") for line in body}) == 1, "meets column not aligned"
    errored = next(line for line, r in zip(body, committed, strict=True) if r["status"] == "error")
    assert re.search(r"\s-\s+no\s+error\s", errored)


def test_a_missing_or_empty_directory_raises_history_error(tmp_path):
    for directory in (tmp_path / "none", tmp_path):
        with pytest.raises(HistoryError):
            history_summary(directory)
        with pytest.raises(HistoryError):
            write_report(directory, tmp_path / "report.html")
    assert not (tmp_path / "report.html").exists()


def test_report_is_one_self_contained_page_drawing_every_evaluation(history, tmp_path):
    out = tmp_path / "new" / "dir" / "report.html"
    assert write_report(history, out) == out
    page = check_page(out, history)
    table = load_history(history)
    tooltips = [int(re.match(r"trial (\d+)", t).group(1)) for t in page.titles if t.startswith("trial ")]
    assert set(tooltips) == set(table["trial_id"].to_pylist())
    assert len(tooltips) == table.num_rows + len(page.with_class("rect", "bar")), "one tooltip per marker and one per bar"
    kinds = {k for a in page.with_class("g", "mark") for k in a["class"].split()} - {"mark"}
    assert {"meets", "fails", "wasted", "baseline", "errored"} <= kinds
    workers = sorted(set(table["worker"].to_pylist()))
    text = out.read_text()
    assert all(text.count(f">{w}</text>") == 1 for w in workers)
    assert text.index(f">{workers[0]}</text>") < text.index(f">{workers[1]}</text>")


def crafted_history(directory: Path) -> None:
    """A history with text that needs escaping, a NaN accuracy, a lost row without worker; lower is better."""
    space = TuningSpace([Op("conv<1>", "Conv2d"), Op("fc", "Linear")])
    criterion = AccuracyCriterion(0.5, "absolute", higher_is_better=False)
    fp = fingerprint(space, get_strategy("conservative"), criterion, ("bf16", "fp16", "int8"), None)
    store, _ = HistoryWriter.open(directory, "run<&>", fp, resume=False)
    t = 1_700_000_000.0
    worker = "<script>alert(1)</script>"

    def row(trial_id: int, key: str, stage: str, accuracy: float | None, seq: int | None = None, status: str = OK, who: str = worker):
        ev = Evaluation(space.config_from_key(key), accuracy, status, None, t + trial_id, t + trial_id + 0.5, who)
        return HistoryRow(trial_id, ev.config, stage, ev.start, who, ev, seq)

    rows = [
        row(0, "..", "baseline", 2.0),
        row(1, "i.", "int8 <type>\nwise", math.nan, seq=1),
        row(2, "ii", "int8 & more", 2.3, seq=2),
        row(3, ".i", "speculative", 9.0),
        row(4, "h.", "gone", None, status=LOST, who=""),
    ]
    store.append(rows_table("run<&>", "conservative", rows, criterion, 2.0), [])
    store.close()


def test_text_from_the_history_is_escaped_and_nan_is_no_accuracy(tmp_path):
    directory = tmp_path / "crafted"
    crafted_history(directory)
    summary = history_summary(directory)
    assert summary_fact(summary, "criterion") == "tolerable loss 0.5 absolute, lower is better"
    assert summary_fact(summary, "goal") == "accuracy <= 2.5"
    assert summary_fact(summary, "result") == "trial 2 (commit 2): accuracy 2.3; fp32 0, bf16 0, fp16 0, int8 2"
    assert summary_fact(summary, "wasted").startswith("1 ") and summary_fact(summary, "lost") == "1"
    assert re.search(r"^\s*1\s+1\s+int8 <type> wise .* - +no ", summary, re.MULTILINE), summary

    out = write_report(directory, tmp_path / "crafted.html")
    page = check_page(out, directory)
    text = out.read_text()
    assert "<script" not in text and "&lt;script&gt;" in text and "run run&lt;&amp;&gt;" in text
    assert len(page.with_class("rect", "bar")) == 4
    kinds = [a["class"].split()[1] for a in page.with_class("g", "mark")]
    assert kinds == ["baseline", "errored", "meets", "wasted", "stopped"]


def edge_history(directory: Path, case: str) -> None:
    space = random_space(4, seed=1)
    if case == "baseline only":
        # The baseline takes longer than the run may: the run stops before its first trial.
        res = tune_space(space, AdditiveLossEvaluation(space, seed=1, cost=0.05), workers=0, timeout=0.01, checkpoint=directory)
        assert res.stop_reason == "timeout" and res.trials == []
    elif case == "single trial":
        tune_space(space, AdditiveLossEvaluation(space, seed=1), workers=0, max_trials=1, checkpoint=directory)
    elif case == "all errors":
        tune_space(space, Raising(0.9), workers=0, checkpoint=directory)
    else:
        with pytest.raises(TuningError):
            tune_space(space, Raising(None), workers=0, checkpoint=directory)


@pytest.mark.parametrize("case", ["baseline only", "single trial", "all errors", "baseline failed"])
def test_small_and_failed_histories(tmp_path, case):
    directory = tmp_path / "h"
    edge_history(directory, case)
    table = load_history(directory)
    summary = history_summary(directory)
    committed = table.filter(pc.is_valid(table["commit_seq"])).num_rows
    assert summary_fact(summary, "committed trials") == str(committed)
    assert summary_fact(summary, "evaluations").startswith(f"{table.num_rows} ")
    out = write_report(directory, tmp_path / "report.html")
    page = check_page(out, directory)
    text = out.read_text()
    if case == "baseline failed":
        assert summary_fact(summary, "baseline") == "none: the baseline evaluation failed"
        assert summary_fact(summary, "goal") == "none (no baseline accuracy)"
        assert not page.with_class("line", "ref") and "no goal" in text
    else:
        assert len(page.with_class("line", "ref")) == 2
    if case == "single trial":
        assert committed == 1 and summary_fact(summary, "result").startswith("trial 1 (commit 1)")
    else:
        assert summary_fact(summary, "result") == "none met the goal"
    if case == "all errors":
        assert summary_fact(summary, "errored") == str(table.num_rows - 1) and committed >= 1


# ------------------------------------------------------------------ rendering


def read_png(path: Path) -> np.ndarray:
    """The pixels (height, width, RGB) of an 8-bit RGB or RGBA non-interlaced PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, header, chunks = 8, None, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        elif kind == b"IEND":
            break
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(b"".join(chunks))
    assert len(raw) == height * (stride + 1)
    out = np.zeros((height, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        line = np.frombuffer(raw, np.uint8, stride, start + 1)
        if kind == 0:
            cur = line.copy()
        elif kind == 1:
            cur = np.cumsum(line.reshape(width, bpp), axis=0, dtype=np.uint8).reshape(stride)
        elif kind == 2:
            cur = line + prev
        elif kind in (3, 4):
            cur = unfilter_average_paeth(kind, line.tobytes(), prev.tobytes(), bpp)
        else:
            raise AssertionError(f"row {y}: unknown PNG filter {kind}")
        out[y] = cur
        prev = cur
    return out.reshape(height, width, bpp)[:, :, :3]


def unfilter_average_paeth(kind: int, line: bytes, prev: bytes, bpp: int) -> np.ndarray:
    cur = bytearray(line)
    for i in range(len(cur)):
        a = cur[i - bpp] if i >= bpp else 0
        b = prev[i]
        if kind == 3:
            cur[i] = (cur[i] + ((a + b) >> 1)) & 255
            continue
        c = prev[i - bpp] if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    return np.frombuffer(bytes(cur), np.uint8)


def near(pixels: np.ndarray, colour: str, tolerance: int = 12) -> int:
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], np.int16)
    return int((np.abs(pixels.astype(np.int16) - rgb).max(axis=2) <= tolerance).sum())


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def test_the_page_renders_in_headless_chromium(history, tmp_path):
    binary = chromium()
    if binary is None:
        pytest.skip("no chromium binary found (the Debian package `chromium` provides /usr/bin/chromium)")
    page = write_report(history, tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--hide-scrollbars",
        "--window-size=1200,1600",
        f"--screenshot={shot}",
        page.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = read_png(shot)
    assert pixels.shape == (1600, 1200, 3)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, "the screenshot is (nearly) one flat colour"
    assert (pixels[5, 5] == 255).all(), "the page background is not white"
    assert near(pixels, COLOURS[MEETS]) >= 2000, "committed markers and bars are not drawn"
    assert near(pixels, COLOURS[WASTED]) >= 400, "speculative-wasted markers and bars are not drawn"
