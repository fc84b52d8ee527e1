"""Job progress rules that need no API: leases, never moving backwards, what needs work."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from gembatch.common import states
from gembatch.common.locations import sqlite_url
from gembatch.common.work import WorkItem
from gembatch.remote.wire import parse_operation
from gembatch.store import leases, tracker
from gembatch.store.database import Store, open_store
from gembatch.store.models import Event, Job

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = open_store(sqlite_url(tmp_path / "t.db"))
    yield opened
    opened.dispose()


def add(store: Store, name: str, state: str | None, **fields: object) -> int:
    with store.transaction() as session:
        job = Job(batch_name=name, input_file=f"{name[-3:]}.jsonl", state=state, added_at=T0)
        for key, value in fields.items():
            setattr(job, key, value)
        session.add(job)
        session.flush()
        return job.id


def operation(name: str, state: str, **metadata: object) -> dict[str, object]:
    return {"name": name, "metadata": {"name": name, "state": state, **metadata}}


def test_work_selection(store: Store) -> None:
    running = add(store, "batches/r01", states.RUNNING)
    unknown = add(store, "batches/u01", None)
    future = add(store, "batches/f01", "JOB_STATE_PAUSED")
    succeeded = add(store, "batches/s01", states.SUCCEEDED)
    downloaded = add(store, "batches/d01", states.SUCCEEDED, downloaded_at=T0, result_path="d")
    done = add(store, "batches/c01", states.SUCCEEDED, downloaded_at=T0, cleaned_at=T0)
    # An imported "downloaded" with no file to show for it is not trusted.
    claimed = add(store, "batches/q01", states.SUCCEEDED, downloaded_at=T0)
    failed = add(store, "batches/x01", states.FAILED)
    add(store, "batches/y01", states.FAILED, downloaded_at=T0, cleaned_at=T0)
    ids = set(leases.candidate_ids(store, keep_remote=False))
    assert ids == {running, unknown, future, succeeded, downloaded, failed, claimed}
    kept = set(leases.candidate_ids(store, keep_remote=True))
    # A failed job without output has nothing left to do when remote is kept.
    assert kept == {running, unknown, future, succeeded, claimed}
    assert done not in ids


def test_needs_rules() -> None:
    base = dict(
        id=1,
        batch_name="batches/a",
        input_file="a.jsonl",
        dest_file_name=None,
        dest_inline=False,
        uploaded_file_name=None,
        downloaded=False,
        result_path=None,
        result_size=None,
        cleaned=False,
        error_count=0,
    )
    running = WorkItem(state=states.RUNNING, **base)
    assert running.needs_state() and not running.needs_download()
    assert not running.needs_cleanup(keep_remote=False)  # never delete a live job
    succeeded = WorkItem(state=states.SUCCEEDED, **base)
    assert succeeded.needs_download() and succeeded.needs_state()  # must learn dest
    failed = WorkItem(state=states.FAILED, **base)
    assert not failed.needs_download() and failed.needs_cleanup(keep_remote=False)
    assert not failed.needs_cleanup(keep_remote=True)


def test_terminal_state_the_api_reported_never_moves_backwards(store: Store) -> None:
    job = add(store, "batches/b01", states.SUCCEEDED, last_polled_at=T0)
    change = tracker.apply_remote(
        store, job, parse_operation(operation("batches/b01", "BATCH_STATE_RUNNING"))
    )
    assert change.new == states.SUCCEEDED and not change.changed


def test_terminal_state_only_job_info_claimed_yields_to_the_api(store: Store) -> None:
    """An imported line said SUCCEEDED; the API says RUNNING: the API wins, so the
    batch is never deleted on job-info's word."""
    job = add(store, "batches/b02", states.SUCCEEDED)
    change = tracker.apply_remote(
        store, job, parse_operation(operation("batches/b02", "BATCH_STATE_RUNNING"))
    )
    assert (change.old, change.new) == (states.SUCCEEDED, states.RUNNING)
    assert not change.item.needs_cleanup(keep_remote=False)
    with store.reading() as session:
        event = session.scalars(select(Event).where(Event.job_id == job)).one()
        assert "job-info said succeeded" in (event.message or "")


def test_unconfirmed_finished_claim_must_be_checked_before_anything(store: Store) -> None:
    job = add(store, "batches/b03", states.FAILED)
    (item,) = leases.claim(store, [job], "me", timedelta(minutes=1))
    assert item.needs_state()


def test_apply_remote_records_stats_error_and_event(store: Store) -> None:
    job = add(store, "batches/e01", states.RUNNING)
    raw = operation(
        "batches/e01",
        "BATCH_STATE_FAILED",
        batchStats={"requestCount": "4", "failedRequestCount": "4"},
        endTime="2026-01-01T01:00:00.123456789Z",
    )
    raw["error"] = {"code": 13, "message": "input file malformed"}
    change = tracker.apply_remote(store, job, parse_operation(raw))
    assert (change.old, change.new) == (states.RUNNING, states.FAILED)
    with store.reading() as session:
        row = session.get_one(Job, job)
        assert row.api_request_count == 4
        assert row.api_failed_count == 4 and row.api_succeeded_count == 0
        assert row.remote_error == "input file malformed (code 13)"
        assert row.end_time == datetime(2026, 1, 1, 1, 0, 0, 123456, tzinfo=timezone.utc)
        event = session.scalars(select(Event).where(Event.job_id == job)).one()
        assert (event.kind, event.old_state, event.new_state) == (
            "state_change",
            states.RUNNING,
            states.FAILED,
        )


def test_unknown_future_state_is_kept_and_not_terminal(store: Store) -> None:
    job = add(store, "batches/n01", states.RUNNING)
    tracker.apply_remote(
        store, job, parse_operation(operation("batches/n01", "BATCH_STATE_PAUSED"))
    )
    assert job in leases.candidate_ids(store, keep_remote=False)
    with store.reading() as session:
        assert session.get_one(Job, job).state == "JOB_STATE_PAUSED"


def test_lease_is_exclusive_until_it_expires(store: Store) -> None:
    ids = [add(store, f"batches/l{i:02d}", states.RUNNING) for i in range(10)]
    first = leases.claim(store, ids, "A", timedelta(minutes=5))
    assert [item.id for item in first] == ids
    assert leases.claim(store, ids, "B", timedelta(minutes=5)) == []
    leases.release(store, ids[:3], "A")
    assert [item.id for item in leases.claim(store, ids, "B", timedelta(minutes=5))] == ids[:3]
    # A lease whose holder died runs out.
    leases.claim(store, ids[3:], "A", timedelta(seconds=-1))
    assert [item.id for item in leases.claim(store, ids, "C", timedelta(minutes=5))] == ids[3:]


def test_racing_claims_split_jobs_without_overlap(store: Store) -> None:
    ids = [add(store, f"batches/z{i:03d}", states.RUNNING) for i in range(200)]
    won: dict[str, list[int]] = {}

    def grab(owner: str) -> None:
        got: list[int] = []
        for start in range(0, len(ids), 7):
            got += [i.id for i in leases.claim(store, ids[start : start + 7], owner, timedelta(1))]
        won[owner] = got

    threads = [threading.Thread(target=grab, args=(name,)) for name in "ABCD"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [job for got in won.values() for job in got]
    assert sorted(everything) == ids  # each job exactly once


def test_error_is_recorded_on_its_job_only(store: Store) -> None:
    a = add(store, "batches/ea1", states.RUNNING)
    b = add(store, "batches/eb1", states.RUNNING)
    assert tracker.record_error(store, a, "boom") == 1
    assert tracker.record_error(store, a, "boom again") == 2
    with store.reading() as session:
        assert session.get_one(Job, a).last_error == "boom again"
        assert session.get_one(Job, b).last_error is None
    tracker.record_cleanup(store, a, "ok")
    with store.reading() as session:
        assert session.get_one(Job, a).error_count == 0


def test_lease_of_a_killed_poller_on_this_host_is_reclaimed_at_once(store: Store) -> None:
    import signal
    import subprocess
    import sys

    ids = [add(store, f"batches/k{i:02d}", states.RUNNING) for i in range(3)]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    holder = leases.make_owner(child.pid)
    assert len(leases.claim(store, ids, holder, timedelta(minutes=5))) == 3
    assert leases.claim(store, ids, "other-host:1:x", timedelta(minutes=5)) == []
    child.send_signal(signal.SIGKILL)
    child.wait()
    again = leases.claim(store, ids, leases.make_owner(), timedelta(minutes=5))
    assert [item.id for item in again] == ids


@pytest.mark.postgres
def test_racing_claims_on_postgres(pg_schema_url: str) -> None:
    pg = open_store(pg_schema_url)
    try:
        ids = [add(pg, f"batches/p{i:03d}", states.RUNNING) for i in range(120)]
        won: dict[str, list[int]] = {}

        def grab(owner: str) -> None:
            got: list[int] = []
            for start in range(0, len(ids), 5):
                chunk = ids[start : start + 5]
                got += [i.id for i in leases.claim(pg, chunk, owner, timedelta(1))]
            won[owner] = got

        threads = [threading.Thread(target=grab, args=(name,)) for name in "ABC"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(job for got in won.values() for job in got) == ids
    finally:
        pg.dispose()


def test_poller_heartbeat_keeps_leases_through_a_long_cycle(store: Store, tmp_path: Path) -> None:
    """A cycle longer than the lease: the heartbeat renews it, so nobody else takes over."""
    from gembatch.engine.heartbeat import Heartbeat

    ids = [add(store, f"batches/h{i}", states.RUNNING) for i in range(3)]
    ttl = timedelta(seconds=3)
    assert len(leases.claim(store, ids, "poller-A", ttl)) == 3
    # The poller's own period: a third of the lease.
    heartbeat = Heartbeat(lambda held: leases.renew(store, held, "poller-A", ttl), ids, 1.0)
    try:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:  # twice the 3 s lease
            assert leases.claim(store, ids, "poller-B", ttl) == []
            time.sleep(0.25)
    finally:
        heartbeat.stop()
