"""Opening the database: engine set-up, SQLite pragmas, migrations on first use.

Every command goes through :func:`open_store`, so no command ever sees an old
schema. Start-up is paid by every command, and alembic and SQLAlchemy take
most of a second to import: an open asks the schema's revision with one query
and imports alembic only when it is not the newest one shipped, and an
up-to-date SQLite file is asked through the standard library, its engine made
(SQLAlchemy imported) only when a command first needs it. ``gembatch sql``
on SQLite never does.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from gembatch.common.errors import StoreError
from gembatch.store import newfile

# The migration side, under the names every caller has always imported from here.
from gembatch.store.revisions import alembic_config as alembic_config
from gembatch.store.revisions import at_head, sqlite_file
from gembatch.store.revisions import current_revision as current_revision
from gembatch.store.revisions import downgrade as downgrade
from gembatch.store.revisions import head_revision as head_revision
from gembatch.store.revisions import sqlite_foreign_keys as sqlite_foreign_keys
from gembatch.store.revisions import upgrade as upgrade

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session, sessionmaker


def _prepare_sqlite(dbapi_connection: sqlite3.Connection, database: str) -> None:
    """What every connection to a SQLite file does first, SQLAlchemy's or not."""
    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # Several gembatch processes may share a file: wait instead of failing.
    # First, so that switching to WAL below waits too.
    cursor.execute("PRAGMA busy_timeout=30000")
    # WAL: readers (status, watch, sql) never block the poller's writes.
    _switch_to_wal(cursor)
    # Cascade deletes of events with their job.
    cursor.execute("PRAGMA foreign_keys=ON")
    # With WAL, NORMAL is still crash-safe for the database (a power cut may
    # lose the last commits, never corrupt); results are fsync'd separately.
    cursor.execute("PRAGMA synchronous=NORMAL")
    newfile.refuse_discarded(cursor, database)
    cursor.close()


def _install_sqlite_hooks(engine: Engine) -> None:
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        _prepare_sqlite(dbapi_connection, str(engine.url.database))

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front, so two writers queue on
        # busy_timeout instead of one failing half-way through its transaction.
        options = conn.get_execution_options()
        if options.get("durable"):
            # NORMAL may lose the last commits on a power cut; a record that an
            # irreversible remote delete relies on must be on disk first.
            conn.exec_driver_sql("PRAGMA synchronous=FULL")
        conn.exec_driver_sql(options.get("sqlite_begin", "BEGIN IMMEDIATE"))


# How long a first open waits for another process's switch of the same new file to WAL.
_WAL_SWITCH_BUDGET_S = 30.0


def _switch_to_wal(cursor: Any) -> None:
    """WAL is a property of the file, so only the first open of a new database
    converts it; SQLite runs no busy handler for that conversion, and a second
    process opening the same new file at that instant is told "database is
    locked" at once (two pollers started together on a new database). Check
    first, and retry the switch while another process holds the file."""
    deadline = time.monotonic() + _WAL_SWITCH_BUDGET_S
    delay = 0.005
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                return
            # Anything but an error is final, as before: ":memory:" stays "memory".
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def make_engine(url: str) -> Engine:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError
    from sqlalchemy.pool import NullPool

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"--db: not a database URL or file path: {url!r}") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            _check_sqlite_location(Path(database))
        # NullPool: a file connection is cheap, and pooled SQLite connections
        # across threads bring more trouble than speed.
        engine = create_engine(url, poolclass=NullPool)
        _install_sqlite_hooks(engine)
        return engine
    try:
        return create_engine(url, pool_pre_ping=True)
    except NoSuchModuleError:
        raise StoreError(f"--db {url!r}: unknown database kind {parsed.drivername!r}") from None
    except (ModuleNotFoundError, ImportError) as exc:
        raise StoreError(
            f"--db {parsed.render_as_string(hide_password=True)}: driver not installed ({exc.name})"
        ) from None


def _check_sqlite_location(path: Path) -> None:
    if path.is_dir():
        raise StoreError(f"{path}: is a directory, not a database file")
    parent = path.parent
    if not parent.exists():
        raise StoreError(f"{path}: directory {parent} does not exist")
    if path.exists():
        if not os.access(path, os.R_OK):
            raise StoreError(f"{path}: database file is not readable")
    elif not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError(f"{path}: cannot create the database, directory {parent} is not writable")


# A plain SQLite file URL (no driver options), as `--db PATH` and the default make it.
_PLAIN_SQLITE = re.compile(r"sqlite(?:\+pysqlite)?:///([^?]+)")


def _plain_sqlite_file(url: str) -> Path | None:
    """The file of a plain SQLite URL, read as SQLAlchemy would, without importing it."""
    match = _PLAIN_SQLITE.fullmatch(url)
    database = unquote(match[1]) if match else ":memory:"
    return None if database == ":memory:" else Path(database)


def _sqlite_at_head(database: Path) -> bool:
    """:func:`~gembatch.store.revisions.at_head` for an existing SQLite file, asked
    through the standard library; any error is left for the full open to meet
    (and report) again."""
    head = head_revision()
    try:
        # mode=rw: a file removed meanwhile is not made again, empty, here.
        uri = f"file:{quote(str(database.absolute()))}?mode=rw"
        connection = sqlite3.connect(uri, uri=True)
        try:
            _prepare_sqlite(connection, str(database))
            rows = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        finally:
            connection.close()
    except sqlite3.Error:
        return False
    return head is not None and rows == [(head,)]


@dataclass
class Store:
    """An open, migrated database; its engine is made on first use."""

    url: str
    # The SQLite database file; None for any other database (and for ":memory:").
    file: Path | None = None
    # This very open made the (SQLite) file: a failed command may take it away again.
    created: bool = False
    _engine: Engine | None = field(default=None, repr=False)
    _sessions: sessionmaker[Session] | None = field(default=None, repr=False)
    # The poller's threads share one store: one engine, whichever asks first.
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    @property
    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = make_engine(self.url)
            return self._engine

    @property
    def sessions(self) -> sessionmaker[Session]:
        with self._lock:
            if self._sessions is None:
                from sqlalchemy.orm import sessionmaker

                self._sessions = sessionmaker(self.engine, expire_on_commit=False)
            return self._sessions

    @property
    def dialect(self) -> str:
        """``sqlite``, ``postgresql``, ...: known without an engine for a SQLite file."""
        return "sqlite" if self.file is not None else self.engine.dialect.name

    @property
    def display_url(self) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)

    @contextlib.contextmanager
    def transaction(self, *, durable: bool = False) -> Iterator[Session]:
        """One unit of work: committed on success, rolled back on any exception
        (KeyboardInterrupt included). ``durable`` commits with a full sync on
        SQLite, for records that a remote delete will rely on."""
        with self.sessions() as session, session.begin():
            if durable:
                # Options set as the connection is first taken, before its BEGIN.
                session.connection(execution_options={"durable": True})
            yield session

    @contextlib.contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only snapshot. On SQLite it starts with a plain BEGIN, so it
        never waits for a writer."""
        with self.sessions() as session:
            if self.dialect == "sqlite":
                session.connection(execution_options={"sqlite_begin": "BEGIN DEFERRED"})
            try:
                yield session
            finally:
                # Objects read here stay usable afterwards (a rollback would expire them).
                session.expunge_all()
                session.rollback()

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def open_store(url: str, *, migrate: bool = True) -> Store:
    """Open the database at ``url``, creating it and upgrading its schema as needed."""
    database = _plain_sqlite_file(url)
    if migrate and database is not None:
        _check_sqlite_location(database)  # as make_engine would, with the same errors
        if database.exists() and _sqlite_at_head(database):
            return Store(url=url, file=database)
    engine = make_engine(url)
    created = False
    with _opening_errors(url, engine):
        database = sqlite_file(engine)
        if migrate and database is not None and not database.exists():
            created = newfile.create(database, lambda temp: _build(url, temp))
        if migrate and not at_head(engine):
            head = head_revision()
            if current_revision(engine) != head:
                upgrade(engine)
    # Sessions (the ORM) are made on first use too: `gembatch sql` never needs them.
    return Store(url=url, file=sqlite_file(engine), created=created, _engine=engine)


def upgrade_database(url: str) -> tuple[str | None, str | None]:
    """``gembatch db upgrade``: the schema revision before and after. A new SQLite
    file is made whole or not at all, as by :func:`open_store`."""
    engine = make_engine(url)
    try:
        with _opening_errors(url, engine):
            database = sqlite_file(engine)
            if database is not None and not database.exists():
                newfile.create(database, lambda temp: _build(url, temp))
                return None, current_revision(engine)
            before = current_revision(engine)
            upgrade(engine)
            return before, current_revision(engine)
    finally:
        engine.dispose()


def database_revision(url: str) -> str | None:
    """``gembatch db current``: the schema revision, None for an empty database.
    A SQLite file that does not exist stays so."""
    engine = make_engine(url)
    try:
        with _opening_errors(url, engine):
            database = sqlite_file(engine)
            if database is not None and not database.exists():
                return None
            return current_revision(engine)
    finally:
        engine.dispose()


@contextlib.contextmanager
def _opening_errors(url: str, engine: Engine) -> Iterator[None]:
    """What can go wrong opening a database, as one line naming it (password hidden);
    the engine is disposed of on the way out."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    shown = make_url(url).render_as_string(hide_password=True)
    try:
        yield
    except StoreError:
        engine.dispose()
        raise
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StoreError(f"{shown}: {short_error(exc)}") from None
    except Exception as exc:
        # Only a migration raises alembic's CommandError, and it has imported alembic:
        # asking must not import it on every other failure.
        errors = sys.modules.get("alembic.util.exc")
        if errors is None or not isinstance(exc, errors.CommandError):
            raise
        engine.dispose()
        raise StoreError(
            f"{shown}: its schema is newer than this gembatch knows (head {head_revision()}); "
            "upgrade gembatch"
        ) from None


def _build(url: str, temp: Path) -> None:
    """Migrate a new file at ``temp`` (the caller holds the migration lock)."""
    from sqlalchemy.engine import make_url

    engine = make_engine(make_url(url).set(database=str(temp)).render_as_string(False))
    try:
        upgrade(engine, lock=False)
    finally:
        engine.dispose()


def discard_if_new(store: Store) -> bool:
    """After a failed command: remove the SQLite file its open created, if still
    unused (see :func:`gembatch.store.newfile.discard_if_unused`)."""
    database = store.file
    store.dispose()
    if not store.created or database is None:
        return False
    store.created = False
    return newfile.discard_if_unused(database)


def short_error(exc: BaseException) -> str:
    """The first line of what the driver said (not SQLAlchemy's multi-line wrapper)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def database_errors(store: Store) -> Iterator[None]:
    """Database failures as a one-line :class:`StoreError` naming the (password-free) URL."""
    try:
        yield
    except Exception as exc:
        # Nothing raises SQLAlchemy's errors before it is imported: no need to import it here.
        errors = sys.modules.get("sqlalchemy.exc")
        if errors is None or not isinstance(exc, errors.SQLAlchemyError):
            raise
        raise StoreError(f"{store.display_url}: {short_error(exc)}") from None


def db_display_name(store: Store) -> str:
    """A SQLite file as a path (relative when under the current directory);
    any other database as its URL with the password hidden."""
    from sqlalchemy.engine import make_url

    url = make_url(store.url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database)
        with contextlib.suppress(ValueError):
            return str(path.resolve().relative_to(Path.cwd().resolve()))
        return str(path)
    return store.display_url
