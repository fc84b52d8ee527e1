"""The schema's revisions: the newest one the shipped migrations define, the one
a database is at, and the upgrades between them (Alembic).

Alembic takes most of a second to import, and every command opens the
database: the head is read from the migration files themselves, a database's
revision with one query, and alembic is imported only to migrate (or to answer
what the files alone cannot).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from gembatch.common.errors import StoreError
from gembatch.store import newfile

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Engine
    from sqlalchemy.engine import Connection

_PACKAGE_DIR = Path(__file__).resolve().parent.parent

# `revision: str = "0005"`, `down_revision ... = "0004"` or `= None`, as Alembic's
# template writes them (at the start of a line: never inside a function).
_ASSIGNED = re.compile(r"^(revision|down_revision|depends_on)\b[^=\n]*=\s*(.*?)\s*$", re.M)
_STRING = re.compile(r"""^(["'])([^"'\n]+)\1$""")


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
    from alembic.config import Config

    # Built in code so that an installed tool never needs alembic.ini.
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    """The newest revision the shipped migrations define."""
    head = scanned_head(sorted((migrations_dir() / "versions").glob("*.py")))
    return head if head is not None else alembic_head()


def alembic_head() -> str | None:
    """Alembic's own answer, which :func:`scanned_head` stands in for."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def scanned_head(files: list[Path]) -> str | None:
    """The head of a straight line of revisions, read from their files without
    importing alembic; None for anything else (a branch, a merge, a dependency,
    an assignment it cannot read), which is then alembic's to answer."""
    parents: dict[str, str | None] = {}
    for path in files:
        if path.name.startswith(("__init__", ".#")):
            continue  # alembic skips them too
        found = dict(_ASSIGNED.findall(path.read_text(encoding="utf-8")))
        revision = _STRING.match(found.get("revision", ""))
        down = _STRING.match(found.get("down_revision", ""))
        if revision is None or revision[2] in parents or found.get("depends_on", "None") != "None":
            return None
        if down is None and found.get("down_revision") != "None":
            return None
        parents[revision[2]] = down[2] if down else None
    heads = set(parents) - set(parents.values())
    return heads.pop() if len(heads) == 1 else None


def at_head(engine: Engine) -> bool:
    """True when the version table holds just the head revision: the one case in
    which the migrations would do nothing, asked in one query without alembic.
    Anything else (no table yet, an older or unknown revision) is alembic's."""
    from sqlalchemy import inspect

    head = head_revision()
    if head is None:
        return False
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            # Only a read: no need to queue behind a writer for the write lock.
            connection.execution_options(sqlite_begin="BEGIN DEFERRED")
        if not inspect(connection).has_table("alembic_version"):
            return False
        rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    return [tuple(row) for row in rows] == [(head,)]


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def sqlite_file(engine: Engine) -> Path | None:
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        return Path(str(engine.url.database))
    return None


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Two processes opening a new database at once must not both create tables."""
    database = sqlite_file(engine)
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
    from alembic import command

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
    from alembic import command

    with _migration_lock(engine), engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            sqlite_foreign_keys(connection, on=False)
        command.downgrade(alembic_config(connection), revision)
        if connection.in_transaction():
            connection.commit()
