"""Invariant 8 for the commands that are not pollers: `cancel` and `cleanup` never
write a job (nor delete its remote resources) while another live holder leases it."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from jobfactory import client_for
from sqlalchemy import create_engine, event, update
from test_cleanup import cleanup, workspace
from test_leases import add
from test_submit import KEY, jobs, write_input

from gembatch.common import states
from gembatch.common.locations import sqlite_url
from gembatch.emulator import Emulator
from gembatch.engine import cancel as cancel_module
from gembatch.engine.leftovers import cancel_surplus
from gembatch.remote.client import Gemini
from gembatch.store import leases, submits, tracker
from gembatch.store.database import Store, open_store
from gembatch.store.models import Job
from gembatch.store.tracker import JobBusy

# A poller on another machine: its lease can only expire, never be judged dead.
ELSEWHERE = "otherhost:4242:-:0123456789ab"


def lease(workdir: Path, ids: list[int], owner: str = ELSEWHERE) -> None:
    opened = open_store(sqlite_url(workdir / "gembatch.db"))
    try:
        won = {item.id for item in leases.claim(opened, ids, owner, timedelta(minutes=10))}
        assert won == set(ids)
    finally:
        opened.dispose()


def unlease(workdir: Path, ids: list[int], owner: str = ELSEWHERE) -> None:
    opened = open_store(sqlite_url(workdir / "gembatch.db"))
    try:
        leases.release(opened, ids, owner)
    finally:
        opened.dispose()


def test_an_unleased_write_waits_for_no_live_holder(store_on_each_backend: Store) -> None:
    store = store_on_each_backend
    job_id = add(store, "batches/held", states.RUNNING)
    assert leases.claim(store, [job_id], ELSEWHERE, timedelta(minutes=10))
    with pytest.raises(JobBusy) as busy:
        tracker.record_error(store, job_id, "from a command holding no lease")
    assert ELSEWHERE in str(busy.value)
    assert tracker.refresh(store, job_id).error_count == 0
    # The holder itself still writes; once it lets go, anyone may.
    tracker.record_error(store, job_id, "from the holder", owner=ELSEWHERE)
    leases.release(store, [job_id], ELSEWHERE)
    tracker.record_error(store, job_id, "after the release")
    assert tracker.refresh(store, job_id).error_count == 2


def test_an_expired_lease_holds_nothing_back(store_on_each_backend: Store) -> None:
    store = store_on_each_backend
    job_id = add(store, "batches/lapsed", states.RUNNING)
    leases.claim(store, [job_id], ELSEWHERE, timedelta(seconds=-1))
    tracker.record_error(store, job_id, "the lease has run out")
    assert tracker.refresh(store, job_id).error_count == 1


def running_pair(emulator: Emulator, workdir: Path, run_cli):  # type: ignore[no-untyped-def]
    write_input(workdir, "a.jsonl", 2)
    write_input(workdir, "b.jsonl", 2)
    base = ("--base-url", emulator.base_url)
    assert run_cli("submit", *base, "batch/a.jsonl", "batch/b.jsonl", env=KEY).exit_code == 0
    for name in emulator.batch_names():
        emulator.set_state(name, "RUNNING")
    return jobs(workdir)


def test_cancel_leaves_a_job_a_poller_holds_to_that_poller(
    emulator: Emulator, workdir: Path, run_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cancel_module, "WAIT_FOR_POLLER_S", 0.3)
    held, free = running_pair(emulator, workdir, run_cli)
    lease(workdir, [held.id])

    result = run_cli("cancel", "--base-url", emulator.base_url, "--all", env=KEY)
    assert result.exit_code == 0, result.output
    # The API is asked for both: the user's cancel goes out whoever polls.
    assert emulator.state_of(held.batch_name or "") == "CANCELLED"
    assert emulator.state_of(free.batch_name or "") == "CANCELLED"
    assert "otherhost" in result.output and "records" in result.output
    after_held, after_free = jobs(workdir)
    # Nothing written to the held row: its holder records the state it polls.
    assert after_held.state == held.state and after_held.cancel_requested_at is None
    assert after_held.error_count == 0 and after_held.lease_owner == ELSEWHERE
    assert after_free.state == states.CANCELLED and after_free.cancel_requested_at is not None
    assert after_free.lease_owner is None


def test_cancel_waits_for_a_poll_cycle_to_let_go(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    held, _ = running_pair(emulator, workdir, run_cli)
    lease(workdir, [held.id])
    # The cycle ends a moment after the cancel starts: its record is then written.
    timer = threading.Timer(1.0, unlease, args=(workdir, [held.id]))
    timer.start()
    try:
        result = run_cli("cancel", "--base-url", emulator.base_url, str(held.id), env=KEY)
    finally:
        timer.join()
    assert result.exit_code == 0, result.output
    assert "done: 1 cancelled" in result.output, result.output
    (after, _) = jobs(workdir)
    assert after.state == states.CANCELLED and after.cancel_requested_at is not None
    assert after.lease_owner is None


def test_cleanup_leaves_a_job_a_poller_holds_to_that_poller(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    names = workspace(emulator, workdir, run_cli)
    rows = {row.batch_name: row for row in jobs(workdir)}
    held = rows[names["done1"]]
    lease(workdir, [held.id])

    done = cleanup(emulator, "-y", run_cli=run_cli)
    assert done.exit_code == 1, done.output
    assert "otherhost" in done.output
    remaining = set(emulator.batch_names())
    assert names["done1"] in remaining and names["done2"] not in remaining
    after = {row.batch_name: row for row in jobs(workdir)}
    assert after[names["done1"]].cleaned_at is None
    assert after[names["done1"]].lease_owner == ELSEWHERE
    assert after[names["done2"]].cleaned_at is not None
    # cleanup let go of every lease it took.
    assert all(row.lease_owner is None for name, row in after.items() if name != names["done1"])

    unlease(workdir, [held.id])
    again = cleanup(emulator, "-y", run_cli=run_cli)
    assert again.exit_code == 0, again.output
    assert names["done1"] not in set(emulator.batch_names())


def test_a_duplicate_batch_a_poller_took_at_once_is_still_cancelled(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    write_input(workdir, "a.jsonl", 2)
    assert (
        run_cli("submit", "--base-url", emulator.base_url, "batch/a.jsonl", env=KEY).exit_code == 0
    )
    (job,) = jobs(workdir)
    client = client_for(emulator)
    try:
        duplicate = client.batches.create(
            model=job.model or "",
            src=job.uploaded_file_name,
            config={"display_name": job.display_name},
        ).name
    finally:
        client.close()
    assert duplicate
    emulator.set_state(duplicate, "RUNNING")
    opened = open_store(sqlite_url(workdir / "gembatch.db"))
    gemini = Gemini("test-key", base_url=emulator.base_url)
    try:
        rows = submits.record_surplus(opened, job.id, [duplicate])
        (twin,) = (row for _, row in rows)
        assert leases.claim(opened, [twin], ELSEWHERE, timedelta(minutes=10))
        remote = gemini.get_batch(duplicate)
        said = cancel_surplus(SimpleNamespace(store=opened, gemini=gemini), rows, [remote])  # type: ignore[arg-type]
    finally:
        gemini.close()
        opened.dispose()
    # Paid once: the cancel goes out even though the row is the poller's now.
    assert emulator.state_of(duplicate) == "CANCELLED"
    assert "still to delete" in said
    after = {row.id: row for row in jobs(workdir)}[twin]
    assert after.lease_owner == ELSEWHERE and after.cleaned_at is None
    assert duplicate in set(emulator.batch_names())


@pytest.mark.postgres
def test_a_lease_let_go_during_a_hold_is_not_counted_as_held(pg_schema_url: str) -> None:
    # PostgreSQL reads committed rows afresh per statement: a poller that lets go
    # between hold()'s UPDATE (which skipped its job) and its read leaves the job
    # free, not taken by the holder.
    store = open_store(pg_schema_url)
    other = create_engine(pg_schema_url)
    try:
        job_id = add(store, "batches/racing", states.RUNNING)
        assert leases.claim(store, [job_id], ELSEWHERE, timedelta(minutes=10))
        fired: list[str] = []

        def release_meanwhile(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
            if not fired and statement.lstrip().upper().startswith("UPDATE JOBS SET LEASE_OWNER"):
                fired.append(statement)
                with other.begin() as elsewhere:
                    elsewhere.execute(
                        update(Job)
                        .where(Job.id == job_id)
                        .values(lease_owner=None, lease_expires_at=None)
                    )

        event.listen(store.engine, "after_cursor_execute", release_meanwhile)
        held, holders = leases.hold(store, [job_id], "me:1:-:000000000000", timedelta(minutes=1))
        event.remove(store.engine, "after_cursor_execute", release_meanwhile)
        assert fired
        assert held == set() and holders == {job_id: ""}
    finally:
        other.dispose()
        store.dispose()
