"""``gembatch status`` end to end, and the snapshot it renders from."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import create_engine, make_url

from gembatch.common import states
from gembatch.common.snapshot import JobView
from gembatch.store.database import Store, open_store
from gembatch.store.models import Job
from gembatch.store.snapshots import load_snapshot

RunCli = Callable[..., Result]

UTC = timezone.utc
T0 = datetime(2025, 7, 12, 12, 0, 0, tzinfo=UTC)


def add_jobs(store: Store) -> None:
    with store.transaction() as session:
        session.add_all(
            [
                Job(
                    input_file="batch/001.jsonl",
                    batch_name="batches/one",
                    state=states.SUCCEEDED,
                    request_count=1000,
                    model="gemini-2.5-flash",
                    create_time=T0,
                    end_time=T0 + timedelta(hours=3, minutes=45, seconds=30),
                    result_path="batch/results/001.jsonl",
                    batch_json={"big": "x" * 1000},
                    added_at=T0,
                ),
                Job(
                    input_file="batch/002.jsonl",
                    batch_name="batches/two",
                    state=states.FAILED,
                    request_count=20,
                    create_time=T0,
                    end_time=T0 + timedelta(seconds=12),
                    remote_error="INVALID_ARGUMENT: bad request",
                    added_at=T0,
                ),
                Job(
                    input_file="batch/003.jsonl",
                    state=None,
                    added_at=T0,
                    last_error="HTTP 503",
                    error_count=2,
                ),
            ]
        )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "jobs.db"
    store = open_store(f"sqlite:///{path}")
    add_jobs(store)
    store.dispose()
    yield path


def test_status_prints_every_job_and_totals(db: Path, run_cli: RunCli) -> None:
    result = run_cli("--db", str(db), "status")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "batch/001.jsonl" in out and "✓ succeeded" in out and "3h 45m 30s" in out
    assert "✗ failed" in out and "12s" in out and "INVALID_ARGUMENT: bad request" in out
    assert "? unknown" in out and "×2 HTTP 503" in out
    assert out.rstrip().splitlines()[-1] == (
        "3 jobs, 1,020 requests: 1 ✓ succeeded · 1 ✗ failed · 1 ? unknown"
    )
    # Not a terminal: plain text, no escape codes.
    assert "\x1b[" not in out


def test_status_json(db: Path, run_cli: RunCli) -> None:
    result = run_cli("--db", str(db), "status", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["total_jobs"] == 3
    assert [j["input_file"] for j in data["jobs"]] == [
        "batch/001.jsonl",
        "batch/002.jsonl",
        "batch/003.jsonl",
    ]
    first = data["jobs"][0]
    assert first["duration"] == "3h 45m 30s"
    assert first["create_time"] == "2025-07-12T12:00:00+00:00"
    assert first["result_path"] == "batch/results/001.jsonl"
    assert {t["label"]: t["jobs"] for t in data["totals"]} == {
        "succeeded": 1,
        "failed": 1,
        "unknown": 1,
    }


def test_status_on_an_empty_database(tmp_path: Path, run_cli: RunCli) -> None:
    result = run_cli("--db", str(tmp_path / "new.db"), "status")
    assert result.exit_code == 0, result.output
    assert "no jobs yet" in result.output
    data = json.loads(run_cli("--db", str(tmp_path / "new.db"), "status", "--json").output)
    assert data["jobs"] == [] and data["totals"] == []


def test_status_does_not_write(db: Path, run_cli: RunCli) -> None:
    before = db.read_bytes()
    run_cli("--db", str(db), "status")
    assert db.read_bytes() == before


def test_load_snapshot_reads_views_with_aware_times(db: Path) -> None:
    store = open_store(f"sqlite:///{db}")
    try:
        with store.reading() as session:
            snapshot = load_snapshot(session)
    finally:
        store.dispose()
    assert [j.id for j in snapshot.jobs] == [1, 2, 3]
    first = snapshot.jobs[0]
    assert isinstance(first, JobView)
    assert first.create_time == T0 and first.create_time.tzinfo is not None
    assert first.model == "gemini-2.5-flash"
    assert dict(snapshot.totals) == {states.SUCCEEDED: 1, states.FAILED: 1, None: 1}
    assert snapshot.total_requests == 1020
    with pytest.raises(AttributeError):
        first.state = "x"  # type: ignore[misc]


@pytest.mark.postgres
def test_load_snapshot_on_postgres(pg_schema_url: str, run_cli: RunCli) -> None:
    store = open_store(pg_schema_url)
    try:
        add_jobs(store)
        with store.reading() as session:
            snapshot = load_snapshot(session)
        assert [j.input_file for j in snapshot.jobs] == [
            "batch/001.jsonl",
            "batch/002.jsonl",
            "batch/003.jsonl",
        ]
        assert snapshot.jobs[0].end_time == T0 + timedelta(hours=3, minutes=45, seconds=30)
        result = run_cli("--db", pg_schema_url, "status")
        assert result.exit_code == 0, result.output
        assert "3h 45m 30s" in result.output
    finally:
        store.dispose()


@pytest.fixture
def pg_schema_url(pg_url: str) -> Iterator[str]:
    """A schema of its own on the shared test server (others' tests use ``public``)."""
    name = f"gembatch_status_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    url = make_url(pg_url).update_query_dict({"options": f"-csearch_path={name}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
        engine.dispose()
