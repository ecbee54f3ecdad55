"""A checkpoint directory's files, and reading them back (writing them: `writer.py`).

A checkpoint directory holds:

    run.arrow                the run record (Arrow IPC file, one row): format, run id,
                             creation time, and the fingerprint of the run as JSON
    evaluations-NNNN.arrows  one Arrow IPC stream per session (the first run, then one
                             per resume): one record batch per save, rows of SCHEMA
    commits-NNNN.arrows      (trial id, commit seq) of rows saved before they were committed
    lock                     locked (flock) by the run writing to the directory

Appends are durable: each save is written and fsync'ed before the run goes on, and a
session never rewrites what an earlier one wrote, so a SIGKILL at any instant can only
tear the last record of the stream being written. Loading detects a torn record, keeps
every row before it and warns. Nothing is pickled: a history is Arrow data and JSON
text, checked against the expected schema (field metadata and extension types
included) before any value is read, so a crafted file cannot run code.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import HistoryError, HistoryWarning
from ..records import BASELINE_STAGE, OK, Status
from ..space import PRECISION_CODES, PRECISIONS, Config, TuningSpace
from .fingerprint import criterion_from_fingerprint, space_from_fingerprint
from .table import SCHEMA, SCHEMA_BEFORE_SAMPLES, finish_table

FORMAT = 1
RUN_FILE = "run.arrow"
LOCK_FILE = "lock"
EVALUATIONS = "evaluations"
COMMITS = "commits"
_SEGMENT = re.compile(r"(evaluations|commits)-(\d{4,})\.arrows")

RUN_SCHEMA = pa.schema(
    [("format", pa.int32()), ("run_id", pa.string()), ("created", pa.timestamp("us", tz="UTC")), ("fingerprint", pa.string())],
    metadata={b"raytune_inc": b"run"},
)
COMMIT_SCHEMA = pa.schema([("trial_id", pa.int64()), ("commit_seq", pa.int64())], metadata={b"raytune_inc": b"commits"})
EVALUATION_SCHEMA = SCHEMA.with_metadata({b"raytune_inc": b"evaluations"})
EVALUATION_SCHEMA_BEFORE_SAMPLES = SCHEMA_BEFORE_SAMPLES.with_metadata({b"raytune_inc": b"evaluations"})
_SCHEMAS = {EVALUATIONS: EVALUATION_SCHEMA, COMMITS: COMMIT_SCHEMA}


@dataclass
class Segment:
    """One stream file as read: its rows, and the length of its intact part where its end was torn."""

    path: Path
    table: pa.Table
    torn_at: int | None = None


@dataclass
class LoadedHistory:
    """A history directory as read: the run record, every session's rows in file order, the commits."""

    directory: Path
    run_id: str
    fingerprint: dict
    table: pa.Table  # rows of SCHEMA, all sessions, commit_seq as recorded with the row
    commits: dict[int, int]  # trial id -> commit seq, recorded after the row
    sessions: int  # the number of the next session
    torn: list[Segment]

    def baseline(self) -> float | None:
        """The given baseline, or the accuracy of the recorded baseline evaluation."""
        if self.fingerprint["baseline"] is not None:
            return float(self.fingerprint["baseline"])
        table = self.table
        ok = table.filter(pc.and_(pc.equal(table["stage"], BASELINE_STAGE), pc.equal(table["status"], OK)))
        return ok["accuracy"][0].as_py() if ok.num_rows else None

    def finished_table(self) -> pa.Table:
        return finish_table(self.table, self.commits, criterion_from_fingerprint(self.fingerprint), self.baseline())


def _not_ours(path: Path, why: str) -> HistoryError:
    return HistoryError(f"{path} is not a raytune-inc history file ({why})")


def _stream_header(schema: pa.Schema) -> bytes:
    """The bytes a stream of `schema` starts with (its schema message)."""
    sink = pa.BufferOutputStream()
    pa.ipc.new_stream(sink, schema).close()
    return sink.getvalue().to_pybytes()[:-8]  # without the end-of-stream marker


def read_segment(path: Path, kind: str) -> Segment:
    """The rows of one stream file, up to a torn last record if there is one."""
    schema = _SCHEMAS[kind]
    with pa.OSFile(str(path), "rb") as source:
        size = source.size()
        if size == 0:
            return Segment(path, schema.empty_table())
        try:
            reader = pa.ipc.open_stream(source)
        except (pa.ArrowInvalid, OSError, EOFError) as exc:
            source.seek(0)
            if size < len(header := _stream_header(schema)) and header.startswith(source.read(size)):
                return Segment(path, schema.empty_table(), torn_at=0)  # killed while writing its first bytes
            raise _not_ours(path, f"not an Arrow stream: {exc}") from None
        older = kind == EVALUATIONS and reader.schema.equals(EVALUATION_SCHEMA_BEFORE_SAMPLES, check_metadata=True)
        if not (older or reader.schema.equals(schema, check_metadata=True)):
            raise _not_ours(path, f"its columns are {', '.join(f'{f.name}: {f.type}' for f in reader.schema)}")
        batches: list[pa.RecordBatch] = []
        good = source.tell()
        torn_at = None
        while True:
            try:
                batches.append(reader.read_next_batch())
            except StopIteration:
                break
            except (pa.ArrowInvalid, OSError, EOFError):
                torn_at = good
                break
            good = source.tell()
        table = pa.Table.from_batches(batches, schema=reader.schema).combine_chunks()  # one batch per save: one chunk
        if older:  # written before the samples columns: they are null
            for name in schema.names[len(reader.schema) :]:
                table = table.append_column(schema.field(name), pa.nulls(table.num_rows, schema.field(name).type))
        try:
            table.validate(full=True)
        except pa.ArrowInvalid as exc:
            raise _not_ours(path, f"invalid data: {exc}") from None
        return Segment(path, table, torn_at)


def _read_run_record(directory: Path) -> tuple[str, dict]:
    path = directory / RUN_FILE
    try:
        with pa.OSFile(str(path), "rb") as f:
            table = pa.ipc.open_file(f).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise _not_ours(path, f"not an Arrow file: {exc}") from None
    if not table.schema.equals(RUN_SCHEMA, check_metadata=True) or table.num_rows != 1:
        raise _not_ours(path, "not a run record")
    record = table.to_pylist()[0]
    if record["format"] != FORMAT:
        raise HistoryError(f"{path}: history format {record['format']} is not the one this version reads ({FORMAT})")
    try:
        fp = json.loads(record["fingerprint"])
        if not isinstance(fp, dict):
            raise ValueError("not an object")
        space_from_fingerprint(fp)
        criterion_from_fingerprint(fp)
        if fp["baseline"] is not None and not (isinstance(fp["baseline"], int | float) and math.isfinite(fp["baseline"])):
            raise ValueError(f"baseline {fp['baseline']!r}")
    except (ValueError, TypeError, KeyError) as exc:
        raise _not_ours(path, f"its fingerprint cannot be read: {type(exc).__name__}: {exc}") from None
    return record["run_id"], fp


def _segments(directory: Path) -> dict[str, list[tuple[int, Path]]]:
    found: dict[str, list[tuple[int, Path]]] = {EVALUATIONS: [], COMMITS: []}
    for path in directory.iterdir():
        if m := _SEGMENT.fullmatch(path.name):
            found[m.group(1)].append((int(m.group(2)), path))
    for paths in found.values():
        paths.sort()
    return found


def read_history(directory: str | os.PathLike) -> LoadedHistory:
    """Read every session of the history in `directory`; warns (HistoryWarning) about torn last records."""
    directory = Path(directory)
    if not directory.is_dir():
        raise HistoryError(f"no history at {directory}: {'not a directory' if directory.exists() else 'no such directory'}")
    segments = _segments(directory)
    if not (directory / RUN_FILE).exists():
        what = "an empty directory" if not any(directory.iterdir()) else f"no {RUN_FILE} in it"
        raise HistoryError(f"no history in {directory}: {what}")
    run_id, fp = _read_run_record(directory)
    read = {kind: [read_segment(path, kind) for _, path in paths] for kind, paths in segments.items()}
    table = pa.concat_tables([s.table for s in read[EVALUATIONS]] or [EVALUATION_SCHEMA.empty_table()]).replace_schema_metadata(None)
    commits_table = pa.concat_tables([s.table for s in read[COMMITS]] or [COMMIT_SCHEMA.empty_table()])
    if table["trial_id"].null_count or len(pc.unique(table["trial_id"])) != table.num_rows:
        raise _not_ours(directory, "trial ids are missing or repeated")
    statuses = set(pc.unique(table["status"]).to_pylist())
    if unknown := statuses - set(Status):
        raise _not_ours(directory, f"unknown statuses {sorted(map(str, unknown))}")
    commits = dict(zip(commits_table["trial_id"].to_pylist(), commits_table["commit_seq"].to_pylist(), strict=True))
    torn = [s for ss in read.values() for s in ss if s.torn_at is not None]
    for s in torn:
        rows = s.table.num_rows
        warnings.warn(
            f"{s.path}: its last record was torn (the run was killed while writing it) and is dropped; "
            f"the {rows} {'row' if rows == 1 else 'rows'} before it are kept",
            HistoryWarning,
            stacklevel=3,
        )
    sessions = 1 + max((n for paths in segments.values() for n, _ in paths), default=-1)
    return LoadedHistory(directory, run_id, fp, table, commits, sessions, torn)


def load_history(directory: str | os.PathLike) -> pa.Table:
    """The history in a checkpoint directory as one pyarrow Table: one row per evaluation, by trial id.

    The same table as `TuneResult.history` of the run that wrote it. Raises HistoryError
    when the directory holds no history of ours; warns (HistoryWarning) when a torn last
    record, from a run killed while writing it, is dropped.
    """
    return read_history(directory).finished_table()


def decode_configs(space: TuningSpace, keys: pa.ChunkedArray | pa.Array) -> list[Config]:
    """The configs of `space` whose keys are `keys` (see Config.key), checked; vectorised for long histories."""
    keys = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
    n = len(space)
    if not len(keys):
        return []
    if keys.null_count:
        raise HistoryError("a recorded config is null")
    lengths = pc.binary_length(keys).to_numpy()
    if (bad := np.flatnonzero(lengths != n)).size:
        raise HistoryError(f"recorded config {keys[int(bad[0])].as_py()!r:.60} has {lengths[bad[0]]} characters; the space has {n} ops")
    offsets = np.frombuffer(keys.buffers()[1], np.int32)[keys.offset : keys.offset + len(keys) + 1]
    data = np.frombuffer(keys.buffers()[2], np.uint8)[offsets[0] : offsets[-1]].reshape(len(keys), n)
    # allowed[code, op]: op supports the precision of that code byte
    allowed = np.zeros((256, n), bool)
    for p in PRECISIONS:
        allowed[ord(PRECISION_CODES[p])] = [op.supports(p) for op in space]
    ok = allowed[data, np.arange(n)]
    if not ok.all():
        row, col = (int(x[0]) for x in np.nonzero(~ok))
        raise HistoryError(f"recorded config {keys[row].as_py()!r:.60}: op {space.ops[col].name!r} cannot be at the precision it names")
    return [Config.of_key(space, key) for key in keys.to_pylist()]
