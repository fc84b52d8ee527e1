"""`gembatch submit` end to end: the real CLI and SDK against the emulator over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jobfactory import request_lines
from sqlalchemy import select, update

from gembatch.common import states
from gembatch.common.locations import resolve, sqlite_url
from gembatch.emulator import Emulator
from gembatch.engine.submit import Submitter
from gembatch.engine.units import SubmitOptions, make_display_name, prepare
from gembatch.remote.client import Gemini
from gembatch.remote.retry import RetryPolicy
from gembatch.store.database import open_store
from gembatch.store.models import Event, Job
from gembatch.store.submits import FAILED, PENDING, SUBMITTED

KEY = {"GEMINI_API_KEY": "test-key"}
BAD_INPUTS = Path(__file__).parent / "bad_inputs"


def write_input(workdir: Path, name: str, count: int, index: int = 0) -> Path:
    path = workdir / "batch" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(request_lines(index, count)) + "\n")
    return path


def submit(emulator: Emulator, *args: str, run_cli):  # type: ignore[no-untyped-def]
    return run_cli("submit", "--base-url", emulator.base_url, *args, env=KEY)


def poll(emulator: Emulator, *args: str, run_cli):  # type: ignore[no-untyped-def]
    return run_cli("poll", "--base-url", emulator.base_url, "--interval", "0.1", *args, env=KEY)


def jobs(workdir: Path) -> list[Job]:
    store = open_store(sqlite_url(workdir / "gembatch.db"))
    try:
        with store.reading() as session:
            return list(session.scalars(select(Job).order_by(Job.id)))
    finally:
        store.dispose()


def event_kinds(workdir: Path, job_id: int) -> list[str]:
    store = open_store(sqlite_url(workdir / "gembatch.db"))
    try:
        with store.reading() as session:
            query = select(Event.kind).where(Event.job_id == job_id).order_by(Event.id)
            return list(session.scalars(query))
    finally:
        store.dispose()


def test_submit_poll_results_for_several_files(emulator: Emulator, workdir: Path, run_cli) -> None:
    for index, count in enumerate((3, 5, 2)):
        write_input(workdir, f"{index:03d}.jsonl", count, index)
    result = submit(
        emulator, "batch/000.jsonl", "batch/001.jsonl", "batch/002.jsonl", run_cli=run_cli
    )
    assert result.exit_code == 0, result.output
    assert "done: 3 submitted, 0 skipped" in result.output
    rows = jobs(workdir)
    assert [row.input_file for row in rows] == [f"batch/{i:03d}.jsonl" for i in range(3)]
    assert [row.request_count for row in rows] == [3, 5, 2]
    assert all(row.submit_state == SUBMITTED and row.batch_name for row in rows)
    assert all(row.uploaded_file_name and len(row.input_sha256 or "") == 64 for row in rows)
    assert all((row.display_name or "").startswith(f"gembatch:{row.input_file}:") for row in rows)
    assert sorted(emulator.batch_names()) == sorted(row.batch_name for row in rows)
    assert event_kinds(workdir, rows[0].id)[:3] == ["submit_intent", "uploaded", "submitted"]
    # job-info.jsonl is written as each job is submitted.
    lines = [json.loads(line) for line in (workdir / "job-info.jsonl").read_text().splitlines()]
    assert [line["batch"]["name"] for line in lines] == [row.batch_name for row in rows]
    # Uploads carry an explicit JSONL MIME type.
    client = Gemini("test-key", base_url=emulator.base_url)
    try:
        assert {f["mimeType"] for f in client.list_files()} == {"application/jsonl"}
    finally:
        client.close()

    polled = poll(emulator, run_cli=run_cli)
    assert polled.exit_code == 0, polled.output
    for index, count in enumerate((3, 5, 2)):
        out = workdir / "batch" / "results" / f"{index:03d}.jsonl"
        keys = [json.loads(line)["key"] for line in out.read_text().splitlines()]
        assert keys == [f"req-{index}-{n}" for n in range(count)]
    assert all(row.state == states.SUCCEEDED for row in jobs(workdir))


def test_resubmitting_is_skipped_unless_forced(emulator: Emulator, workdir: Path, run_cli) -> None:
    path = write_input(workdir, "a.jsonl", 2)
    assert submit(emulator, "batch/a.jsonl", run_cli=run_cli).exit_code == 0
    again = submit(emulator, "batch/a.jsonl", run_cli=run_cli)
    assert again.exit_code == 0
    assert "skipped: already submitted as batches/" in again.output
    # The same file named another way is the same file.
    absolute = submit(emulator, str(path), run_cli=run_cli)
    assert "skipped" in absolute.output
    assert emulator.count("batches.create") == 1
    assert emulator.count("files.upload") == 1

    forced = submit(emulator, "batch/a.jsonl", "--force", run_cli=run_cli)
    assert forced.exit_code == 0 and "1 submitted" in forced.output
    assert emulator.count("batches.create") == 2

    path.write_text("\n".join(request_lines(9, 3)) + "\n")
    changed = submit(emulator, "batch/a.jsonl", run_cli=run_cli)
    assert "content changed" in changed.output and "1 submitted" in changed.output
    assert len(jobs(workdir)) == 3


CORPUS = [
    ("not-json.jsonl", '{"key": "a", "request": {}}\n{oops\n', 2, "not valid JSON"),
    ("not-object.jsonl", '[{"key": "a"}]\n', 1, "expected a JSON object, got list"),
    ("no-key.jsonl", '{"request": {}}\n', 1, 'missing "key"'),
    ("int-key.jsonl", '{"key": 7, "request": {}}\n', 1, '"key" must be a non-empty string'),
    ("dup-key.jsonl", '{"key": "a", "request": {}}\n{"key": "a", "request": {}}\n', 2, "duplicate"),
    ("no-request.jsonl", '{"key": "a"}\n', 1, 'missing "request"'),
    ("request-list.jsonl", '{"key": "a", "request": []}\n', 1, '"request" must be a JSON object'),
    (
        "blank.jsonl",
        '{"key": "a", "request": {}}\n\n{"key": "b", "request": {}}\n',
        2,
        "empty line",
    ),
    (
        "nan.jsonl",
        '{"key": "a", "request": {"x": NaN}}\n',
        1,
        "not valid JSON (NaN is not valid JSON)",
    ),
]


@pytest.mark.parametrize(("name", "text", "line", "reason"), CORPUS, ids=[c[0] for c in CORPUS])
def test_validation_corpus(
    emulator: Emulator, workdir: Path, run_cli, name: str, text: str, line: int, reason: str
) -> None:
    good = write_input(workdir, "good.jsonl", 2)
    bad = workdir / "batch" / name
    bad.write_text(text)
    result = submit(emulator, str(good.relative_to(workdir)), f"batch/{name}", run_cli=run_cli)
    assert result.exit_code == 2
    assert f"batch/{name}:{line}: {reason}" in result.output
    assert "Traceback" not in result.output
    # Nothing uploaded, nothing created, nothing recorded: the good file was not sent either.
    assert emulator.count() == 0
    assert jobs(workdir) == []
    assert not (workdir / "job-info.jsonl").exists()


def test_validation_files_on_disk(emulator: Emulator, workdir: Path, run_cli) -> None:
    (workdir / "empty.jsonl").write_bytes(b"")
    (workdir / "latin1.jsonl").write_bytes(b'{"key": "\xe9", "request": {}}\n')
    result = submit(emulator, "empty.jsonl", "latin1.jsonl", "missing.jsonl", run_cli=run_cli)
    assert result.exit_code == 2
    assert "empty.jsonl: no requests" in result.output
    assert "latin1.jsonl:1: not valid UTF-8" in result.output
    assert "missing.jsonl: no such file" in result.output
    assert emulator.count() == 0


def test_real_fixtures_validate(workdir: Path) -> None:
    from conftest import REAL_GEMINI

    locations = resolve(workdir / "job-info.jsonl", None)
    files = sorted(REAL_GEMINI.glob("*.jsonl"))
    units = prepare([(path, path.name) for path in files], locations, SubmitOptions())
    assert [unit.count for unit in units] == [5, 5]


# --------------------------------------------------------------------------- orphans


@pytest.mark.parametrize("code", [500, 400])
def test_create_carried_out_then_error_is_adopted(
    emulator: Emulator, workdir: Path, run_cli, code: int
) -> None:
    write_input(workdir, "a.jsonl", 2)
    emulator.faults.fail_after("batches.create", code)
    result = submit(emulator, "batch/a.jsonl", "--retries", "2", run_cli=run_cli)
    assert result.exit_code == 0, result.output
    assert "checking whether the batch was made anyway" in result.output
    assert "found after an error" in result.output
    # Exactly one batch exists, and it is tracked: never a blind second create.
    assert emulator.count("batches.create") == 1
    assert len(emulator.batch_names()) == 1
    [row] = jobs(workdir)
    assert row.batch_name == emulator.batch_names()[0]
    assert row.submit_state == SUBMITTED


def test_create_refused_deletes_the_upload(emulator: Emulator, workdir: Path, run_cli) -> None:
    write_input(workdir, "a.jsonl", 2)
    write_input(workdir, "b.jsonl", 2)
    emulator.faults.fail_next("batches.create", 400, message="Invalid model")
    result = submit(emulator, "batch/a.jsonl", "batch/b.jsonl", run_cli=run_cli)
    assert result.exit_code == 1
    assert "create failed" in result.output and "Invalid model" in result.output
    # The other file still went through (one failure never stops the rest).
    assert len(emulator.batch_names()) == 1
    first, second = jobs(workdir)
    assert first.submit_state == FAILED and first.batch_name is None
    assert first.cleaned_at is not None
    assert second.submit_state == SUBMITTED
    assert emulator.file_names() == [second.uploaded_file_name]
    assert "submit_failed" in event_kinds(workdir, first.id)
    # A failed submit does not count as submitted: the next run sends it.
    again = submit(emulator, "batch/a.jsonl", run_cli=run_cli)
    assert again.exit_code == 0 and "1 submitted, 0 skipped" in again.output


def test_rate_limited_create_backs_off_and_checks_first(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    write_input(workdir, "a.jsonl", 2)
    emulator.faults.fail_next("batches.create", 429, count=2)
    result = submit(emulator, "batch/a.jsonl", run_cli=run_cli)
    assert result.exit_code == 0, result.output
    assert "rate limiting batch creation (429); backing off" in result.output
    assert emulator.count("batches.create", 429) == 2
    # Each retry came after a listing found nothing.
    assert emulator.count("batches.list") >= 2
    assert len(emulator.batch_names()) == 1
    assert [row.submit_state for row in jobs(workdir)] == [SUBMITTED]


def test_persistent_server_errors_give_up_cleanly(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    write_input(workdir, "a.jsonl", 2)
    emulator.faults.fail_next("batches.create", 503, count=5)
    result = submit(emulator, "batch/a.jsonl", "--retries", "1", run_cli=run_cli)
    assert result.exit_code == 1
    assert emulator.count("batches.create") == 2
    assert emulator.batch_names() == [] and emulator.file_names() == []
    assert [row.submit_state for row in jobs(workdir)] == [FAILED]


def _leftover_intent(
    emulator: Emulator, workdir: Path, *, create: bool, upload_recorded: bool = True
) -> int:
    """What a submit killed after uploading (and maybe after creating) leaves behind."""
    locations = resolve(workdir / "job-info.jsonl", None)
    store = open_store(locations.db_url)
    gemini = Gemini("test-key", base_url=emulator.base_url)
    try:
        submitter = Submitter(store, gemini, locations, SubmitOptions())
        [unit] = prepare(
            [(workdir / "batch" / "a.jsonl", "batch/a.jsonl")], locations, SubmitOptions()
        )
        recorded = submitter._recorded_intent(unit, multiple=False)
        assert isinstance(recorded, tuple)
        job_id, display_name, _ = recorded
        if upload_recorded:
            uploaded = submitter._upload(job_id, unit, display_name)
        else:  # killed after the upload was carried out, before it was recorded
            uploaded = gemini.upload_file(unit.path, display_name=display_name)
        if create:
            gemini.create_batch(
                model=submitter.model, src=uploaded or "", display_name=display_name
            )
        with store.transaction() as session:
            # The killed process's lease, as a dead holder on this host looks.
            session.execute(update(Job).values(lease_owner="elsewhere:1:x", lease_expires_at=None))
        return job_id
    finally:
        gemini.close()
        store.dispose()


def test_a_killed_submit_whose_batch_exists_is_adopted(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    write_input(workdir, "a.jsonl", 2)
    job_id = _leftover_intent(emulator, workdir, create=True)
    assert jobs(workdir)[0].submit_state == PENDING
    # Submitting the same file again settles the leftover first: no second batch.
    result = submit(emulator, "batch/a.jsonl", run_cli=run_cli)
    assert result.exit_code == 0, result.output
    assert "found after an interruption" in result.output
    assert "skipped: already submitted" in result.output
    [row] = jobs(workdir)
    assert row.id == job_id and row.submit_state == SUBMITTED
    assert [row.batch_name] == emulator.batch_names()
    assert emulator.count("batches.create") == 1


def test_a_killed_submit_without_batch_is_undone(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    write_input(workdir, "a.jsonl", 2)
    _leftover_intent(emulator, workdir, create=False)
    result = submit(emulator, run_cli=run_cli)
    assert result.exit_code == 0, result.output
    assert "nothing was created" in result.output
    assert "1 interrupted earlier and undone" in result.output
    assert [row.submit_state for row in jobs(workdir)] == [FAILED]
    assert emulator.file_names() == []
    assert emulator.batch_names() == []


def test_a_killed_submit_whose_upload_was_not_recorded_leaves_no_file(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    write_input(workdir, "a.jsonl", 2)
    _leftover_intent(emulator, workdir, create=False, upload_recorded=False)
    assert len(emulator.file_names()) == 1
    result = submit(emulator, run_cli=run_cli)
    assert result.exit_code == 0, result.output
    assert "1 interrupted earlier and undone" in result.output
    assert emulator.file_names() == []


@pytest.mark.parametrize("endpoint", ["files.upload", "files.upload_data"])
def test_an_upload_stored_but_answered_with_a_hang_up_leaves_no_second_file(
    emulator: Emulator, workdir: Path, run_cli, endpoint: str
) -> None:
    # The service kept the first upload, the client never heard: the retry makes a
    # second file, and the first must not stay behind untracked (invariant 9).
    write_input(workdir, "a.jsonl", 2)
    emulator.faults.hang_up(endpoint, carried_out=True)
    result = submit(emulator, "batch/a.jsonl", run_cli=run_cli)
    assert result.exit_code == 0, result.output
    held = {row.uploaded_file_name for row in jobs(workdir)}
    assert set(emulator.file_names()) == held and len(held) == 1


def _uploads(emulator: Emulator) -> list[str]:
    # Result files of finished batches are the service's, not uploads.
    return [name for name in emulator.file_names() if not name.startswith("files/batch-")]


def test_a_stray_upload_a_run_could_not_sweep_goes_with_the_next_run(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    write_input(workdir, "a.jsonl", 2)
    emulator.faults.hang_up("files.upload_data", carried_out=True)
    emulator.faults.fail_next("files.list", 500, count=20)  # this run cannot look
    first = submit(emulator, "batch/a.jsonl", "--retries", "1", run_cli=run_cli)
    assert first.exit_code == 0, first.output
    assert len(_uploads(emulator)) == 2
    emulator.faults.clear()
    again = submit(emulator, "batch/a.jsonl", run_cli=run_cli)
    assert "skipped" in again.output
    held = {row.uploaded_file_name for row in jobs(workdir)}
    assert set(_uploads(emulator)) == held and len(held) == 1


def test_an_intent_held_by_a_live_submit_is_left_alone(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    write_input(workdir, "a.jsonl", 2)
    _leftover_intent(emulator, workdir, create=False)
    store = open_store(sqlite_url(workdir / "gembatch.db"))
    with store.transaction() as session:
        session.execute(update(Job).values(lease_owner=None))
        session.execute(update(Job).values(lease_owner="otherhost:1:x"))
        from gembatch.common.timeutil import now

        session.execute(update(Job).values(lease_expires_at=now().replace(year=2999)))
    store.dispose()
    result = submit(emulator, "batch/a.jsonl", run_cli=run_cli)
    assert "being submitted right now" in result.output
    assert [row.submit_state for row in jobs(workdir)] == [PENDING]
    assert len(emulator.file_names()) == 1


def test_duplicate_batches_from_one_intent_leave_one(emulator: Emulator, workdir: Path) -> None:
    """If a create ever ran twice under one display name, one batch stays; the other is
    tracked, cancelled and deleted (the input is paid for once)."""
    write_input(workdir, "a.jsonl", 2)
    _leftover_intent(emulator, workdir, create=True)
    name = jobs(workdir)[0].display_name or ""
    client = Gemini("test-key", base_url=emulator.base_url)
    locations = resolve(workdir / "job-info.jsonl", None)
    store = open_store(locations.db_url)
    try:
        uploaded = jobs(workdir)[0].uploaded_file_name or ""
        client.create_batch(model="models/gemini-2.5-flash", src=uploaded, display_name=name)
        outcomes = Submitter(store, client, locations, SubmitOptions()).reconcile_leftovers()
    finally:
        client.close()
        store.dispose()
    assert "1 duplicate batch(es) cancelled and deleted" in outcomes[0].message
    assert_one_batch_per_input(emulator, workdir)


def assert_one_batch_per_input(emulator: Emulator, workdir: Path) -> None:
    """Exactly one live batch per submitted input, tracked; every batch ever made tracked."""
    rows = jobs(workdir)
    alive = emulator.batch_names()
    kept = [row for row in rows if row.submit_state == SUBMITTED]
    assert sorted(row.batch_name or "" for row in kept) == sorted(alive)
    assert len({row.input_file for row in kept}) == len(kept)
    tracked = {row.batch_name for row in rows}
    made = emulator.created_batches()
    assert {batch.name for batch in made} <= tracked
    for row in rows:
        if row.batch_name and row.submit_state != SUBMITTED:
            assert row.state == states.CANCELLED and row.cleaned_at is not None
            assert row.batch_name not in alive


def test_a_submit_whose_intent_was_taken_over_never_creates_again(
    emulator: Emulator, workdir: Path
) -> None:
    # A submit that stalled past its intent's lease (long back-offs) while another
    # took the intent over must not create after all: the input would be paid twice.
    import sqlite3

    write_input(workdir, "a.jsonl", 2)
    locations = resolve(workdir / "job-info.jsonl", None)

    def steal(record) -> None:  # type: ignore[no-untyped-def]
        if record.endpoint == "batches.create":
            with sqlite3.connect(workdir / "gembatch.db") as conn:
                conn.execute(
                    "update jobs set lease_owner = 'elsewhere:1:-:x',"
                    " lease_expires_at = '2999-01-01 00:00:00.000000'"
                )

    emulator.faults.fail_next("batches.create", 500, count=1)
    emulator.on_request(steal)
    store = open_store(locations.db_url)
    gemini = Gemini("test-key", base_url=emulator.base_url, retry=RetryPolicy(1))
    try:
        submitter = Submitter(store, gemini, locations, SubmitOptions())
        units = prepare(
            [(workdir / "batch" / "a.jsonl", "batch/a.jsonl")], locations, SubmitOptions()
        )
        [outcome] = [submitter.submit_unit(unit) for unit in units]
    finally:
        emulator.on_request(None)
        gemini.close()
        store.dispose()
    assert "took this input over" in outcome.message
    assert emulator.count("batches.create") == 1
    assert emulator.batch_names() == []


class ListingLag:
    """The listing (and a get) does not show a batch for a while: a create answered with
    an error hides the batch it made until :meth:`catch_up`. Until the emulator models
    listing lag itself, the test reaches into its registry."""

    def __init__(self, emulator: Emulator, status: int | None = 500) -> None:
        self.emulator = emulator
        self.status = status
        self.hidden: list[object] = []
        emulator.on_request(self._seen)

    def _seen(self, record) -> None:  # type: ignore[no-untyped-def]
        if record.endpoint == "batches.create" and record.status == self.status:
            self.hide_newest()

    def hide_newest(self) -> None:
        registry = self.emulator.store.registry
        with registry.lock:
            newest = max(registry.batches.by_id.values(), key=lambda r: r.seq)
            registry.batches.remove(newest)
        self.hidden.append(newest)

    def catch_up(self) -> None:
        """Listed again, still running (a listing lags seconds, a batch runs for minutes)."""
        self.emulator.on_request(None)
        registry = self.emulator.store.registry
        with registry.lock:
            for record in self.hidden:
                record.seq = registry.next_seq()  # listed as newest: order is not the point
                registry.batches.add(record)
                self.emulator.set_state(record.name, "RUNNING")  # type: ignore[attr-defined]
        self.hidden.clear()


def test_a_create_the_listing_does_not_show_yet_is_cancelled_later(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    write_input(workdir, "a.jsonl", 2)
    lag = ListingLag(emulator)
    emulator.faults.fail_after("batches.create", 500)
    result = submit(emulator, "batch/a.jsonl", "--retries", "2", run_cli=run_cli)
    assert result.exit_code == 0, result.output
    # The listing showed nothing, so the create was tried again: two batches exist.
    assert emulator.count("batches.create") == 2 and len(lag.hidden) == 1
    lag.catch_up()
    again = submit(emulator, run_cli=run_cli)
    assert again.exit_code == 0, again.output
    assert "1 duplicate batch(es) cancelled and deleted" in again.output
    assert len(emulator.created_batches()) == 2
    assert_one_batch_per_input(emulator, workdir)
    # Settled: a later run has nothing more to do.
    assert "duplicate" not in submit(emulator, run_cli=run_cli).output


def test_a_killed_submit_whose_batch_is_not_listed_yet(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    """Settled as "nothing was created"; when the batch shows up, it is cancelled and
    deleted, and the input submitted again has one batch."""
    write_input(workdir, "a.jsonl", 2)
    _leftover_intent(emulator, workdir, create=True)
    lag = ListingLag(emulator, status=None)
    lag.hide_newest()
    result = submit(emulator, "batch/a.jsonl", run_cli=run_cli)
    assert result.exit_code == 0, result.output
    assert "nothing was created" in result.output and "1 submitted" in result.output
    lag.catch_up()
    again = submit(emulator, "batch/a.jsonl", run_cli=run_cli)
    assert again.exit_code == 0, again.output
    assert "1 duplicate batch(es) cancelled and deleted" in again.output
    assert "skipped: already submitted" in again.output
    assert_one_batch_per_input(emulator, workdir)


# --------------------------------------------------------------------------- size, inline


def test_too_large_is_refused_or_split(emulator: Emulator, workdir: Path, run_cli) -> None:
    path = write_input(workdir, "big.jsonl", 7)
    limit = str(path.stat().st_size // 3)
    refused = submit(emulator, "batch/big.jsonl", "--max-bytes", limit, run_cli=run_cli)
    assert refused.exit_code == 2
    assert "rerun with --split to submit it as" in refused.output
    assert emulator.count() == 0

    split = submit(emulator, "batch/big.jsonl", "--max-bytes", limit, "--split", run_cli=run_cli)
    assert split.exit_code == 0, split.output
    parts = sorted((workdir / "batch").glob("big.part-*.jsonl"))
    assert [p.name for p in parts][:2] == ["big.part-001.jsonl", "big.part-002.jsonl"]
    assert b"".join(p.read_bytes() for p in parts) == path.read_bytes()
    assert all(p.stat().st_size <= int(limit) for p in parts)
    rows = jobs(workdir)
    assert [row.input_file for row in rows] == [f"batch/{p.name}" for p in parts]
    assert sum(row.request_count or 0 for row in rows) == 7
    # Splitting again gives the same parts, already submitted.
    again = submit(emulator, "batch/big.jsonl", "--max-bytes", limit, "--split", run_cli=run_cli)
    assert f"0 submitted, {len(parts)} skipped" in again.output

    assert poll(emulator, run_cli=run_cli).exit_code == 0
    keys = [
        json.loads(line)["key"]
        for p in parts
        for line in (workdir / "batch" / "results" / p.name).read_text().splitlines()
    ]
    assert keys == [f"req-0-{n}" for n in range(7)]


def test_inline_submit(emulator: Emulator, workdir: Path, run_cli) -> None:
    write_input(workdir, "small.jsonl", 3)
    result = submit(emulator, "batch/small.jsonl", "--inline", run_cli=run_cli)
    assert result.exit_code == 0, result.output
    assert emulator.count("files.upload") == 0
    [row] = jobs(workdir)
    assert row.uploaded_file_name is None and row.batch_name
    assert poll(emulator, run_cli=run_cli).exit_code == 0
    out = workdir / "batch" / "results" / "small.jsonl"
    assert [json.loads(line)["key"] for line in out.read_text().splitlines()] == [
        f"req-0-{n}" for n in range(3)
    ]


def test_display_name_is_unique_and_readable() -> None:
    assert make_display_name(None, "batch/1.jsonl", "abc") == "gembatch:batch/1.jsonl:abc"
    assert make_display_name("mine", None, "abc") == "mine:abc"
    long = make_display_name(None, "d/" * 100 + "file.jsonl", "abc")
    assert len(long) <= 128 and long.endswith("file.jsonl:abc")


def test_no_api_key_is_bad_usage(workdir: Path, run_cli) -> None:
    write_input(workdir, "a.jsonl", 1)
    result = run_cli("submit", "batch/a.jsonl")
    assert result.exit_code == 2
    assert "no API key" in result.output


# --------------------------------------------------------------------------- concurrency


def submit_process(emulator: Emulator, workdir: Path, db_url: str, *files: str):  # type: ignore[no-untyped-def]
    """The real `gembatch submit` in its own process."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "GEMINI_API_KEY": "test-key", "GEMBATCH_DB": db_url}
    env.pop("GOOGLE_API_KEY", None)
    command = [sys.executable, "-m", "gembatch", "submit", "--base-url", emulator.base_url]
    return subprocess.Popen(
        [*command, *files], cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _waiting_backends(conn, own_pid: int) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    query = text("select count(distinct pid) from pg_locks where not granted and pid <> :me")
    return int(conn.execute(query, {"me": own_pid}).scalar_one())


def test_two_submits_of_one_file_at_once_on_postgresql_make_one_batch(
    emulator: Emulator, workdir: Path, pg_schema_url: str
) -> None:
    """Both processes are held just past the "already submitted?" check (the jobs table
    is locked against inserts until both wait), so without the intent lock both go ahead."""
    import time

    from sqlalchemy import create_engine, text

    open_store(pg_schema_url).dispose()  # migrated up front, outside the race
    holder = create_engine(pg_schema_url)
    try:
        for round_ in range(3):
            name = f"race-{round_}.jsonl"
            write_input(workdir, name, 2, round_)
            before = emulator.count("batches.create")
            with holder.connect() as conn:
                own_pid = int(conn.execute(text("select pg_backend_pid()")).scalar_one())
                conn.execute(text("LOCK TABLE jobs IN EXCLUSIVE MODE"))
                processes = [
                    submit_process(emulator, workdir, pg_schema_url, f"batch/{name}")
                    for _ in range(2)
                ]
                deadline = time.monotonic() + 60
                while _waiting_backends(conn, own_pid) < 2:
                    assert time.monotonic() < deadline, "the submits never reached the check"
                    assert all(p.poll() is None for p in processes)
                    time.sleep(0.02)
                conn.commit()  # let both go on
            outputs = [p.communicate(timeout=60)[0].decode() for p in processes]
            assert [p.returncode for p in processes] == [0, 0], outputs
            assert emulator.count("batches.create") - before == 1, outputs
            assert sum("being submitted right now" in out for out in outputs) == 1, outputs
        assert len(emulator.batch_names()) == 3
    finally:
        holder.dispose()
