"""Opening the database: engine set-up, SQLite pragmas, migrations on first use.

Every command goes through :func:`open_store`, so no command ever sees an old
schema.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from gembatch.common.errors import StoreError
from gembatch.store import newfile

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def migrations_dir() -> Path:
    """Inside an installed wheel the migrations ship as ``gembatch/_migrations``;
    in a checkout they are the repo's top-level ``migrations/``."""
    packaged = _PACKAGE_DIR / "_migrations"
    if (packaged / "env.py").is_file():
        return packaged
    checkout = _PACKAGE_DIR.parent / "migrations"
    if (checkout / "env.py").is_file():
        return checkout
    raise StoreError("gembatch is installed without its database migrations; reinstall it")


def alembic_config(connection: Connection | None = None) -> Config:
    # Built in code so that an installed tool never needs alembic.ini.
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
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
        newfile.refuse_discarded(cursor, str(engine.url.database))
        cursor.close()

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


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _sqlite_file(engine: Engine) -> Path | None:
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        return Path(str(engine.url.database))
    return None


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Two processes opening a new database at once must not both create tables."""
    database = _sqlite_file(engine)
    if database is not None:
        with newfile.migration_lock(database):
            yield
        return
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_advisory_lock(741852963)")
            try:
                yield
            finally:
                conn.exec_driver_sql("SELECT pg_advisory_unlock(741852963)")
                conn.commit()
        return
    yield


def sqlite_foreign_keys(connection: Connection, on: bool) -> None:
    """Set the pragma on the driver connection itself: through ``exec_driver_sql``
    it would run inside the ``BEGIN IMMEDIATE`` the begin hook opens, where SQLite
    silently ignores it (and a table rebuild would then cascade-delete children)."""
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    finally:
        cursor.close()


def upgrade(engine: Engine, revision: str = "head", *, lock: bool = True) -> None:
    guard = _migration_lock(engine) if lock else contextlib.nullcontext()
    with guard, engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            # A table rebuild with foreign keys on would silently delete every
            # ON DELETE CASCADE child row; the pragma only works outside a transaction.
            sqlite_foreign_keys(connection, on=False)
        command.upgrade(alembic_config(connection), revision)
        if connection.in_transaction():
            connection.commit()
        if engine.dialect.name == "sqlite":
            sqlite_foreign_keys(connection, on=True)


def downgrade(engine: Engine, revision: str) -> None:
    with _migration_lock(engine), engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            sqlite_foreign_keys(connection, on=False)
        command.downgrade(alembic_config(connection), revision)
        if connection.in_transaction():
            connection.commit()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return _current_revision(connection)


@dataclass
class Store:
    """An open, migrated database."""

    url: str
    engine: Engine
    sessions: sessionmaker[Session]
    # This very open made the (SQLite) file: a failed command may take it away again.
    created: bool = False

    @property
    def display_url(self) -> str:
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
            if self.engine.dialect.name == "sqlite":
                session.connection(execution_options={"sqlite_begin": "BEGIN DEFERRED"})
            try:
                yield session
            finally:
                # Objects read here stay usable afterwards (a rollback would expire them).
                session.expunge_all()
                session.rollback()

    def dispose(self) -> None:
        self.engine.dispose()


def open_store(url: str, *, migrate: bool = True) -> Store:
    """Open the database at ``url``, creating it and upgrading its schema as needed."""
    engine = make_engine(url)
    created = False
    with _opening_errors(url, engine):
        database = _sqlite_file(engine)
        if migrate and database is not None and not database.exists():
            created = newfile.create(database, lambda temp: _build(url, temp))
        if migrate:
            head = head_revision()
            if current_revision(engine) != head:
                upgrade(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    return Store(url=url, engine=engine, sessions=sessions, created=created)


def upgrade_database(url: str) -> tuple[str | None, str | None]:
    """``gembatch db upgrade``: the schema revision before and after. A new SQLite
    file is made whole or not at all, as by :func:`open_store`."""
    engine = make_engine(url)
    try:
        with _opening_errors(url, engine):
            database = _sqlite_file(engine)
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
            database = _sqlite_file(engine)
            if database is not None and not database.exists():
                return None
            return current_revision(engine)
    finally:
        engine.dispose()


@contextlib.contextmanager
def _opening_errors(url: str, engine: Engine) -> Iterator[None]:
    """What can go wrong opening a database, as one line naming it (password hidden);
    the engine is disposed of on the way out."""
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        yield
    except StoreError:
        engine.dispose()
        raise
    except CommandError:
        engine.dispose()
        raise StoreError(
            f"{shown}: its schema is newer than this gembatch knows (head {head_revision()}); "
            "upgrade gembatch"
        ) from None
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StoreError(f"{shown}: {short_error(exc)}") from None


def _build(url: str, temp: Path) -> None:
    """Migrate a new file at ``temp`` (the caller holds the migration lock)."""
    engine = make_engine(make_url(url).set(database=str(temp)).render_as_string(False))
    try:
        upgrade(engine, lock=False)
    finally:
        engine.dispose()


def discard_if_new(store: Store) -> bool:
    """After a failed command: remove the SQLite file its open created, if still
    unused (see :func:`gembatch.store.newfile.discard_if_unused`)."""
    database = _sqlite_file(store.engine)
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
    except SQLAlchemyError as exc:
        raise StoreError(f"{store.display_url}: {short_error(exc)}") from None


def db_display_name(store: Store) -> str:
    """A SQLite file as a path (relative when under the current directory);
    any other database as its URL with the password hidden."""
    url = make_url(store.url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database)
        with contextlib.suppress(ValueError):
            return str(path.resolve().relative_to(Path.cwd().resolve()))
        return str(path)
    return store.display_url
