"""Writing a checkpoint directory: one session's append-only Arrow streams, each append durable (`HistoryWriter`), and
the files written whole, atomically (`write_atomically`: the run record, the measures)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

import pyarrow as pa

from ..errors import HistoryError
from .files import (
    _SCHEMAS,
    COMMIT_SCHEMA,
    COMMITS,
    EVALUATION_SCHEMA,
    EVALUATIONS,
    FORMAT,
    LOCK_FILE,
    RUN_FILE,
    RUN_SCHEMA,
    LoadedHistory,
    _segments,
    read_history,
)
from .fingerprint import fingerprint_differences


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Stream:
    """One append-only Arrow stream file: every append is written and fsync'ed before it returns."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.file = open(path, "xb")  # noqa: SIM115 - closed in close()
        fsync_dir(path.parent)
        self.writer = pa.ipc.new_stream(self.file, schema)

    def append(self, table: pa.Table) -> None:
        for batch in table.to_batches():
            self.writer.write_batch(batch)
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        with contextlib.suppress(OSError, pa.ArrowException):
            self.writer.close()
        self.file.close()


class HistoryWriter:
    """The writer of one session of a checkpoint directory; holds the directory's lock while open."""

    def __init__(self, directory: Path, session: int, lock: int):
        self.directory = directory
        self.session = session
        self._lock = lock
        self._streams: dict[str, _Stream] = {}

    @classmethod
    def open(cls, directory: str | os.PathLike, run_id: str, fp: dict, resume: bool) -> tuple[HistoryWriter, LoadedHistory | None]:
        """Lock `directory` for a run; with `resume`, load the history there (if any) and check it is of this run.

        Returns the store and the loaded history (None for a new one). Raises HistoryError
        when the directory has a history and `resume` is false, when that history is not
        ours or its fingerprint differs, and when another run holds the directory.
        """
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise HistoryError(f"checkpoint {directory} is a file, not a directory")
        directory.mkdir(parents=True, exist_ok=True)
        lock = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise HistoryError(f"checkpoint {directory} is in use by another run (its lock file is held)") from None
            loaded = None
            if (directory / RUN_FILE).exists() or any(_segments(directory).values()):
                if not resume:
                    raise HistoryError(
                        f"checkpoint {directory} already holds a history: pass resume=True to go on with it, or give another directory"
                    )
                loaded = read_history(directory)
                if diff := fingerprint_differences(loaded.fingerprint, fp):
                    raise HistoryError(f"the history in {directory} is of a different run; recorded != asked: " + "; ".join(diff))
                for s in loaded.torn:  # keep the warning once: the next load finds the file whole
                    os.truncate(s.path, s.torn_at)
            else:
                _write_run_record(directory, run_id, fp)
            return cls(directory, loaded.sessions if loaded else 0, lock), loaded
        except BaseException:
            os.close(lock)
            raise

    def _stream(self, kind: str) -> _Stream:
        if kind not in self._streams:
            self._streams[kind] = _Stream(self.directory / f"{kind}-{self.session:04d}.arrows", _SCHEMAS[kind])
        return self._streams[kind]

    def append(self, rows: pa.Table | None, commits: list[tuple[int, int]]) -> None:
        """Write rows (of SCHEMA) and commits (trial id, commit seq) durably."""
        if rows is not None and rows.num_rows:
            self._stream(EVALUATIONS).append(rows.replace_schema_metadata(EVALUATION_SCHEMA.metadata))
        if commits:
            trial_ids, seqs = zip(*commits, strict=True)
            self._stream(COMMITS).append(pa.table({"trial_id": trial_ids, "commit_seq": seqs}, schema=COMMIT_SCHEMA))

    def close(self) -> None:
        for stream in self._streams.values():
            stream.close()
        self._streams.clear()
        if self._lock >= 0:
            os.close(self._lock)  # releases the flock
            self._lock = -1


def _write_run_record(directory: Path, run_id: str, fp: dict) -> None:
    table = pa.table(
        {"format": [FORMAT], "run_id": [run_id], "created": [int(time.time() * 1e6)], "fingerprint": [json.dumps(fp)]},
        schema=RUN_SCHEMA,
    )
    write_atomically(directory / RUN_FILE, table)


def write_atomically(path: Path, table: pa.Table) -> None:
    """Write `table` as the Arrow IPC file `path`, whole or not at all: a temporary file, fsync'ed, renamed into place."""
    tmp = path.parent / f".{path.name}.tmp"
    with open(tmp, "wb") as f:
        with pa.ipc.new_file(f, table.schema) as writer:
            writer.write_table(table)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
