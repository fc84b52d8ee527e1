"""Indexing a result file into the ``requests`` table: one row per request.

A file is indexed in one transaction: its old rows go, every line's row goes in
(streamed, a chunk at a time, so memory stays flat), and the job's ``job_stats``
row, computed from those rows by SQL, records which bytes they were read from.
Killed half-way, the transaction leaves nothing; run again, it gives the same
rows. Rows are kept only if the bytes read are the ones the job recorded
(``jobs.result_sha256``): a file changed under the reader is indexed by nobody.

Reading the file here, not in a caller, is what lets that check and the write
be one transaction; what a line means is :mod:`gembatch.common.resultlines`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    MetaData,
    Table,
    case,
    cast,
    delete,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from gembatch.common import resultlines
from gembatch.common.resultlines import RequestRow, Scan
from gembatch.common.timeutil import now as utcnow
from gembatch.store.database import Store
from gembatch.store.models import Job, JobStats, Request

# Rows sent per INSERT: large enough to amortise the round trip, small enough
# that a million-line file never sits in memory.
_CHUNK = 5000
# pg_advisory_xact_lock(namespace, job id): two indexers of one job take turns.
_LOCK_NAMESPACE = 0x67626931

_FIELDS = RequestRow._fields
# The staged rows' columns: those of ``requests`` but the job id, types included.
_STAGED_COLUMNS = tuple((name, Request.__table__.c[name]) for name in _FIELDS)


class _Changed(Exception):
    """The file's bytes are not the ones the job recorded: roll the rows back."""


class _Stopped(Exception):
    """The run is being interrupted: roll back now rather than finish a long file."""


@dataclass(frozen=True, slots=True)
class IndexOutcome:
    """What :func:`index_file` did: ``indexed``, ``changed`` (the file is not the
    job's recorded result), ``gone`` (no such job), ``missing`` (no file),
    ``stopped`` (interrupted) or ``failed`` (the database refused: read-only,
    locked too long)."""

    status: str
    rows: int = 0
    detail: str = ""

    @property
    def indexed(self) -> bool:
        return self.status == "indexed"


def index_file(
    store: Store,
    job_id: int,
    path: Path | str,
    *,
    sha256: str | None,
    size: int | None,
    stop: Callable[[], bool] | None = None,
) -> IndexOutcome:
    """Replace job ``job_id``'s rows with those of ``path``, in one transaction.

    ``sha256`` and ``size`` are what the job recorded of its result (``None``
    when it recorded none, as for imported jobs): the rows are kept only if the
    bytes read match them. ``stop`` is asked between chunks; once it says yes
    nothing is kept (outcome ``stopped``).

    On SQLite, whose write lock every other writer waits for, the file is read
    into a temporary table of this connection first, outside any write
    transaction; the lock is then held only while the rows move into
    ``requests`` (an ``INSERT ... SELECT`` inside the engine, a fraction of the
    read). PostgreSQL locks rows, not the database: the rows go straight in.
    """
    scan = Scan(path)
    try:
        with store.engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                rows = _index_staged(connection, job_id, scan, sha256, size, stop)
            else:
                rows = _index_direct(connection, job_id, scan, sha256, size, stop)
    except _Gone:
        return IndexOutcome("gone")
    except _Stopped:
        return IndexOutcome("stopped")
    except _Changed:
        return IndexOutcome("changed", detail=f"{path}: not the result file the job recorded")
    except FileNotFoundError:
        return IndexOutcome("missing", detail=f"{path}: result file not found")
    except OSError as exc:
        return IndexOutcome("missing", detail=f"{path}: {exc.strerror or exc}")
    except IntegrityError:
        return IndexOutcome("gone")
    except (OperationalError, DataError) as exc:
        # Read-only, locked too long, or a value the column refuses (a sum past
        # 64 bits): the caller reads the file itself; nothing was kept.
        return IndexOutcome("failed", detail=str(exc.orig or exc).splitlines()[0])
    return IndexOutcome("indexed", rows=rows)


class _Gone(Exception):
    """No such job (deleted meanwhile)."""


def _check(scan: Scan, sha256: str | None, size: int | None) -> None:
    if (sha256 is not None and scan.sha256 != sha256) or (size is not None and scan.size != size):
        raise _Changed
    if sha256 is None and scan.mtime_ns is None:
        raise _Changed  # written to while read, and no hash to tell


def _make_room(connection: Connection, job_id: int) -> None:
    """Inside the write transaction: take the job's turn, drop its old rows."""
    _lock(connection, job_id)
    if connection.execute(select(Job.id).where(Job.id == job_id)).first() is None:
        raise _Gone
    connection.execute(delete(Request).where(Request.job_id == job_id))
    connection.execute(delete(JobStats).where(JobStats.job_id == job_id))


def _finish(connection: Connection, job_id: int, scan: Scan, sha256: str | None) -> None:
    connection.execute(insert(JobStats), [_summary(connection, job_id, scan, sha256)])


def _index_direct(
    connection: Connection,
    job_id: int,
    scan: Scan,
    sha256: str | None,
    size: int | None,
    stop: Callable[[], bool] | None,
) -> int:
    with connection.begin():
        _make_room(connection, job_id)
        rows = _insert_rows(connection, Request.__table__, iter(scan), stop, job_id=job_id)
        _check(scan, sha256, size)  # raised: the transaction rolls back
        _finish(connection, job_id, scan, sha256)
    return rows


def _index_staged(
    connection: Connection,
    job_id: int,
    scan: Scan,
    sha256: str | None,
    size: int | None,
    stop: Callable[[], bool] | None,
) -> int:
    # BEGIN DEFERRED: writing a temporary table takes no lock on the main database.
    connection.execution_options(sqlite_begin="BEGIN DEFERRED")
    staged = _staged_table()
    try:
        with connection.begin():
            staged.drop(connection, checkfirst=True)
            staged.create(connection)
            rows = _insert_rows(connection, staged, iter(scan), stop, job_id=None)
        _check(scan, sha256, size)
        connection.execution_options(sqlite_begin="BEGIN IMMEDIATE")
        with connection.begin():
            _make_room(connection, job_id)
            connection.exec_driver_sql(
                f"INSERT INTO requests ({_column_list(connection, True)}) "
                f"SELECT {int(job_id)}, {_column_list(connection, False)} FROM {_STAGED}"
            )
            _finish(connection, job_id, scan, sha256)
    finally:
        if connection.in_transaction():
            connection.rollback()
        connection.execution_options(sqlite_begin="BEGIN DEFERRED")
        with connection.begin():
            staged.drop(connection, checkfirst=True)
    return rows


# A temporary table lives in the connection's own temporary database: writing it
# takes no lock on the main database, and it goes with the connection.
_STAGED = "gembatch_staged_requests"


def _staged_table() -> Table:
    return Table(
        _STAGED,
        MetaData(),
        *(Column(name, column.type) for name, column in _STAGED_COLUMNS),
        prefixes=["TEMPORARY"],
    )


def _column_list(connection: Connection, with_job: bool) -> str:
    quote = connection.dialect.identifier_preparer.quote
    names = (("job_id",) if with_job else ()) + _FIELDS
    return ", ".join(quote(name) for name in names)


def _insert_rows(
    connection: Connection,
    table: Table | Any,
    rows: Iterator[RequestRow],
    stop: Callable[[], bool] | None,
    *,
    job_id: int | None,
) -> int:
    """Every row into ``table`` (with ``job_id`` first when given), a chunk at a time."""
    quote = connection.dialect.identifier_preparer.quote
    mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(connection.dialect.paramstyle)
    width = len(_FIELDS) + (job_id is not None)
    statement = (
        f"INSERT INTO {quote(table.name)} ({_column_list(connection, job_id is not None)}) "
        f"VALUES ({', '.join([mark or ''] * width)})"
    )
    head = (job_id,) if job_id is not None else ()
    count = 0
    while chunk := list(islice(rows, _CHUNK)):
        if stop is not None and stop():
            raise _Stopped
        if mark is not None:
            # The driver's own executemany with plain tuples: for a million rows,
            # building a dict per row costs a third of the time.
            connection.exec_driver_sql(statement, [(*head, *row) for row in chunk])
        else:
            names = ("job_id",) * bool(head) + _FIELDS
            values = [dict(zip(names, (*head, *row), strict=True)) for row in chunk]
            connection.execute(table.insert(), values)
        count += len(chunk)
    return count


def _lock(connection: Connection, job_id: int) -> None:
    # SQLite's BEGIN IMMEDIATE already serialises writers; PostgreSQL needs a lock
    # that does not hold up the job row's other writers (the poller's records).
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:space, :job)"),
            {"space": _LOCK_NAMESPACE, "job": job_id},
        )


def _summary(connection: Connection, job_id: int, scan: Scan, sha256: str | None) -> dict[str, Any]:
    """The job_stats row of the rows just written, computed from them."""
    mine = Request.job_id == job_id
    counts: dict[str, int] = dict.fromkeys((resultlines.OK, resultlines.ERROR), 0)
    counts[resultlines.MALFORMED] = 0
    for status, count in connection.execute(
        select(Request.status, func.count()).where(mine).group_by(Request.status)
    ):
        counts[status] = count
    ok = Request.status == resultlines.OK
    # Cast: PostgreSQL's SUM of a bigint is a numeric, which the Count type refuses.
    sums = connection.execute(
        select(
            *(
                cast(func.coalesce(func.sum(case((ok, column), else_=0)), 0), BigInteger)
                for column in (
                    Request.prompt_tokens,
                    Request.output_tokens,
                    Request.thinking_tokens,
                    Request.total_tokens,
                )
            )
        ).where(mine)
    ).one()
    return {
        "job_id": job_id,
        "parser_version": resultlines.INDEX_VERSION,
        "result_sha256": sha256,
        "result_size": scan.size,
        "result_mtime_ns": scan.mtime_ns,
        "succeeded": counts[resultlines.OK],
        "failed": counts[resultlines.ERROR],
        "malformed": counts[resultlines.MALFORMED],
        "errors_json": _error_kinds(connection, job_id, counts[resultlines.MALFORMED]),
        "prompt_tokens": int(sums[0]),
        "output_tokens": int(sums[1]),
        "thinking_tokens": int(sums[2]),
        "total_tokens": int(sums[3]),
        "computed_at": utcnow(),
    }


def _error_kinds(connection: Connection, job_id: int, malformed: int) -> list[list[Any]]:
    """``[[code, message, count], ...]``, most frequent first, at most MAX_ERROR_KINDS."""
    found = connection.execute(
        select(Request.error_code, Request.error_message, func.count())
        .where(Request.job_id == job_id, Request.status == resultlines.ERROR)
        .group_by(Request.error_code, Request.error_message)
    )
    counts = (((int(code or 0), message or ""), int(n)) for code, message, n in found)
    return [
        [code, message, n]
        for (code, message), n in resultlines.top_error_kinds(counts, malformed=malformed)
    ]
