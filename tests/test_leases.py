"""Leases (invariant 8): the database's clock, writes only by the holder, poller identity.

Every test runs on SQLite and, where it is reachable, on PostgreSQL: the data
layer's functions are called directly on a real database.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from gembatch.common import states
from gembatch.common.batch import RemoteBatch
from gembatch.common.locations import resolve, sqlite_url
from gembatch.common.timeutil import now as real_now
from gembatch.remote.wire import parse_operation
from gembatch.store import leases, tracker
from gembatch.store.database import Store, open_store
from gembatch.store.models import Event, Job

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
TTL = timedelta(minutes=5)


@pytest.fixture
def store(store_on_each_backend: Store) -> Store:
    return store_on_each_backend


@pytest.fixture
def pg(pg_schema_url: str) -> Iterator[Store]:
    opened = open_store(pg_schema_url)
    yield opened
    opened.dispose()


def add(store: Store, name: str, state: str | None = states.RUNNING) -> int:
    with store.transaction() as session:
        job = Job(batch_name=name, input_file=f"{name[-3:]}.jsonl", state=state, added_at=T0)
        session.add(job)
        session.flush()
        return job.id


def fast_clock(monkeypatch: pytest.MonkeyPatch, ahead: timedelta) -> None:
    """This process's clock runs ``ahead``: every local "now" the data layer reads moves."""

    def skewed() -> datetime:
        return real_now() + ahead

    for module in (leases, tracker):
        if hasattr(module, "utcnow"):
            monkeypatch.setattr(module, "utcnow", skewed)


def steal(store: Store, job_id: int, owner: str) -> None:
    """Another poller took the job over (its lease had expired, say)."""
    with store.transaction() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(lease_owner=owner, lease_expires_at=real_now() + TTL)
        )


def row(store: Store, job_id: int) -> tuple[Job, int]:
    with store.reading() as session:
        job = session.get_one(Job, job_id)
        session.expunge(job)
        events = session.scalar(select(func.count()).where(Event.job_id == job_id))
        return job, events or 0


# ------------------------------------------------------------------ the database's clock


@pytest.mark.postgres
def test_a_poller_whose_clock_runs_fast_cannot_take_a_live_lease(
    pg: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [add(pg, f"batches/c{i:02d}") for i in range(3)]
    assert len(leases.claim(pg, ids, "poller-A", TTL)) == 3
    fast_clock(monkeypatch, timedelta(minutes=30))
    assert leases.claim(pg, ids, "poller-B", TTL) == []
    # Its own renewals and expiry reads use the server's clock too.
    assert leases.claim(pg, ids[:1], "poller-B", TTL) == []


@pytest.mark.postgres
def test_a_poller_whose_clock_runs_slow_still_holds_its_lease(
    pg: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [add(pg, f"batches/s{i:02d}") for i in range(2)]
    fast_clock(monkeypatch, -timedelta(minutes=30))
    assert len(leases.claim(pg, ids, "poller-A", TTL)) == 2
    monkeypatch.undo()
    assert leases.claim(pg, ids, "poller-B", TTL) == []


def test_on_sqlite_the_local_clock_is_the_database_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One file on one host: a clock jump moves every process alike. This also proves
    the simulated skew reaches the lease code, so the PostgreSQL tests above bite."""
    store = open_store(sqlite_url(tmp_path / "t.db"))
    try:
        ids = [add(store, "batches/q01")]
        assert len(leases.claim(store, ids, "poller-A", TTL)) == 1
        fast_clock(monkeypatch, timedelta(minutes=30))
        assert [item.id for item in leases.claim(store, ids, "poller-B", TTL)] == ids
    finally:
        store.dispose()


# ------------------------------------------------------------------ writes only by the holder


def remote(name: str, state: str) -> RemoteBatch:
    return parse_operation({"name": name, "metadata": {"name": name, "state": state}})


WRITES: dict[str, Callable[[Store, int, str | None], object]] = {
    "apply_remote": lambda s, j, o: tracker.apply_remote(
        s, j, remote("batches/w01", states.SUCCEEDED), owner=o
    ),
    "record_download": lambda s, j, o: tracker.record_download(
        s, j, path="r.jsonl", size=1, sha256="0" * 64, note="n", owner=o
    ),
    "record_cleanup": lambda s, j, o: tracker.record_cleanup(s, j, "gone", owner=o),
    "record_error": lambda s, j, o: tracker.record_error(s, j, "boom", owner=o),
    "forget_download": lambda s, j, o: tracker.forget_download(s, j, "changed", owner=o),
    "record_polled": lambda s, j, o: tracker.record_polled(s, j, owner=o),
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_a_write_by_a_poller_that_lost_its_lease_is_refused(store: Store, write: str) -> None:
    job_id = add(store, "batches/w01")
    assert len(leases.claim(store, [job_id], "poller-A", TTL)) == 1
    steal(store, job_id, "poller-B")
    before, events = row(store, job_id)
    with pytest.raises(tracker.LeaseLost):
        WRITES[write](store, job_id, "poller-A")
    after, events_after = row(store, job_id)
    assert (after.state, after.downloaded_at, after.cleaned_at, after.error_count) == (
        before.state,
        before.downloaded_at,
        before.cleaned_at,
        before.error_count,
    )
    assert after.last_polled_at == before.last_polled_at
    assert events_after == events
    assert after.lease_owner == "poller-B"
    # The new holder writes as usual.
    WRITES[write](store, job_id, "poller-B")


@pytest.mark.parametrize("write", sorted(WRITES))
def test_a_write_after_the_lease_expired_is_refused(store: Store, write: str) -> None:
    job_id = add(store, "batches/w01")
    leases.claim(store, [job_id], "poller-A", -timedelta(seconds=1))
    with pytest.raises(tracker.LeaseLost):
        WRITES[write](store, job_id, "poller-A")


@pytest.mark.parametrize("write", sorted(WRITES))
def test_the_holder_and_unleased_callers_write(store: Store, write: str) -> None:
    held = add(store, "batches/w01")
    assert len(leases.claim(store, [held], "poller-A", TTL)) == 1
    WRITES[write](store, held, "poller-A")
    # owner=None: commands that take no lease (cleanup, cancel) write as before.
    free = add(store, "batches/w02")
    WRITES[write](store, free, None)
    assert row(store, held)[1] >= 0 and row(store, free)[1] >= 0


def test_renew_says_which_leases_are_still_held(store: Store) -> None:
    ids = [add(store, f"batches/r{i:02d}") for i in range(3)]
    assert len(leases.claim(store, ids, "poller-A", TTL)) == 3
    steal(store, ids[1], "poller-B")
    assert leases.renew(store, ids, "poller-A", TTL) == {ids[0], ids[2]}


# ------------------------------------------------------------------ poller identity


def test_same_host_and_dead_pid_on_another_machine_is_not_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    ours = leases.make_owner(child.pid)
    host, pid, identity, tag = ours.split(":")
    assert (host, pid) == (socket.gethostname()[:64], str(child.pid))
    other = f"{host}:{pid}:{'f' * len(identity)}:{tag}"
    assert not leases.holder_is_dead(other)
    assert not leases.holder_is_dead(f"{host}:{pid}:{tag}")  # no identity: let it expire
    if identity != "-":  # /proc tells who we are: the fast path stays for our own kind
        assert leases.holder_is_dead(ours)


def test_make_owner_is_random_per_poller() -> None:
    assert leases.make_owner() != leases.make_owner()
    assert leases.make_owner().split(":")[1] == str(os.getpid())


def test_a_killed_poller_on_this_machine_is_reclaimed_at_once(store: Store) -> None:
    if leases.make_owner().split(":")[2] == "-":
        pytest.skip("no /proc: a dead holder's lease just expires")
    ids = [add(store, f"batches/k{i:02d}") for i in range(2)]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert len(leases.claim(store, ids, leases.make_owner(child.pid), TTL)) == 2
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert len(leases.claim(store, ids, leases.make_owner(), TTL)) == 2


# ------------------------------------------------------------------ the poller stops


def test_the_poller_stops_working_on_a_job_whose_lease_it_lost(
    store: Store, emulator: object, workdir: Path
) -> None:
    from gembatch.engine.poller import Poller
    from gembatch.engine.steps import CycleResult
    from gembatch.remote.client import Gemini

    gemini = Gemini("test-key", base_url=emulator.base_url)  # type: ignore[attr-defined]
    try:
        poller = Poller(store, gemini, resolve(workdir / "job-info.jsonl", None))
        ids = [add(store, f"batches/missing{i}") for i in range(2)]
        items = leases.claim(store, ids, poller.owner, TTL)
        steal(store, ids[0], "poller-B")
        assert poller.renew_leases(ids) == {ids[1]}
        assert poller.lost == {ids[0]}
        result = CycleResult()
        poller.advance(items[0], None, result)
        # Nothing was asked or recorded for the lost job (the batch does not exist:
        # working on it would have recorded an error).
        job, _ = row(store, ids[0])
        assert (job.error_count, result.errors) == (0, 0)
    finally:
        gemini.close()


def test_a_claim_keeps_no_lease_on_a_job_that_needs_nothing(store: Store) -> None:
    # Finished and cleaned meanwhile (another poller, or cleanup): claiming it
    # must not leave it leased for a TTL, where cleanup and cancel would wait on it.
    busy = add(store, "batches/c-run", states.RUNNING)
    done = add(store, "batches/c-done", states.CANCELLED)
    with store.transaction() as session:
        session.execute(update(Job).where(Job.id == done).values(cleaned_at=T0))
    won = leases.claim(store, [busy, done], "A", timedelta(minutes=5))
    assert [item.id for item in won] == [busy]
    with store.reading() as session:
        owners = dict(session.execute(select(Job.id, Job.lease_owner)).all())
    assert owners == {busy: "A", done: None}
