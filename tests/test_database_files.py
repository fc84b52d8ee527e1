"""The database file itself: made whole or not at all, never left behind by a failed
command, and its migration lock held by one process at a time."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import filelock
import pytest
from conftest import invoke

from gembatch.common.errors import StoreError
from gembatch.store import newfile
from gembatch.store.database import current_revision, head_revision, make_engine, open_store

# Runs the real open, but SIGKILLs itself once the first migration is committed:
# the moment a kill used to leave a database with part of its tables.
_KILL_MID_MIGRATION = """
import os, signal, sys
from alembic import command
real = command.upgrade
def upgrade(config, revision, **kw):
    real(config, "0001", **kw)
    os.kill(os.getpid(), signal.SIGKILL)
command.upgrade = upgrade
if sys.argv[2] == "open":
    from gembatch.store.database import open_store
    open_store("sqlite:///" + sys.argv[1])
else:
    from gembatch.cli import main
    main(["--db", sys.argv[1], "db", "upgrade"])
"""


def _tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {row[0] for row in conn.execute("select name from sqlite_master")}
    finally:
        conn.close()


@pytest.mark.parametrize("how", ["open", "db upgrade"])
def test_a_kill_while_a_new_database_is_migrated_leaves_no_database_under_its_name(
    tmp_path: Path, how: str
) -> None:
    db = tmp_path / "gembatch.db"
    script = [sys.executable, "-c", _KILL_MID_MIGRATION, str(db), how]
    done = subprocess.run(script, timeout=60)
    assert done.returncode == -signal.SIGKILL
    assert not db.exists()
    left = [p.name for p in tmp_path.iterdir() if not p.name.endswith(".migrate.lock")]
    assert left and all(name.startswith(".gembatch.db.new-") for name in left)

    store = open_store(f"sqlite:///{db}")
    assert store.created
    store.dispose()
    engine = make_engine(f"sqlite:///{db}")
    assert current_revision(engine) == head_revision()
    engine.dispose()
    assert {"jobs", "events", "alembic_version"} <= _tables(db)
    # The dead process's half-made file went with the next creation.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gembatch.db", "gembatch.db.migrate.lock"]


def test_opening_an_existing_database_does_not_count_as_creating_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    open_store(url).dispose()
    store = open_store(url)
    assert not store.created
    store.dispose()


@pytest.mark.parametrize(
    "args",
    [
        ("import", "missing.jsonl"),
        ("cleanup", "--all"),  # no API key in the test environment
    ],
)
def test_a_failed_command_leaves_no_new_database_behind(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    result = invoke("--db", "new.db", *args)
    assert result.exit_code == 2, result.output
    assert not (workdir / "new.db").exists()
    assert not list(workdir.glob("new.db-*"))


def test_a_failed_command_keeps_a_database_it_did_not_create(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workdir)
    assert invoke("--db", "kept.db", "status").exit_code == 0
    assert (workdir / "kept.db").exists()
    assert invoke("--db", "kept.db", "import", "missing.jsonl").exit_code == 2
    assert (workdir / "kept.db").exists()


def test_a_failed_command_keeps_a_new_database_someone_else_has_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    mine = open_store(url)
    assert mine.created
    other = sqlite3.connect(tmp_path / "shared.db")
    other.execute("select count(*) from jobs").fetchone()
    try:
        from gembatch.store.database import discard_if_new

        assert not discard_if_new(mine)
        assert (tmp_path / "shared.db").exists()
    finally:
        other.close()
    store = open_store(url)  # still a working database
    store.dispose()


def test_a_new_database_that_holds_rows_is_never_discarded(tmp_path: Path) -> None:
    from gembatch.store.database import discard_if_new

    db = tmp_path / "rows.db"
    mine = open_store(f"sqlite:///{db}")
    with sqlite3.connect(db) as conn:
        conn.execute(
            "insert into jobs (batch_name, input_file, state, added_at)"
            " values ('batches/x', 'a.jsonl', 'JOB_STATE_PENDING', '2026-01-01 00:00:00')"
        )
    assert not discard_if_new(mine)
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from jobs").fetchone() == (1,)


def test_a_process_never_uses_a_database_stamped_as_discarded(tmp_path: Path) -> None:
    db = tmp_path / "stamped.db"
    open_store(f"sqlite:///{db}").dispose()
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA application_id={newfile.DISCARDED_ID}")
    with pytest.raises(StoreError, match="removed by a failed command"):
        open_store(f"sqlite:///{db}")


def test_a_migration_lock_timeout_leaves_the_holders_lock_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "locked.db"
    monkeypatch.setattr(newfile, "LOCK_TIMEOUT_S", 0.2)
    holder = filelock.FileLock(str(newfile.lock_path(db)))
    holder.acquire()
    try:
        with pytest.raises(StoreError, match="another gembatch is migrating"):
            open_store(f"sqlite:///{db}")
        # Had the waiter removed the lock file, a third process would now lock a
        # fresh file of the same name and migrate alongside the holder.
        assert newfile.lock_path(db).exists()
        with pytest.raises(filelock.Timeout):
            filelock.FileLock(str(newfile.lock_path(db))).acquire(timeout=0.2)
    finally:
        holder.release()
    assert not db.exists()
    open_store(f"sqlite:///{db}").dispose()
    assert os.path.exists(db)


def test_db_current_makes_no_database(tmp_path: Path) -> None:
    db = tmp_path / "none.db"
    result = invoke("--db", str(db), "db", "current")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("(empty) (head ")
    assert list(tmp_path.iterdir()) == []


def test_db_upgrade_makes_a_whole_database_and_says_so(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    result = invoke("--db", str(db), "db", "upgrade")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"upgraded (empty) -> {head_revision()}"
    assert invoke("--db", str(db), "db", "upgrade").output.strip() == (
        f"already at {head_revision()}"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.db", "new.db.migrate.lock"]


@pytest.mark.parametrize("sub", ["current", "upgrade"])
def test_db_commands_on_an_unreachable_server_say_so_in_one_line(sub: str) -> None:
    result = invoke("--db", "postgresql://127.0.0.1:9/nothing", "db", sub)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gembatch: error:"), result.output
    assert "127.0.0.1" in lines[0] and "internal error" not in lines[0]
