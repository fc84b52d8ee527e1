"""Ad-hoc, read-only SQL over the gembatch database (``gembatch sql``).

Read-only is enforced by the database, not by parsing the query:

* SQLite: a separate connection opened with ``mode=ro`` (the file cannot be
  written), ``PRAGMA query_only`` and an authorizer that allows only reads, so
  that statements that would create *other* files (``ATTACH``, ``VACUUM INTO``)
  are refused before SQLite touches the disk. Python's ``sqlite3`` runs one
  statement per call.
* PostgreSQL (psycopg 3): a ``READ ONLY`` transaction that is always rolled
  back, and the extended query protocol, which refuses several statements in
  one string (so ``COMMIT; DELETE ...`` cannot leave the read-only transaction).

This guards the data against mistakes; it is not a sandbox against a database
account that may, say, read server files with its own functions.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gembatch.common.errors import BadInput
from gembatch.store.database import Store

READ_ONLY = "gembatch sql is read-only"

# Statement kinds a read-only query may start with. Anything else is refused
# before reaching the database, with a clearer message than the engine's.
_READ_KEYWORDS = frozenset({"select", "with", "values", "explain", "pragma", "show", "table"})
_LEADING_NOISE = re.compile(r"(\s+|--[^\n]*(\n|$)|/\*.*?\*/|\()*", re.DOTALL)
_FIRST_WORD = re.compile(r"[A-Za-z_]+")

# SQLite pragmas that only read. Those in the first set take a table or index
# name as argument; those in the second are read when given no value.
_PRAGMAS_WITH_NAME = frozenset(
    {
        "table_info",
        "table_xinfo",
        "table_list",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
        "foreign_key_check",
        "integrity_check",
        "quick_check",
    }
)
_PRAGMAS_READ = frozenset(
    {
        "application_id",
        "auto_vacuum",
        "busy_timeout",
        "cache_size",
        "collation_list",
        "compile_options",
        "data_version",
        "database_list",
        "encoding",
        "foreign_keys",
        "freelist_count",
        "function_list",
        "journal_mode",
        "module_list",
        "page_count",
        "page_size",
        "pragma_list",
        "query_only",
        "schema_version",
        "synchronous",
        "user_version",
    }
)
_SQLITE_READ_ACTIONS = frozenset(
    {
        sqlite3.SQLITE_SELECT,
        sqlite3.SQLITE_READ,
        sqlite3.SQLITE_FUNCTION,
        getattr(sqlite3, "SQLITE_RECURSIVE", 33),
    }
)
_SCHEMA_TABLES = frozenset({"sqlite_master", "sqlite_schema", "sqlite_temp_master"})
_SQLITE_ACTION_NAMES = {
    getattr(sqlite3, name): name.removeprefix("SQLITE_").replace("_", " ")
    for name in dir(sqlite3)
    if name.startswith("SQLITE_")
    and isinstance(getattr(sqlite3, name), int)
    and name not in ("SQLITE_OK", "SQLITE_DENY", "SQLITE_IGNORE")
    and not name.startswith(("SQLITE_LIMIT", "SQLITE_DBCONFIG"))
}


@dataclass(frozen=True)
class QueryResult:
    """Column names and a lazy row iterator, valid inside :func:`run_query`'s block."""

    columns: list[str]
    rows: Iterator[tuple[Any, ...]]


def first_keyword(sql: str) -> str:
    """The statement's first word, lower-case, after comments and opening parentheses."""
    match = _LEADING_NOISE.match(sql)
    rest = sql[match.end() :] if match else sql
    word = _FIRST_WORD.match(rest)
    return word.group(0).lower() if word else ""


def check_read_statement(sql: str) -> None:
    """Refuse empty input and statements that cannot be reads, with a one-line message."""
    keyword = first_keyword(sql)
    if not keyword:
        raise BadInput("sql: empty query")
    if keyword not in _READ_KEYWORDS:
        raise BadInput(
            f"sql: {READ_ONLY}: {keyword.upper()} statements are not allowed "
            "(SELECT, WITH, VALUES, EXPLAIN, PRAGMA and SHOW are)"
        )


@contextlib.contextmanager
def run_query(store: Store, sql: str) -> Iterator[QueryResult]:
    """Run one read-only statement; rows stream while the block is open.

    Raises :class:`BadInput` (one line, exit 2) for SQL errors and for any
    attempt to write; the database is left unchanged either way.
    """
    check_read_statement(sql)
    # Not the engine's dialect: a SQLite file is queried without SQLAlchemy ever loading.
    dialect = store.dialect
    if dialect == "sqlite":
        with _sqlite_query(store, sql) as result:
            yield result
    elif dialect == "postgresql" and store.engine.dialect.driver == "psycopg":
        with _postgres_query(store, sql) as result:
            yield result
    else:
        raise BadInput(
            f"sql: read-only queries are supported on SQLite and on PostgreSQL through "
            f"psycopg 3 (postgresql+psycopg://), not {dialect}+{store.engine.dialect.driver}"
        )


# --- SQLite ---------------------------------------------------------------------------


def _sqlite_path(store: Store) -> Path:
    if store.file is None:
        raise BadInput("sql: an in-memory database has nothing to query")
    return store.file.resolve()


def connect_sqlite_readonly(path: Path) -> tuple[sqlite3.Connection, list[str]]:
    """A connection that cannot write; the list collects why the authorizer said no."""
    uri = f"file:{quote(str(path))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    denied: list[str] = []

    def authorize(action: int, arg1: str | None, arg2: str | None, *_: Any) -> int:
        if action in _SQLITE_READ_ACTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_UPDATE and arg1 in _SCHEMA_TABLES:
            # SQLite asks this of itself while it parses the schema (for
            # pragma_table_info() and the like); a real write to the schema
            # table still fails, on the read-only file.
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA:
            name = (arg1 or "").lower()
            if name in _PRAGMAS_WITH_NAME or (name in _PRAGMAS_READ and arg2 is None):
                return sqlite3.SQLITE_OK
            denied.append(f"PRAGMA {name}" + (f"={arg2}" if arg2 is not None else ""))
            return sqlite3.SQLITE_DENY
        denied.append(_SQLITE_ACTION_NAMES.get(action, f"action {action}"))
        return sqlite3.SQLITE_DENY

    try:
        conn.execute("PRAGMA busy_timeout=30000")  # wait for a writer's checkpoint
        conn.execute("PRAGMA query_only=ON")  # belt and braces under mode=ro
        conn.set_authorizer(authorize)
    except sqlite3.Error:
        conn.close()
        raise
    return conn, denied


@contextlib.contextmanager
def _sqlite_query(store: Store, sql: str) -> Iterator[QueryResult]:
    path = _sqlite_path(store)
    if not path.exists():
        raise BadInput(f"sql: {path}: no such database")
    try:
        conn, denied = connect_sqlite_readonly(path)
    except sqlite3.Error as exc:
        raise BadInput(f"sql: {path}: {exc}") from None
    try:
        try:
            cursor = conn.execute(sql)
        except (sqlite3.Error, sqlite3.Warning) as exc:
            raise BadInput(_sqlite_message(exc, denied)) from None
        columns = [d[0] for d in cursor.description or ()]
        rows = _sqlite_rows(cursor, denied)
        try:
            yield QueryResult(columns, rows)
        finally:
            rows.close()  # before the connection goes, so a half-read cursor ends quietly
    finally:
        conn.close()


def _sqlite_rows(
    cursor: sqlite3.Cursor, denied: list[str]
) -> Generator[tuple[Any, ...], None, None]:
    try:
        # Not ``yield from``: it would hand close() on to the cursor, which fails
        # once the connection is gone.
        for row in cursor:  # noqa: UP028
            yield row
    except sqlite3.Error as exc:
        raise BadInput(_sqlite_message(exc, denied)) from None


def _sqlite_message(exc: BaseException, denied: list[str]) -> str:
    text = _first_line(exc)
    if denied:
        return f"sql: {READ_ONLY}: {denied[0]} is not allowed"
    if "readonly" in text or "read-only" in text or "query_only" in text:
        return f"sql: {READ_ONLY}: {text}"
    if "one statement at a time" in text:
        return "sql: one statement at a time"
    return f"sql: {text}"


# --- PostgreSQL -----------------------------------------------------------------------


@contextlib.contextmanager
def _postgres_query(store: Store, sql: str) -> Iterator[QueryResult]:
    import psycopg

    with store.engine.connect() as sa_conn:
        conn: psycopg.Connection[Any] = sa_conn.connection.driver_connection  # type: ignore[assignment]
        try:
            # Start clean, so that SET TRANSACTION is the first statement of the
            # transaction psycopg opens implicitly.
            conn.rollback()
            with conn.cursor() as cursor:
                try:
                    cursor.execute("SET TRANSACTION READ ONLY")
                except psycopg.Error as exc:
                    raise BadInput(_postgres_message(exc)) from None
                # stream(): extended protocol (one statement only), rows as they come.
                stream = cursor.stream(sql)
                try:
                    try:
                        first = next(stream, None)
                    except psycopg.Error as exc:
                        raise BadInput(_postgres_message(exc)) from None
                    columns = [d.name for d in cursor.description or ()]
                    results = _postgres_rows(first, stream)
                    try:
                        yield QueryResult(columns, results)
                    finally:
                        results.close()
                finally:
                    # A stream left half-read holds the connection's lock: closing it
                    # cancels the query and lets the rollback below run (else: deadlock).
                    stream.close()
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
            # Never hand a connection the user's SQL touched back to the pool.
            sa_conn.invalidate()


def _postgres_rows(
    first: tuple[Any, ...] | None, rows: Iterator[tuple[Any, ...]]
) -> Generator[tuple[Any, ...], None, None]:
    import psycopg

    if first is None:
        return
    yield first
    try:
        yield from rows
    except psycopg.Error as exc:
        raise BadInput(_postgres_message(exc)) from None


def _postgres_message(exc: BaseException) -> str:
    text = _first_line(exc)
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate == "25006":  # read_only_sql_transaction
        return f"sql: {READ_ONLY}: {text}"
    if "multiple commands" in text:
        return "sql: one statement at a time"
    if "didn't produce a result" in text:
        return "sql: the statement returned no rows to show"
    return f"sql: {text}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
