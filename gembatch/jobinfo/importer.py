"""``import``: merge a job-info.jsonl file into the database.

The file is streamed line by line (never read whole) and upserted in chunks,
all in ONE transaction, so memory stays flat and a failed import changes
nothing. Batch names already seen in this file are tracked in a temporary
table of that same transaction rather than in a Python dict, for the same
reason.

Merge rule (a job is never moved backwards):

- The state group (``state``, ``update_time``, ``end_time``, ``dest_file_name``)
  is taken from the line only when the line is newer: the database knows no
  state yet; or the line is terminal and the database is not; or neither is
  terminal and the line's ``update_time`` is later (or the database has none).
  A terminal state in the database is final.
- Every other field only fills a value the database does not have (NULL);
  unknown keys only add keys the database's ``extra_json`` lacks. A state-group
  field is filled that way too when line and database agree on the state.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

from sqlalchemy import (
    JSON,
    Connection,
    Table,
    bindparam,
    column,
    insert,
    select,
    table,
    text,
    update,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.types import TypeEngine

from gembatch.common import states
from gembatch.common.errors import BadInput, StoreError
from gembatch.common.timeutil import UTC, now
from gembatch.jobinfo.lines import (
    RECORD_FIELDS,
    JobRecord,
    LineError,
    parse_line,
    rebase_record,
    same_dir,
)
from gembatch.store.database import Store
from gembatch.store.models import EVENT_IMPORTED, Event, Job

# A job-info line is a few hundred bytes; anything this long is not one, and
# reading it whole would let one line decide how much memory we use.
MAX_LINE_BYTES = 1 << 20
# Rows per bulk select/insert/update: large enough to amortise round trips,
# small enough to stay under every backend's bind-parameter limit.
CHUNK_ROWS = 2000
# A file of garbage must not become a list of a million messages.
MAX_LISTED_BAD = 1000

_BOM = b"\xef\xbb\xbf"
_STATE_GROUP = ("state", "update_time", "end_time", "dest_file_name")
# What this machine did with a job (downloaded, cleaned up) is the database's
# own record: a line seeds it for a new job but never overrides it, or a result
# found missing and forgotten would be "restored" by the next merge.
_LOCAL_PROGRESS = ("result_path", "result_size", "result_sha256", "downloaded_at", "cleaned_at")
_PLAIN_FIELDS = tuple(
    f
    for f in RECORD_FIELDS
    if f not in _STATE_GROUP and f != "extra_json" and f not in _LOCAL_PROGRESS
)

_jobs = Job.__table__
_events = Event.__table__
_SEEN = "gembatch_import_seen"
_seen = table(_SEEN, column("batch_name"), column("line"), column("fingerprint"))


@dataclass(frozen=True)
class BadLine:
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class ImportReport:
    file: str
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    # Bad lines left out (only with skip_bad; otherwise nothing is imported).
    skipped: int = 0
    # Lines repeating an earlier line of the same file exactly; counted once.
    repeated: int = 0
    # Every bad line, and the first MAX_LISTED_BAD of them with their reasons.
    bad_total: int = 0
    bad: list[BadLine] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.new or self.updated)

    def summary(self) -> str:
        text = (
            f"imported {self.file}: {self.new} new, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.skipped} skipped"
        )
        if self.repeated:
            text += f" ({self.repeated} repeated line{'s' if self.repeated != 1 else ''})"
        return text

    def bad_lines_text(self) -> list[str]:
        """One ``FILE:LINE: reason`` per bad line (the first :data:`MAX_LISTED_BAD`)."""
        out = [str(b) for b in self.bad]
        hidden = self.bad_total - len(self.bad)
        if hidden > 0:
            out.append(f"{self.file}: ... and {hidden} more bad lines")
        return out


class BadLines(BadInput):
    """The file has bad lines and ``skip_bad`` was not given: nothing was imported."""

    def __init__(self, report: ImportReport) -> None:
        self.report = report
        self.lines = report.bad_lines_text()
        count = report.bad_total
        self.summary = (
            f"nothing imported: {count} bad line{'s' if count != 1 else ''} in {report.file} "
            "(--skip-bad imports the good lines)"
        )
        super().__init__("\n".join([*self.lines, self.summary]))


def import_jobinfo(
    store: Store,
    path: str | os.PathLike[str],
    *,
    skip_bad: bool = False,
    base_dir: str | os.PathLike[str] | None = None,
    reject_sink: IO[bytes] | None = None,
    display: str | None = None,
) -> ImportReport:
    """Merge the job-info file at ``path`` into the database, in one transaction.

    Relative paths on the lines are relative to the file's own directory; they
    are stored relative to ``base_dir`` (the ``--job-info`` file's directory,
    default: the file's own), rebased when the two differ.

    Raises :class:`BadLines` (exit 2, nothing changed) when a line is bad,
    unless ``skip_bad``; then the good lines are imported, the bad ones listed
    in the report and, if ``reject_sink`` is given, copied to it verbatim.
    ``display`` is how messages name the file (default: ``path`` as given).
    """
    source = Path(path)
    shown = display if display is not None else os.fspath(path)
    target_dir = Path(base_dir) if base_dir is not None else source.parent
    report = ImportReport(file=shown)
    handle = _open(source, shown)
    try:
        with store.transaction() as session:
            run = _Run(
                session.connection(), report, skip_bad, source.parent, target_dir, reject_sink
            )
            run.start()
            for number, raw, complete in _read_lines(handle, shown, reject_sink):
                run.line(number, raw, complete)
            run.finish()
            if report.bad_total and not skip_bad:
                raise BadLines(report)  # rolls the transaction back
    except SQLAlchemyError as exc:
        raise StoreError(f"{store.display_url}: {short_error(exc)}") from None
    finally:
        handle.close()
    return report


def _open(path: Path, shown: str) -> IO[bytes]:
    try:
        if path.is_dir():
            raise BadInput(f"{shown}: is a directory, not a job-info file")
        return open(path, "rb")
    except FileNotFoundError:
        raise BadInput(f"{shown}: no such file") from None
    except IsADirectoryError:
        raise BadInput(f"{shown}: is a directory, not a job-info file") from None
    except PermissionError:
        raise BadInput(f"{shown}: permission denied") from None
    except OSError as exc:
        raise BadInput(f"{shown}: cannot read: {exc.strerror or exc}") from None


def _read_lines(
    handle: IO[bytes], shown: str, reject_sink: IO[bytes] | None
) -> Iterator[tuple[int, bytes | None, bool]]:
    """Yield ``(line number, bytes, ends with newline)``; ``None`` for a line too long.

    A too-long line is skipped in bounded reads (copied to ``reject_sink`` as it goes).
    """
    number = 0
    while True:
        try:
            raw = handle.readline(MAX_LINE_BYTES + 1)
        except OSError as exc:
            raise BadInput(f"{shown}: cannot read: {exc.strerror or exc}") from None
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            if reject_sink is not None:
                reject_sink.write(raw)
            while raw and not raw.endswith(b"\n"):
                raw = handle.readline(MAX_LINE_BYTES)
                if reject_sink is not None:
                    reject_sink.write(raw)
            if reject_sink is not None and not raw.endswith(b"\n"):
                reject_sink.write(b"\n")
            yield number, None, True
            continue
        yield number, raw, raw.endswith(b"\n")


def decode_line(raw: bytes, *, first: bool, complete: bool) -> JobRecord | str | None:
    """One raw line -> a record, a reason it is bad, or ``None`` for a blank line."""
    if first and raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    body = raw.rstrip(b"\r\n")
    if not body.strip():
        return None
    try:
        text_ = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8: invalid byte 0x{body[exc.start]:02x} at byte offset {exc.start}"
    try:
        return parse_line(text_)
    except LineError as exc:
        reason = str(exc)
        if not complete and reason.startswith("not JSON"):
            reason += "; the last line has no newline: probably cut off mid-write"
        return reason


@dataclass
class _Pending:
    line: int
    record: JobRecord
    fingerprint: int
    raw: bytes | None


class _BulkInsert:
    """An executemany straight to the driver, values run through the columns' own
    bind processors (so stored values are exactly what the ORM would store).

    SQLAlchemy's Core executemany builds and processes a parameter dict per row
    (about 10 µs each); over 100,000 jobs, their events and the seen-names table
    that alone would eat most of the 5 s budget.
    """

    def __init__(
        self,
        conn: Connection,
        target: Table | Any,
        names: Sequence[str],
        types: Mapping[str, TypeEngine[Any]] | None = None,
    ) -> None:
        dialect = conn.dialect
        compiled = insert(target).compile(dialect=dialect, column_keys=list(names))
        self.conn = conn
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        self.names = list(compiled.positiontup or names) if self.positional else list(names)
        overrides = types or {}
        self.processors = [
            _fast_datetime(
                overrides.get(name, target.c[name].type)
                .dialect_impl(dialect)
                .bind_processor(dialect)
            )
            for name in self.names
        ]

    def __call__(
        self, rows: Sequence[Mapping[str, Any]], constants: Mapping[str, Any] | None = None
    ) -> None:
        """Insert ``rows``; ``constants`` are values shared by every row, processed once."""
        if not rows:
            return
        shared = constants or {}
        processor = dict(zip(self.names, self.processors, strict=True))
        varying = [n for n in self.names if n not in shared]
        constant = [n for n in self.names if n in shared]
        fixed = [_process(processor[n], shared[n]) for n in constant]
        # Per row: pick the varying values (in C), process the few that need it,
        # then put them and the constants in statement order (in C again).
        pick = itemgetter(*varying)
        to_process = [(i, processor[n]) for i, n in enumerate(varying) if processor[n]]
        slot = {n: i for i, n in enumerate(varying)}
        slot.update(
            {n: len(varying) + i for i, n in enumerate(k for k in self.names if k in shared)}
        )
        order = itemgetter(*(slot[n] for n in self.names))
        params: list[Any] = []
        for row in rows:
            picked = pick(row)
            values = [picked] if len(varying) == 1 else list(picked)
            for i, proc in to_process:
                if values[i] is not None:
                    values[i] = proc(values[i])
            final = order(values + fixed)
            params.append(final if self.positional else dict(zip(self.names, final, strict=True)))
        self.conn.exec_driver_sql(self.sql, params)


_SAMPLES = (
    datetime(2025, 7, 12, 19, 20, 32, 449509, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(2025, 7, 12, 21, 20, 32, tzinfo=timezone(timedelta(hours=2))),
)


def _sqlite_datetime(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _fast_datetime(proc: Any) -> Any:
    """Swap a datetime bind processor for an equivalent one-liner when, and only
    when, it gives the very same text (SQLite stores naive UTC text); a third of
    the insert time was two layers of generic processing per timestamp."""
    if proc is None:
        return None
    try:
        if all(proc(sample) == _sqlite_datetime(sample) for sample in _SAMPLES):
            return _sqlite_datetime
    except Exception:
        pass
    return proc


def _process(proc: Any, value: Any) -> Any:
    return proc(value) if proc is not None and value is not None else value


_JOB_INSERT_COLUMNS = (*RECORD_FIELDS, "added_at", "dest_inline", "error_count")
_EVENT_COLUMNS = ("job_id", "at", "kind", "old_state", "new_state", "message")
# A Python None must become SQL NULL, not the JSON text 'null' (the JSON type's
# default), so that `extra_json IS NULL` works for people writing SQL.
_NULLABLE_JSON = {"extra_json": JSON(none_as_null=True)}


class _Run:
    """State of one import: the current chunk and the counters."""

    def __init__(
        self,
        conn: Connection,
        report: ImportReport,
        skip_bad: bool,
        from_dir: Path,
        to_dir: Path,
        reject_sink: IO[bytes] | None,
    ) -> None:
        self.conn = conn
        self.report = report
        self.skip_bad = skip_bad
        self.from_dir = from_dir
        self.to_dir = to_dir
        self.in_place = same_dir(from_dir, to_dir)
        self.reject_sink = reject_sink
        self.chunk: dict[str, _Pending] = {}
        self.table_was_empty = False
        self.insert_jobs = _BulkInsert(conn, _jobs, _JOB_INSERT_COLUMNS, _NULLABLE_JSON)
        self.insert_events = _BulkInsert(conn, _events, _EVENT_COLUMNS)
        self.insert_seen = _BulkInsert(conn, _seen, ("batch_name", "line", "fingerprint"))
        self.bad: list[BadLine] = []

    # -- per line --

    def start(self) -> None:
        # Names seen earlier in this file, for duplicate detection with flat
        # memory. Created inside the transaction, so a rollback removes it too.
        self.conn.execute(
            text(
                f"CREATE TEMPORARY TABLE {_SEEN} (batch_name VARCHAR(255) PRIMARY KEY, "
                "line INTEGER NOT NULL, fingerprint BIGINT NOT NULL)"
            )
        )
        # Inside the write transaction (BEGIN IMMEDIATE on SQLite), so it stays true.
        self.table_was_empty = self.conn.execute(select(_jobs.c.id).limit(1)).first() is None

    def _current(self, names: list[str]) -> dict[str, Mapping[str, Any]]:
        query = select(
            _jobs.c.id, _jobs.c.last_polled_at, *(_jobs.c[f] for f in RECORD_FIELDS)
        ).where(_jobs.c.batch_name.in_(names))
        return {row.batch_name: row._mapping for row in self.conn.execute(query)}

    def line(self, number: int, raw: bytes | None, complete: bool) -> None:
        if raw is None:
            self._bad(number, f"line too long (more than {MAX_LINE_BYTES} bytes)", None)
            return
        decoded = decode_line(raw, first=number == 1, complete=complete)
        if decoded is None:
            return
        if isinstance(decoded, str):
            self._bad(number, decoded, raw)
            return
        record = decoded if self.in_place else rebase_record(decoded, self.from_dir, self.to_dir)
        fingerprint = record.fingerprint()
        earlier = self.chunk.get(record.batch_name)
        if earlier is not None:
            self._duplicate(
                number, record.batch_name, earlier.line, earlier.fingerprint, fingerprint, raw
            )
            return
        keep = raw if self.reject_sink is not None else None
        self.chunk[record.batch_name] = _Pending(number, record, fingerprint, keep)
        if len(self.chunk) >= CHUNK_ROWS:
            self._flush()

    def finish(self) -> None:
        self._flush()
        self.conn.execute(text(f"DROP TABLE {_SEEN}"))
        self.bad.sort(key=lambda b: b.line)
        self.report.bad = self.bad

    def _bad(self, number: int, reason: str, raw: bytes | None) -> None:
        self.report.bad_total += 1
        if self.skip_bad:
            self.report.skipped += 1
        if len(self.bad) < MAX_LISTED_BAD:
            self.bad.append(BadLine(self.report.file, number, reason))
        if self.reject_sink is not None and raw is not None:
            self.reject_sink.write(raw if raw.endswith(b"\n") else raw + b"\n")

    def _duplicate(
        self, number: int, name: str, earlier: int, fp_earlier: int, fp: int, raw: bytes | None
    ) -> None:
        if fp == fp_earlier:
            self.report.repeated += 1
        else:
            self._bad(number, f"{name} already appears on line {earlier} with different data", raw)

    # -- per chunk --

    def _flush(self) -> None:
        if not self.chunk:
            return
        chunk, self.chunk = self.chunk, {}
        rows = self.conn.execute(
            select(_seen.c.batch_name, _seen.c.line, _seen.c.fingerprint).where(
                _seen.c.batch_name.in_(list(chunk))
            )
        )
        for name, line, fp in rows:
            item = chunk.pop(name)
            self._duplicate(item.line, name, line, fp, item.fingerprint, item.raw)
        if not chunk:
            return
        self.insert_seen(
            [
                {"batch_name": n, "line": p.line, "fingerprint": p.fingerprint}
                for n, p in chunk.items()
            ],
        )
        if self.report.bad_total and not self.skip_bad:
            return  # the import will be rolled back: keep validating, stop writing
        self._merge(chunk)

    def _merge(self, chunk: dict[str, _Pending]) -> None:
        # Into an empty table (first import) nothing can exist but what this file
        # added, and the seen-names table already filtered those out.
        current = {} if self.table_was_empty else self._current(list(chunk))
        at = now()
        inserts: list[dict[str, Any]] = []
        updates: dict[frozenset[str], list[dict[str, Any]]] = {}
        events: list[dict[str, Any]] = []
        for name, item in chunk.items():
            row = current.get(name)
            if row is None:
                inserts.append(item.record.values())
                continue
            changes = merge_values(row, item.record)
            if not changes:
                self.report.unchanged += 1
                continue
            self.report.updated += 1
            updates.setdefault(frozenset(changes), []).append({**changes, "_id": row["id"]})
            events.append(
                _event(
                    row["id"],
                    row["state"],
                    changes.get("state", row["state"]),
                    f"{self.report.file}:{item.line}: updated {', '.join(changes)}",
                )
            )
        if inserts:
            # Plain executemany (no RETURNING, which SQLite would run row by row);
            # ids are then read back by name. Rows get ids in file order.
            self.insert_jobs(inserts, {"added_at": at, "dest_inline": False, "error_count": 0})
            created = self.conn.execute(
                select(_jobs.c.id, _jobs.c.batch_name).where(
                    _jobs.c.batch_name.in_([row["batch_name"] for row in inserts])
                )
            )
            for job_id, name in created:
                item = chunk[name]
                events.append(
                    _event(job_id, None, item.record.state, f"{self.report.file}:{item.line}")
                )
            self.report.new += len(inserts)
        for keys, params in updates.items():
            stmt = (
                update(_jobs)
                .where(_jobs.c.id == bindparam("_id"))
                .values({k: bindparam(k) for k in keys})
            )
            self.conn.execute(stmt, params)
        self.insert_events(events, {"at": at, "kind": EVENT_IMPORTED})


def _event(job_id: int, old: str | None, new: str | None, message: str) -> dict[str, Any]:
    # "at" and "kind" are the same for the whole chunk: passed once as constants.
    return {
        "job_id": job_id,
        "old_state": old,
        "new_state": new,
        "message": message,
    }


def incoming_is_newer(current: Mapping[str, Any], incoming: JobRecord) -> bool:
    """Whether the line's state group replaces the database's (see the module docstring)."""
    if incoming.state is None:
        return False
    if current.get("last_polled_at") is not None:
        # gembatch has asked the API itself: a line's state is a hint at best, and
        # an old line must never flip a job the API reports running to "finished".
        return False
    if current["state"] is None:
        return True
    if states.is_terminal(current["state"]):
        return False
    if states.is_terminal(incoming.state):
        return True
    if current["update_time"] is None:
        return incoming.update_time is not None
    return incoming.update_time is not None and incoming.update_time > current["update_time"]


def merge_values(current: Mapping[str, Any], incoming: JobRecord) -> dict[str, Any]:
    """The column values an incoming record changes on an existing row ({} = unchanged)."""
    changes: dict[str, Any] = {}
    for name in _PLAIN_FIELDS:
        value = getattr(incoming, name)
        if value is not None and current[name] is None:
            changes[name] = value
    newer = incoming_is_newer(current, incoming)
    same_state = incoming.state is not None and incoming.state == current["state"]
    for name in _STATE_GROUP:
        value = getattr(incoming, name)
        if value is None or value == current[name]:
            continue
        if newer or (same_state and current[name] is None):
            changes[name] = value
    if incoming.extra_json:
        mine = current["extra_json"] or {}
        added = {k: v for k, v in incoming.extra_json.items() if k not in mine}
        if added:
            changes["extra_json"] = {**mine, **added}
    return changes


def short_error(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text_ = str(orig if orig is not None else exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__
