"""A poll cycle costs what changed: jobs the API reports as stored share one
transaction, and that write respects every lease (invariant 8).

Counted, not timed: transactions are counted with SQLAlchemy's own events on a
real database (SQLite, and PostgreSQL where it is reachable), the API calls by
the emulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from jobfactory import make_jobs
from sqlalchemy import event, func, select, update
from test_leases import T0, add, row, steal

from gembatch.common import states
from gembatch.common.locations import resolve
from gembatch.common.timeutil import now as real_now
from gembatch.emulator import Emulator
from gembatch.engine.poller import Poller
from gembatch.remote.client import Gemini
from gembatch.remote.wire import parse_operation
from gembatch.store.database import Store, open_store
from gembatch.store.models import Event, Job
from gembatch.store.unchanged import record_unchanged


@pytest.fixture
def store(store_on_each_backend: Store) -> Store:
    return store_on_each_backend


class Counter:
    """Commits and writing statements on one engine, from now on."""

    def __init__(self, store: Store) -> None:
        self.commits = 0
        self.writes = 0
        event.listen(store.engine, "commit", self._commit)
        event.listen(store.engine, "before_cursor_execute", self._execute)

    def _commit(self, conn: Any) -> None:
        self.commits += 1

    def _execute(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
            self.writes += 1


def listed(name: str, state: str = "RUNNING", done: int = 0) -> Any:
    return parse_operation(
        {
            "name": name,
            "metadata": {
                "name": name,
                "state": f"BATCH_STATE_{state}",
                "updateTime": "2026-01-01T01:00:00Z",
                "batchStats": {
                    "requestCount": "10",
                    "successfulRequestCount": str(done),
                    "pendingRequestCount": str(10 - done),
                },
            },
        }
    )


@pytest.fixture
def poller_on(emulator: Emulator, workdir: Path) -> Iterator[Any]:
    opened: list[tuple[Store, Gemini]] = []

    def make() -> tuple[Store, Poller]:
        locations = resolve(workdir / "job-info.jsonl", None)
        store = open_store(locations.db_url)
        gemini = Gemini("test-key", base_url=emulator.base_url)
        opened.append((store, gemini))
        return store, Poller(store, gemini, locations)

    yield make
    for store, gemini in opened:
        gemini.close()
        store.dispose()


@pytest.mark.parametrize("size", [4, 30])
def test_a_cycle_of_unchanged_jobs_is_one_transaction_whatever_the_size(
    emulator: Emulator, workdir: Path, poller_on: Any, size: int
) -> None:
    made = make_jobs(emulator, workdir, size)
    for item in made:
        emulator.set_state(item.batch_name, "RUNNING")
    store, poller = poller_on()
    from gembatch.jobinfo.importer import import_jobinfo

    import_jobinfo(store, workdir / "job-info.jsonl", base_dir=workdir)
    first = poller.run_cycle()
    assert first.state_changes == size  # pending -> running: one transaction each
    with store.reading() as session:
        before = dict(session.execute(select(Job.id, Job.last_polled_at)).all())
        events = session.scalar(select(func.count()).select_from(Event))
    emulator.reset_stats()
    counter = Counter(store)
    second = poller.run_cycle()
    assert (second.state_changes, second.unchanged, second.claimed) == (0, size, 0)
    assert counter.commits == 1, counter.commits
    assert counter.writes == 1, counter.writes
    assert emulator.count("batches.list") == 1
    assert emulator.count("batches.get") == 0
    with store.reading() as session:
        after = dict(session.execute(select(Job.id, Job.last_polled_at)).all())
        assert session.scalar(select(func.count()).select_from(Event)) == events
        counts = set(session.scalars(select(Job.api_request_count)))
    assert all(after[job_id] > polled for job_id, polled in before.items())
    assert counts == {3}


def test_the_shared_write_lands_only_on_free_jobs_still_in_the_state_seen(store: Store) -> None:
    free = add(store, "batches/u-free")
    mine = add(store, "batches/u-mine")
    held = add(store, "batches/u-held")
    lapsed = add(store, "batches/u-lapsed")
    moved = add(store, "batches/u-moved", states.SUCCEEDED)
    steal(store, mine, "me")
    steal(store, held, "someone-else")
    with store.transaction() as session:
        session.execute(
            update(Job)
            .where(Job.id == lapsed)
            .values(lease_owner="gone", lease_expires_at=real_now() - timedelta(seconds=1))
        )
    seen = [
        (job_id, listed(f"batches/u-{name}", done=4))
        for job_id, name in (
            (free, "free"),
            (mine, "mine"),
            (held, "held"),
            (lapsed, "lapsed"),
            (moved, "moved"),
        )
    ]
    written = record_unchanged(store, seen, owner="me")
    assert written == 3
    for job_id in (free, mine, lapsed):
        job, events = row(store, job_id)
        assert job.last_polled_at is not None and events == 0
        assert (job.api_request_count, job.api_succeeded_count, job.api_pending_count) == (
            10,
            4,
            6,
        )
        assert job.update_time is not None and job.update_time > T0
        assert job.batch_json["metadata"]["state"] == "BATCH_STATE_RUNNING"
    for job_id in (held, moved):
        job, _ = row(store, job_id)
        assert job.last_polled_at is None and job.api_request_count is None
    # The lease it found is left as it was: the shared write takes none.
    assert row(store, held)[0].lease_owner == "someone-else"
    assert row(store, moved)[0].state == states.SUCCEEDED


def test_values_the_api_leaves_out_keep_the_stored_ones(store: Store) -> None:
    job_id = add(store, "batches/u-keep")
    record_unchanged(store, [(job_id, listed("batches/u-keep", done=7))])
    bare = parse_operation({"name": "batches/u-keep", "metadata": {"state": "BATCH_STATE_RUNNING"}})
    record_unchanged(store, [(job_id, bare)])
    job, _ = row(store, job_id)
    assert (job.api_request_count, job.api_succeeded_count) == (10, 7)
    assert job.update_time is not None


# ------------------------------------------------------------------ job-info exports


class Exports:
    """Counts the real exports of job-info.jsonl (each still runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *modules: Any) -> None:
        self.count = 0
        for module in modules:
            real = module.export_jobinfo

            def counted(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
                self.count += 1
                return _real(*args, **kwargs)

            monkeypatch.setattr(module, "export_jobinfo", counted)


def test_a_submit_run_exports_job_info_once_however_many_files(
    emulator: Emulator, workdir: Path, run_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobfactory import request_lines

    import gembatch.engine.submit as submit_module

    exports = Exports(monkeypatch, submit_module)
    names = []
    for index in range(6):
        path = workdir / "batch" / f"{index:03d}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(request_lines(index, 2)) + "\n")
        names.append(f"batch/{index:03d}.jsonl")
    result = run_cli(
        "submit", "--base-url", emulator.base_url, *names, env={"GEMINI_API_KEY": "test-key"}
    )
    assert result.exit_code == 0, result.output
    assert exports.count == 1
    lines = (workdir / "job-info.jsonl").read_text().splitlines()
    assert len(lines) == 6
    # A run that records nothing leaves the file alone.
    again = run_cli(
        "submit", "--base-url", emulator.base_url, *names, env={"GEMINI_API_KEY": "test-key"}
    )
    assert again.exit_code == 0, again.output
    assert exports.count == 1


def _poll_cycles(emulator: Emulator, workdir: Path, cycles: int) -> None:
    from gembatch.engine.poller import PollOptions
    from gembatch.engine.progress import QuietReporter
    from gembatch.engine.session import make_poller

    locations = resolve(workdir / "job-info.jsonl", None)
    store = open_store(locations.db_url)
    gemini = Gemini("test-key", base_url=emulator.base_url)
    try:
        poller = make_poller(store, gemini, locations, PollOptions(), QuietReporter())
        for _ in range(cycles):
            poller.run_cycle()
    finally:
        gemini.close()
        store.dispose()


def test_a_job_info_file_left_behind_by_a_killed_submit_is_caught_up(
    emulator: Emulator, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = make_jobs(emulator, workdir, 3)
    for item in made:
        emulator.set_state(item.batch_name, "RUNNING")
    _poll_cycles(emulator, workdir, 1)
    info = workdir / "job-info.jsonl"
    # As a submit killed after recording its jobs but before its export leaves it.
    info.write_text(info.read_text().splitlines()[0] + "\n")
    _poll_cycles(emulator, workdir, 1)  # nothing changes remotely
    names = {line.split('"name": "')[1].split('"')[0] for line in info.read_text().splitlines()}
    assert names == {item.batch_name for item in made}


def test_an_unchanged_job_info_file_is_not_read_again_each_cycle(
    emulator: Emulator, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gembatch.engine.session as session_module

    made = make_jobs(emulator, workdir, 3)
    for item in made:
        emulator.set_state(item.batch_name, "RUNNING")
    merges = []
    real = session_module.import_jobinfo

    def counted(*args: Any, **kwargs: Any) -> Any:
        merges.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(session_module, "import_jobinfo", counted)
    locations = resolve(workdir / "job-info.jsonl", None)
    store = open_store(locations.db_url)
    gemini = Gemini("test-key", base_url=emulator.base_url)
    try:
        from gembatch.engine.poller import PollOptions
        from gembatch.engine.progress import QuietReporter

        poller = session_module.make_poller(
            store, gemini, locations, PollOptions(), QuietReporter()
        )
        for _ in range(3):
            poller.run_cycle()
        # Read by the first cycle, and once more by the cycle after its export
        # (a line appended right after an export must not count as seen); then not.
        assert len(merges) == 2
        extra = make_jobs(emulator, workdir, 1, start=5)  # another program appends
        poller.run_cycle()
        assert len(merges) == 3
        with store.reading() as session:
            names = set(session.scalars(select(Job.batch_name)))
        assert extra[0].batch_name in names
    finally:
        gemini.close()
        store.dispose()
