"""The schema comes only from Alembic migrations, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import multiprocessing
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.exc import IntegrityError

from gembatch.common.locations import sqlite_url
from gembatch.store.database import (
    alembic_config,
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    open_store,
    upgrade,
)
from gembatch.store.models import Base, Event, Job

JOB_COLUMNS = {
    "id",
    "batch_name",
    "input_file",
    "request_count",
    "uploaded_file_name",
    "display_name",
    "model",
    "state",
    "create_time",
    "update_time",
    "end_time",
    "dest_file_name",
    "dest_inline",
    "api_request_count",
    "api_succeeded_count",
    "api_failed_count",
    "api_pending_count",
    "remote_error",
    "result_path",
    "result_size",
    "result_sha256",
    "downloaded_at",
    "cleaned_at",
    "last_error",
    "error_count",
    "last_polled_at",
    "batch_json",
    "extra_json",
    "lease_owner",
    "lease_expires_at",
    "added_at",
    "input_sha256",
    "input_size",
    "submit_state",
    "submitted_at",
    "cancel_requested_at",
    # 0003 (report): retry links
    "retry_of_job_id",
    # 0006: embeddings, priority, webhooks
    "kind",
    "priority",
    "webhook_url",
}
EVENT_COLUMNS = {"id", "job_id", "at", "kind", "old_state", "new_state", "message"}


def _add_job_with_events(store_url: str) -> None:
    store = open_store(store_url)
    with store.transaction() as session:
        job = Job(
            batch_name="batches/keepme",
            input_file="batch/001.jsonl",
            state="JOB_STATE_RUNNING",
            added_at=datetime(2025, 1, 1, tzinfo=timezone.utc),
        )
        session.add(job)
        session.flush()
        session.add_all(
            Event(job_id=job.id, at=datetime.now(timezone.utc), kind="imported") for _ in range(3)
        )
    store.dispose()


def test_exactly_one_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1


def test_open_store_creates_every_table_and_column(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "new.db")
    store = open_store(url)
    inspector = inspect(store.engine)
    assert {c["name"] for c in inspector.get_columns("jobs")} == JOB_COLUMNS
    assert {c["name"] for c in inspector.get_columns("events")} == EVENT_COLUMNS
    assert {i["name"] for i in inspector.get_indexes("jobs")} >= {"ix_jobs_state", "ix_jobs_model"}
    assert current_revision(store.engine) == head_revision()
    store.dispose()


def test_sqlite_pragmas(tmp_path: Path) -> None:
    store = open_store(sqlite_url(tmp_path / "p.db"))
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    store.dispose()


def test_models_match_migrations(tmp_path: Path) -> None:
    store = open_store(sqlite_url(tmp_path / "m.db"))
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    store.dispose()
    assert diff == []


def test_downgrade_and_upgrade_again_keeps_nothing_stale(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "d.db")
    _add_job_with_events(url)
    engine = make_engine(url)
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_upgrade_with_data_keeps_cascade_children(tmp_path: Path) -> None:
    """Migrating runs with foreign keys off, so a table rebuild cannot eat events."""
    url = sqlite_url(tmp_path / "c.db")
    _add_job_with_events(url)
    engine = make_engine(url)
    upgrade(engine)  # a no-op at head, but must not disturb rows either
    with engine.connect() as conn:
        assert conn.execute(select(Event.id)).all().__len__() == 3
    engine.dispose()


def test_integrity_after_migration(tmp_path: Path) -> None:
    path = tmp_path / "i.db"
    open_store(sqlite_url(path)).dispose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_concurrent_first_open_creates_schema_once(tmp_path: Path) -> None:
    import threading

    url = sqlite_url(tmp_path / "race.db")
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            open_store(url).dispose()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    engine = make_engine(url)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def _open_fresh_file(url: str, barrier: Any, failures: Any) -> None:
    try:
        engine = make_engine(url)
        barrier.wait()
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
    except Exception as exc:
        failures.put(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")


@pytest.mark.slow
def test_processes_opening_a_new_file_at_once_never_fail_on_the_wal_switch(
    tmp_path: Path,
) -> None:
    # SQLite runs no busy handler for the switch to WAL: two pollers started
    # together on a new database used to fail one of them "database is locked"
    # (about one round in three here, with eight processes).
    context = multiprocessing.get_context("fork")
    failures = context.Queue()
    for round_ in range(12):
        url = sqlite_url(tmp_path / f"fresh-{round_}.db")
        barrier = context.Barrier(8)
        processes = [
            context.Process(target=_open_fresh_file, args=(url, barrier, failures))
            for _ in range(8)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=60)
        assert all(process.exitcode == 0 for process in processes)
        engine = make_engine(url)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        engine.dispose()
    found = []
    while not failures.empty():
        found.append(failures.get())
    assert found == []


def test_alembic_cli_from_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Developers run `alembic upgrade head` from the checkout with alembic.ini."""
    from alembic import command
    from alembic.config import Config

    repo = Path(__file__).resolve().parent.parent
    db = tmp_path / "dev.db"
    monkeypatch.setenv("GEMBATCH_DB", str(db))
    cfg = Config(str(repo / "alembic.ini"))
    command.upgrade(cfg, "head")
    engine = create_engine(sqlite_url(db))
    with engine.connect() as conn:
        assert conn.execute(text("select version_num from alembic_version")).scalar() == (
            head_revision()
        )
    engine.dispose()


@pytest.mark.postgres
def test_postgres_upgrade_downgrade_upgrade(pg_schema_url: str) -> None:
    _add_job_with_events(pg_schema_url)
    engine = make_engine(pg_schema_url)
    assert {c["name"] for c in inspect(engine).get_columns("jobs")} == JOB_COLUMNS
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
        created = conn.execute(select(Job.added_at)).scalar_one()
        assert created.tzinfo is not None
    downgrade(engine, "base")
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_upgrade_from_0001_with_data_keeps_jobs_and_events(tmp_path: Path) -> None:
    """0002 (submit columns) rebuilds the jobs table on SQLite: nothing may be lost."""
    url = sqlite_url(tmp_path / "old.db")
    engine = make_engine(url)
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO jobs (id, batch_name, input_file, added_at) "
            "VALUES (1, 'batches/old', 'a.jsonl', '2025-01-01 00:00:00')"
        )
        conn.exec_driver_sql(
            "INSERT INTO events (job_id, at, kind) VALUES (1, '2025-01-01 00:00:00', 'imported')"
        )
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(select(Job.batch_name, Job.submit_state)).all() == [
            ("batches/old", None)
        ]
        assert len(conn.execute(select(Event.id)).all()) == 1
    engine.dispose()


def test_durable_transactions_sync_fully_and_others_do_not(tmp_path: Path) -> None:
    store = open_store(sqlite_url(tmp_path / "s.db"))
    with store.transaction(durable=True) as session:
        assert session.connection().exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    with store.transaction() as session:
        assert session.connection().exec_driver_sql("PRAGMA synchronous").scalar() == 1
    store.dispose()


# --- 0004: 64-bit counts ---------------------------------------------------------------

_WIDE = ("request_count", "api_request_count", "api_succeeded_count", "error_count")


def _job_at_0003(engine: Any) -> None:
    upgrade(engine, "0003")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO jobs (id, batch_name, input_file, request_count, error_count, "
                "added_at) VALUES (1, 'batches/old', 'a.jsonl', 7, 2, '2025-01-01 00:00:00')"
            )
        )
        conn.execute(
            text("INSERT INTO events (job_id, at, kind) VALUES (1, '2025-01-01', 'imported')")
        )
        conn.execute(
            text(
                "INSERT INTO job_stats (job_id, parser_version, succeeded, failed, malformed, "
                "prompt_tokens, output_tokens, thinking_tokens, total_tokens, computed_at) "
                "VALUES (1, 1, 5, 1, 1, 10, 20, 0, 30, '2025-01-01 00:00:00')"
            )
        )


def _check_0004_round_trip(url: str) -> None:
    engine = make_engine(url)
    _job_at_0003(engine)
    upgrade(engine, "0004")
    types = {c["name"]: str(c["type"]) for c in inspect(engine).get_columns("jobs")}
    assert all(types[name] == "BIGINT" for name in _WIDE)
    stats = {c["name"]: str(c["type"]) for c in inspect(engine).get_columns("job_stats")}
    assert stats["succeeded"] == "BIGINT"
    with engine.begin() as conn:
        assert conn.execute(text("SELECT request_count, error_count FROM jobs")).one() == (7, 2)
        assert conn.execute(text("SELECT count(*) FROM events")).scalar() == 1
        assert conn.execute(text("SELECT succeeded FROM job_stats")).scalar() == 5
        conn.execute(text("UPDATE jobs SET api_request_count = 3000000000"))
    with pytest.raises(RuntimeError, match=r"jobs\.api_request_count holds 3000000000"):
        downgrade(engine, "0003")
    assert current_revision(engine) == "0004"
    with engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET api_request_count = 9"))
    downgrade(engine, "0003")
    types = {c["name"]: str(c["type"]) for c in inspect(engine).get_columns("jobs")}
    assert types["request_count"] == "INTEGER"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT request_count, api_request_count FROM jobs")).one() == (
            7,
            9,
        )
        assert conn.execute(text("SELECT count(*) FROM events")).scalar() == 1
    upgrade(engine)
    engine.dispose()


def test_0004_widens_counts_keeps_data_and_downgrades(tmp_path: Path) -> None:
    _check_0004_round_trip(sqlite_url(tmp_path / "w.db"))


@pytest.mark.postgres
def test_postgres_0004_widens_counts_keeps_data_and_downgrades(pg_schema_url: str) -> None:
    _check_0004_round_trip(pg_schema_url)


# --- 0005: the requests table -----------------------------------------------------------


def _check_0005_round_trip(url: str) -> None:
    engine = make_engine(url)
    _job_at_0003(engine)
    upgrade(engine, "0004")
    upgrade(engine)
    assert "requests" in inspect(engine).get_table_names()
    with engine.begin() as conn:
        # Figures cached without rows would let the report skip indexing the file.
        assert conn.execute(text("SELECT count(*) FROM job_stats")).scalar() == 0
        assert conn.execute(text("SELECT request_count FROM jobs")).scalar() == 7
        conn.execute(
            text(
                "INSERT INTO requests (job_id, line_no, byte_offset, byte_length, key, status) "
                "VALUES (1, 1, 0, 10, 'a', 'ok')"
            )
        )
    downgrade(engine, "0004")
    assert "requests" not in inspect(engine).get_table_names()
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM requests")).scalar() == 0
    engine.dispose()


def test_0005_adds_requests_and_drops_stale_figures(tmp_path: Path) -> None:
    _check_0005_round_trip(sqlite_url(tmp_path / "r.db"))


@pytest.mark.postgres
def test_postgres_0005_adds_requests_and_drops_stale_figures(pg_schema_url: str) -> None:
    _check_0005_round_trip(pg_schema_url)


# --- 0006: job kind, priority, webhook URL; the webhook_events table --------------------


def _check_0006_round_trip(url: str) -> None:
    engine = make_engine(url)
    _job_at_0003(engine)
    upgrade(engine, "0005")
    upgrade(engine)
    assert "webhook_events" in inspect(engine).get_table_names()
    with engine.begin() as conn:
        # A job from before embeddings existed is a generation job.
        assert conn.execute(text("SELECT kind, priority FROM jobs")).one() == ("generate", None)
        conn.execute(
            text(
                "INSERT INTO webhook_events (webhook_id, verified_by, received_at, job_id) "
                "VALUES ('w1', 'hmac', CURRENT_TIMESTAMP, 1)"
            )
        )
    with pytest.raises(IntegrityError), engine.begin() as conn:
        # A replayed delivery id is refused by the database itself.
        conn.execute(
            text(
                "INSERT INTO webhook_events (webhook_id, verified_by, received_at) "
                "VALUES ('w1', 'jwt', CURRENT_TIMESTAMP)"
            )
        )
    downgrade(engine, "0005")
    assert "webhook_events" not in inspect(engine).get_table_names()
    assert "kind" not in {c["name"] for c in inspect(engine).get_columns("jobs")}
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM webhook_events")).scalar() == 0
        assert conn.execute(text("SELECT kind FROM jobs")).scalar() == "generate"
    engine.dispose()


def test_0006_adds_kind_priority_and_webhook_events(tmp_path: Path) -> None:
    _check_0006_round_trip(sqlite_url(tmp_path / "k.db"))


@pytest.mark.postgres
def test_postgres_0006_adds_kind_priority_and_webhook_events(pg_schema_url: str) -> None:
    _check_0006_round_trip(pg_schema_url)
