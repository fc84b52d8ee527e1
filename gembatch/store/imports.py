"""The SQL of ``gembatch import``: one transaction that merges a job-info file in chunks.

:mod:`gembatch.jobinfo.importer` decides (which lines are bad or repeated, which
jobs are new, what a line changes on a stored job); this module executes, all
inside the ONE transaction :func:`importing` opens, so a failed import changes
nothing. Batch names already seen in the file are tracked in a temporary table
of that same transaction rather than in a Python dict, so memory stays flat.

Rows go to the driver through :class:`_BulkInsert`, values processed exactly as
the ORM would, because per-row Core processing alone would eat most of the time
an import of 100,000 lines may take.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from operator import itemgetter
from typing import Any, NamedTuple

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
from sqlalchemy.types import TypeEngine

from gembatch.common.timeutil import UTC, now
from gembatch.store.database import Store, database_errors
from gembatch.store.models import COUNT_MAX, EVENT_IMPORTED, Event, Job

# What the columns hold, so that an import can call a value that does not fit a
# bad line before it writes: PostgreSQL enforces VARCHAR lengths.
MAX_COUNT = COUNT_MAX


# pg_advisory_xact_lock key of imports (one for the whole database).
_LOCK_SPACE = 0x67626A69


def text_limit(column: str) -> int | None:
    """How many characters the jobs table's text column holds (None: no limit)."""
    length = getattr(Job.__table__.c[column].type, "length", None)
    return length if isinstance(length, int) else None


_jobs = Job.__table__
_events = Event.__table__
_SEEN = "gembatch_import_seen"
_seen = table(_SEEN, column("batch_name"), column("line"), column("fingerprint"))


class NewJob(NamedTuple):
    """A job to insert: its column values and the message of its ``imported`` event."""

    values: Mapping[str, Any]
    message: str


class JobChange(NamedTuple):
    """Columns to update on a stored job, and its ``imported`` event."""

    job_id: int
    changes: Mapping[str, Any]
    old_state: str | None
    new_state: str | None
    message: str


class SeenLine(NamedTuple):
    """A batch name an earlier line of the file being imported already carried."""

    batch_name: str
    line: int
    fingerprint: int


@contextlib.contextmanager
def importing(store: Store, columns: Sequence[str]) -> Iterator[ImportTransaction]:
    """The one transaction of an import: committed when the block ends, rolled back
    (nothing changed) when it raises. ``columns`` are the ``jobs`` columns a line
    holds (a :class:`NewJob`'s values, a current row's keys)."""
    with database_errors(store), store.transaction() as session:
        transaction = ImportTransaction(session.connection(), columns)
        transaction.start()
        yield transaction
        transaction.finish()


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
        self._conn = conn
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
        self._conn.exec_driver_sql(self.sql, params)


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


_EVENT_COLUMNS = ("job_id", "at", "kind", "old_state", "new_state", "message")
# A Python None must become SQL NULL, not the JSON text 'null' (the JSON type's
# default), so that `extra_json IS NULL` works for people writing SQL.
_NULLABLE_JSON = {"extra_json": JSON(none_as_null=True)}


class ImportTransaction:
    """The statements of one import, all on the connection of its one transaction."""

    def __init__(self, conn: Connection, columns: Sequence[str]) -> None:
        self._conn = conn
        self.columns = tuple(columns)
        self.table_was_empty = False
        self.insert_jobs = _BulkInsert(
            conn, _jobs, (*self.columns, "added_at", "dest_inline", "error_count"), _NULLABLE_JSON
        )
        self.insert_events = _BulkInsert(conn, _events, _EVENT_COLUMNS)
        self.insert_seen = _BulkInsert(conn, _seen, ("batch_name", "line", "fingerprint"))

    def start(self) -> None:
        if self._conn.dialect.name == "postgresql":
            # Two importers of one file (pollers starting together) would both find
            # a job new and both insert it. SQLite's BEGIN IMMEDIATE already makes
            # them take turns; here a transaction lock does, and the second, reading
            # after the first committed, finds the rows it made.
            self._conn.execute(text("SELECT pg_advisory_xact_lock(:space)"), {"space": _LOCK_SPACE})
        # Names seen earlier in this file, for duplicate detection with flat
        # memory. Created inside the transaction, so a rollback removes it too.
        self._conn.execute(
            text(
                f"CREATE TEMPORARY TABLE {_SEEN} (batch_name VARCHAR(255) PRIMARY KEY, "
                "line INTEGER NOT NULL, fingerprint BIGINT NOT NULL)"
            )
        )
        # Inside the write transaction (BEGIN IMMEDIATE on SQLite), so it stays true.
        self.table_was_empty = self._conn.execute(select(_jobs.c.id).limit(1)).first() is None

    def finish(self) -> None:
        self._conn.execute(text(f"DROP TABLE {_SEEN}"))

    def seen_before(self, names: Sequence[str]) -> list[SeenLine]:
        """Which of ``names`` an earlier chunk of this file already carried."""
        rows = self._conn.execute(
            select(_seen.c.batch_name, _seen.c.line, _seen.c.fingerprint).where(
                _seen.c.batch_name.in_(list(names))
            )
        )
        return [SeenLine(name, line, fp) for name, line, fp in rows]

    def remember_seen(self, seen: Iterable[SeenLine]) -> None:
        """Record names (first seen on these lines) for :meth:`seen_before`."""
        self.insert_seen([{"batch_name": n, "line": i, "fingerprint": fp} for n, i, fp in seen])

    def current_rows(self, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored ``columns`` (with ``id`` and ``last_polled_at``) of the jobs
        named, by batch name; names must not have been written by this import yet."""
        if self.table_was_empty:
            # Into an empty table (first import) nothing can exist but what this
            # import added, and seen_before already filtered those out.
            return {}
        # FOR UPDATE: a poller on another host may be confirming one of these jobs
        # right now; the merge must decide on what it committed, not on what it is
        # about to overwrite (SQLite needs none: BEGIN IMMEDIATE already serialises).
        query = (
            select(_jobs.c.id, _jobs.c.last_polled_at, *(_jobs.c[f] for f in self.columns))
            .where(_jobs.c.batch_name.in_(list(names)))
            .with_for_update()
        )
        result = self._conn.execute(query)
        keys = list(result.keys())
        return {row.batch_name: dict(zip(keys, row, strict=True)) for row in result}

    def apply(self, new: Sequence[NewJob], changed: Sequence[JobChange]) -> None:
        """Insert ``new`` jobs, update ``changed`` ones, and add an ``imported``
        event for each (the updates' events first, then the new jobs')."""
        at = now()
        updates: dict[frozenset[str], list[dict[str, Any]]] = {}
        events: list[dict[str, Any]] = []
        for change in changed:
            updates.setdefault(frozenset(change.changes), []).append(
                {**change.changes, "_id": change.job_id}
            )
            events.append(_event(change.job_id, change.old_state, change.new_state, change.message))
        if new:
            # Plain executemany (no RETURNING, which SQLite would run row by row);
            # ids are then read back by name. Rows get ids in file order.
            self.insert_jobs(
                [job.values for job in new],
                {"added_at": at, "dest_inline": False, "error_count": 0},
            )
            by_name = {job.values["batch_name"]: job for job in new}
            created = self._conn.execute(
                select(_jobs.c.id, _jobs.c.batch_name).where(_jobs.c.batch_name.in_(list(by_name)))
            )
            for job_id, name in created:
                job = by_name[name]
                events.append(_event(job_id, None, job.values["state"], job.message))
        for keys, params in updates.items():
            stmt = (
                update(_jobs)
                .where(_jobs.c.id == bindparam("_id"))
                .values({k: bindparam(k) for k in keys})
            )
            self._conn.execute(stmt, params)
        self.insert_events(events, {"at": at, "kind": EVENT_IMPORTED})


def _event(job_id: int, old: str | None, new: str | None, message: str) -> dict[str, Any]:
    # "at" and "kind" are the same for the whole chunk: passed once as constants.
    return {
        "job_id": job_id,
        "old_state": old,
        "new_state": new,
        "message": message,
    }
