"""A new SQLite database appears under its name only when it is complete, and a
command that fails leaves no database of its own making behind.

A new file is built under a hidden temporary name beside the final one,
migrated to head, closed (so its write-ahead log is folded in), and only then
moved into place; a process killed half-way leaves a temporary file, never a
half-made database under the name users and other processes open. All of it
runs under the migration lock, so whatever temporary file the lock holder finds
belongs to a process that died, and goes.

The lock file itself is never deleted: a process waiting on it holds the old
file open, and removing it would let a third process lock a new file of the
same name while the first still holds the old one.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import filelock

from gembatch.common.atomic import fsync_dir
from gembatch.common.errors import StoreError

# Stamped on a database a failed command is about to remove, so that a process
# which opened it in that instant refuses it instead of writing into a file
# that is going away ("gbDx" in ASCII).
DISCARDED_ID = 0x67624478

# How long an open waits for another process's creation or upgrade of the file.
LOCK_TIMEOUT_S = 120.0


def lock_path(database: Path) -> Path:
    return database.with_name(f"{database.name}.migrate.lock")


@contextlib.contextmanager
def migration_lock(database: Path) -> Iterator[None]:
    """One creator or migrator of a database file at a time, across processes."""
    path = lock_path(database)
    try:
        with filelock.FileLock(str(path), timeout=LOCK_TIMEOUT_S):
            yield
    except filelock.Timeout:
        raise StoreError(f"{path}: another gembatch is migrating the database") from None


def _temp_names(database: Path) -> list[Path]:
    return sorted(database.parent.glob(f".{database.name}.new-*"))


def _remove_with_sidecars(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


def create(database: Path, build: Callable[[Path], None]) -> bool:
    """Make ``database`` with ``build`` (which migrates a file at the path it is
    given and closes it); False when another process made it first."""
    with migration_lock(database):
        # Under the lock nobody else is building: any temporary file is a dead one's.
        for stale in _temp_names(database):
            _remove_with_sidecars(stale)
        if database.exists():
            return False
        temp = database.with_name(f".{database.name}.new-{uuid.uuid4().hex[:12]}")
        try:
            build(temp)
            if Path(f"{temp}-wal").exists():
                raise StoreError(f"{temp}: the new database did not close cleanly")
            with open(temp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(temp, database)
            fsync_dir(database.parent)
        except BaseException:
            _remove_with_sidecars(temp)
            raise
        return True


def refuse_discarded(cursor: sqlite3.Cursor, database: str) -> None:
    """Called on every new connection: a database being removed is not to be used."""
    if cursor.execute("PRAGMA application_id").fetchone()[0] == DISCARDED_ID:
        raise StoreError(f"{database}: this new database was just removed by a failed command")


def discard_if_unused(database: Path) -> bool:
    """Remove a database this process created, if nothing was stored in it and no
    other connection has it open. Leaving a schema-only file behind would turn a
    typo in ``--db`` into a stray database.

    Leaving WAL mode needs the only connection to the file, so a process that
    has it open keeps it. A process that connects between the stamp and the
    unlink is refused by :func:`refuse_discarded`; one that connects after
    the unlink gets a new, empty file, which the next open migrates. Either way
    nobody writes into a file that is gone.
    """
    try:
        connection = sqlite3.connect(database, timeout=0, isolation_level=None)
    except sqlite3.Error:
        return False
    try:
        mode = connection.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
        if str(mode).lower() != "delete":
            return False
        connection.execute("BEGIN EXCLUSIVE")
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT IN ('alembic_version', 'sqlite_sequence')"
            )
        ]
        for table in tables:
            if connection.execute(f'SELECT 1 FROM "{table}" LIMIT 1').fetchone():
                connection.execute("ROLLBACK")
                return False
        connection.execute(f"PRAGMA application_id={DISCARDED_ID}")
        connection.execute("COMMIT")
        _remove_with_sidecars(database)
        return True
    except sqlite3.Error:
        return False
    finally:
        connection.close()
