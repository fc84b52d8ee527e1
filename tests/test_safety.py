"""Results are never lost: the poll engine and `gembatch cleanup` delete nothing early.

Each test drives the real CLI (or the real google-genai client) against the
emulator over HTTP; faults are the emulator's own, and what the server saw is
read from its request log.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jobfactory import MODEL, client_for, make_jobs
from jobfactory import event_rows as events
from jobfactory import job_rows as rows

from gembatch.common import states
from gembatch.common.locations import resolve
from gembatch.emulator import Emulator, RequestRecord, running_emulator
from gembatch.engine.poller import PollOptions
from gembatch.engine.progress import QuietReporter
from gembatch.engine.session import make_poller
from gembatch.remote.client import Gemini
from gembatch.remote.retry import RetryPolicy
from gembatch.store.database import open_store

KEY = {"GEMINI_API_KEY": "test-key"}


def poll(emulator: Emulator, *args: str, run_cli):  # type: ignore[no-untyped-def]
    return run_cli("poll", "--base-url", emulator.base_url, "--interval", "0.05", *args, env=KEY)


def cleanup(emulator: Emulator, *args: str, run_cli):  # type: ignore[no-untyped-def]
    return run_cli("cleanup", "--base-url", emulator.base_url, *args, env=KEY)


def omit_inline_payload(emulator: Emulator, name: str) -> list[dict[str, object]]:
    """Make the emulator answer this succeeded inline batch without its inlinedResponses
    (as a listing of the live service may). The emulator has no fault for it, so the
    test takes the payload out of the emulator's own record; returns it for putting back."""
    emulator.operation(name)  # settles the batch, so its payload exists
    record = emulator.store.get_batch(name)
    payload = record.inlined
    assert payload is not None
    record.inlined = None
    return payload


# ------------------------------------------------ 1. a "verified" mark outlives its step


@pytest.mark.parametrize("inline", [False, True], ids=["file", "inline"])
def test_batch_is_not_deleted_after_its_results_changed_between_cycles(
    emulator: Emulator, workdir: Path, run_cli, inline: bool
) -> None:
    (made,) = make_jobs(emulator, workdir, 1, inline=inline)
    emulator.finish_all()
    result_file = workdir / "batch" / "results" / "000.jsonl"
    seen: dict[str, object] = {}

    def listener(record: RequestRecord) -> None:
        if record.endpoint != "batches.delete":
            return
        if record.status == 500:
            # The delete failed; before the next cycle someone edits the results.
            seen["original"] = result_file.read_bytes()
            result_file.write_bytes(b'{"key": "edited"}\n')
        elif record.status == 200:
            seen["at_delete"] = result_file.read_bytes()

    emulator.on_request(listener)
    emulator.faults.fail_next("batches.delete", 500, count=1)
    result = poll(emulator, "--retries", "0", run_cli=run_cli)
    assert result.exit_code == 0, result.output
    assert emulator.count("batches.delete", 500) == 1
    assert made.batch_name not in emulator.batch_names()
    # The batch went only once the results were downloaded again, intact.
    assert seen["at_delete"] == seen["original"]
    assert result_file.read_bytes() == seen["original"]
    (row,) = rows(workdir)
    assert row.cleaned_at is not None


# ------------------------------------------------ 2. a failed download is not "no output"


def _failed_job_with_partial_output(emulator: Emulator, workdir: Path) -> tuple[str, str, bytes]:
    """A FAILED batch whose job-info names a result file holding partial output."""
    made, helper = make_jobs(emulator, workdir, 2, job_info="ignored.jsonl")
    emulator.set_state(made.batch_name, "FAILED")
    # The emulator keeps no partial output of a failed batch; a result file another
    # batch generated stands in for it (only generated files can be downloaded).
    emulator.set_state(helper.batch_name, "SUCCEEDED")
    result_name = emulator.result_file(helper.batch_name)
    result_path = emulator.result_path(helper.batch_name)
    assert result_name and result_path
    partial = result_path.read_bytes()
    line = {
        "input_file": made.input_file,
        "count": made.count,
        "uploaded_file_name": made.uploaded_file_name,
        "batch": {
            "name": made.batch_name,
            "display_name": made.input_file,
            "model": MODEL,
            "state": "JOB_STATE_FAILED",
            "dest": {"file_name": result_name},
        },
    }
    (workdir / "job-info.jsonl").write_text(json.dumps(line) + "\n")
    return made.batch_name, result_name, partial


def _assert_kept_and_recorded_as_error(
    emulator: Emulator, workdir: Path, batch: str, result_name: str, code: int
) -> None:
    assert emulator.count("batches.delete") == 0
    assert emulator.count("files.delete") == 0
    assert batch in emulator.batch_names()
    assert result_name in emulator.file_names()
    (row,) = rows(workdir)
    assert row.downloaded_at is None and row.cleaned_at is None
    assert row.last_error and f"files.download: {code}" in row.last_error


@pytest.mark.parametrize("code", [403, 404])
def test_failed_download_of_partial_output_is_an_error_not_no_output(
    emulator: Emulator, workdir: Path, run_cli, code: int
) -> None:
    batch, result_name, partial = _failed_job_with_partial_output(emulator, workdir)
    emulator.faults.fail_next("files.download", code, count=2)
    result = poll(emulator, "--retries", "0", "--max-errors", "2", run_cli=run_cli)
    assert result.exit_code == 1, result.output
    assert f"files.download: {code}" in result.output
    assert emulator.count("files.download", code) == 2  # retried by the next cycle
    _assert_kept_and_recorded_as_error(emulator, workdir, batch, result_name, code)

    # `cleanup --all` neither calls the never-downloaded result file saved nor deletes it.
    listed = cleanup(emulator, "--all", "-y", run_cli=run_cli)
    assert listed.exit_code == 0, listed.output
    assert "(saved)" not in listed.output
    assert result_name in emulator.file_names() and batch in emulator.batch_names()

    # Once the download works, the partial output is kept, and only then is it all deleted.
    again = poll(emulator, run_cli=run_cli)
    assert again.exit_code == 0, again.output
    (row,) = rows(workdir)
    assert row.cleaned_at is not None
    assert (workdir / (row.result_path or "missing")).read_bytes() == partial
    assert batch not in emulator.batch_names()
    final = cleanup(emulator, "--all", "-y", run_cli=run_cli)
    assert final.exit_code == 0, final.output
    assert "(saved)" in final.output
    assert result_name not in emulator.file_names()


def test_a_missing_file_answered_403_is_not_no_output(workdir: Path, run_cli) -> None:
    with running_emulator(missing_file_status=403) as emulator:
        batch, result_name, _ = _failed_job_with_partial_output(emulator, workdir)
        # The file is gone from the emulator's disk: the service answers 403 for it.
        client = client_for(emulator)
        client.files.delete(name=result_name)
        client.close()
        result = poll(emulator, "--retries", "0", "--max-errors", "2", run_cli=run_cli)
        assert result.exit_code == 1, result.output
        assert emulator.count("batches.delete") == 0
        (row,) = rows(workdir)
        assert row.downloaded_at is None and row.cleaned_at is None
        assert row.last_error and "403" in row.last_error
        assert batch in emulator.batch_names()


# ------------------------------------------------ 3. a refused delete stays pending


@pytest.mark.parametrize(
    ("endpoint", "code"),
    [("batches.delete", 400), ("batches.delete", 403), ("files.delete", 403)],
)
def test_a_refused_delete_is_retried_until_it_is_done(
    emulator: Emulator, workdir: Path, run_cli, endpoint: str, code: int
) -> None:
    (made,) = make_jobs(emulator, workdir, 1)
    emulator.finish_all()
    cleaned_in_first_cycle: list[bool] = []

    def listener(record: RequestRecord) -> None:
        if record.endpoint == endpoint and record.status == code:
            cleaned_in_first_cycle.append(True)

    emulator.on_request(listener)
    emulator.faults.fail_next(endpoint, code, count=1, message="refused")
    result = poll(emulator, "--retries", "0", run_cli=run_cli)
    assert result.exit_code == 0, result.output
    assert cleaned_in_first_cycle == [True]
    # The retry converged: both remote resources are gone, whichever failed first.
    assert made.batch_name not in emulator.batch_names()
    assert made.uploaded_file_name not in emulator.file_names()
    assert emulator.count("batches.delete", 200) == 1
    (row,) = rows(workdir)
    assert row.cleaned_at is not None
    errors = [e.message or "" for e in events(workdir, "error")]
    assert any(f"{code}" in message for message in errors), errors
    notes = " | ".join(e.message or "" for e in events(workdir, "cleaned_up"))
    assert "not deleted" not in notes
    listed = cleanup(emulator, "--all", "--dry-run", run_cli=run_cli)
    assert made.batch_name not in listed.output


def test_cleanup_command_keeps_a_job_whose_delete_was_refused(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    (made,) = make_jobs(emulator, workdir, 1)
    emulator.finish_all()
    assert poll(emulator, "--keep-remote", run_cli=run_cli).exit_code == 0
    emulator.faults.fail_next("files.delete", 403, count=1, message="refused")
    first = cleanup(emulator, "-y", run_cli=run_cli)
    assert "1 failed" in first.output, first.output
    (row,) = rows(workdir)
    assert row.cleaned_at is None and row.last_error and "403" in row.last_error
    assert made.uploaded_file_name in emulator.file_names()
    second = cleanup(emulator, "-y", run_cli=run_cli)
    assert second.exit_code == 0, second.output
    assert "0 failed" in second.output
    (row,) = rows(workdir)
    assert row.cleaned_at is not None
    assert made.uploaded_file_name not in emulator.file_names()
    assert made.batch_name not in emulator.batch_names()


# ------------------------------------------------ 4. --max-errors counts errors in a row


def test_occasional_errors_never_make_a_long_job_given_up(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    (made,) = make_jobs(emulator, workdir, 1)
    emulator.set_state(made.batch_name, "RUNNING")
    answered: list[int] = []

    def listener(record: RequestRecord) -> None:
        # Every other state check fails: never two in a row, five in all.
        if record.endpoint != "batches.get":
            return
        answered.append(record.status)
        if record.status == 200 and answered.count(500) < 5:
            emulator.faults.fail_next("batches.get", 500, count=1)
        elif record.status == 200:
            emulator.set_state(made.batch_name, "SUCCEEDED")

    emulator.on_request(listener)
    result = poll(emulator, "--retries", "0", "--max-errors", "2", run_cli=run_cli)
    assert result.exit_code == 0, result.output
    assert answered.count(500) == 5
    (row,) = rows(workdir)
    assert row.state == states.SUCCEEDED and row.cleaned_at is not None


def test_a_job_given_up_is_reported(emulator: Emulator, workdir: Path, run_cli) -> None:
    make_jobs(emulator, workdir, 1)
    emulator.finish_all()
    emulator.faults.fail_next("files.download", 500, count=10)
    result = poll(emulator, "--retries", "0", "--max-errors", "2", run_cli=run_cli)
    assert result.exit_code == 1
    assert "kept failing" in result.output


class Notes(QuietReporter):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)


def test_the_moment_a_job_is_given_up_is_reported(emulator: Emulator, workdir: Path) -> None:
    make_jobs(emulator, workdir, 1)
    emulator.finish_all()
    emulator.faults.fail_next("files.download", 500, count=10)
    locations = resolve(workdir / "job-info.jsonl", None)
    store = open_store(locations.db_url)
    gemini = Gemini("test-key", base_url=emulator.base_url, retry=RetryPolicy(1))
    reporter = Notes()
    try:
        poller = make_poller(store, gemini, locations, PollOptions(max_errors=2), reporter)
        # Until the poller hands its limit to the steps itself (see the report).
        poller.steps.max_errors = poller.options.max_errors
        summary = poller.run(interval=0.05)
    finally:
        gemini.close()
        store.dispose()
    assert len(summary.given_up) == 1
    (note,) = [n for n in reporter.notes if "errors in a row" in n]
    assert "batch/000.jsonl: 2 errors in a row" in note and "files.download: 500" in note


# ------------------------------------------------ 5. an inline answer without its payload


@pytest.mark.parametrize("payload", ["absent", "empty"])
def test_inline_results_missing_from_an_answer_are_never_written_empty(
    emulator: Emulator, workdir: Path, run_cli, payload: str
) -> None:
    (made,) = make_jobs(emulator, workdir, 1, inline=True)
    emulator.finish_all()
    assert poll(emulator, "--keep-remote", run_cli=run_cli).exit_code == 0
    (row,) = rows(workdir)
    result_file = workdir / (row.result_path or "missing")
    expected = result_file.read_bytes()
    result_file.unlink()  # to be downloaded again before anything is deleted
    saved = omit_inline_payload(emulator, made.batch_name)
    if payload == "empty":
        emulator.store.get_batch(made.batch_name).inlined = []
    # No grace: each answer without results is an error at once (the wait is below).
    result = poll(
        emulator, "--retries", "0", "--max-errors", "2", "--results-grace", "0", run_cli=run_cli
    )
    assert result.exit_code == 1, result.output
    assert made.batch_name in emulator.batch_names()
    assert not result_file.exists()
    (row,) = rows(workdir)
    assert row.downloaded_at is None and row.cleaned_at is None and row.last_error

    emulator.store.get_batch(made.batch_name).inlined = saved
    again = poll(emulator, run_cli=run_cli)
    assert again.exit_code == 0, again.output
    assert result_file.read_bytes() == expected
    assert made.batch_name not in emulator.batch_names()


def test_results_not_named_yet_are_waited_for_not_errors(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    """The service may say SUCCEEDED before it names the output: poll keeps asking,
    records no error, gives nothing up and deletes nothing; the results land once named."""
    (made,) = make_jobs(emulator, workdir, 1, inline=True)
    emulator.finish_all()
    saved = omit_inline_payload(emulator, made.batch_name)
    for _ in range(3):
        result = poll(emulator, "--once", "--max-errors", "1", run_cli=run_cli)
        assert result.exit_code == 0, result.output
        assert made.batch_name in emulator.batch_names()
        (row,) = rows(workdir)
        assert row.downloaded_at is None and row.cleaned_at is None
        assert row.last_error is None and row.error_count == 0
    assert "asking again every cycle" in result.output
    emulator.store.get_batch(made.batch_name).inlined = saved
    again = poll(emulator, run_cli=run_cli)
    assert again.exit_code == 0, again.output
    (row,) = rows(workdir)
    assert row.downloaded_at is not None and row.cleaned_at is not None
    assert made.batch_name not in emulator.batch_names()


def test_wire_keeps_absent_and_empty_inline_responses_apart() -> None:
    from gembatch.remote.wire import parse_operation

    def op(output: dict[str, object] | None) -> dict[str, object]:
        meta: dict[str, object] = {"state": "BATCH_STATE_SUCCEEDED"}
        if output is not None:
            meta["output"] = output
        return {"name": "batches/x", "metadata": meta}

    assert parse_operation(op(None)).inlined_responses is None
    assert parse_operation(op({"responsesFile": "files/y"})).inlined_responses is None
    # proto3 JSON leaves an empty repeated field out: the key is there, the list is not.
    assert parse_operation(op({"inlinedResponses": {}})).inlined_responses == []
    listed = parse_operation(op({"inlinedResponses": {"inlinedResponses": [{"a": 1}]}}))
    assert listed.inlined_responses == [{"a": 1}]


# ------------------------------------------------ 6. twins share one uploaded input


def _twins(emulator: Emulator, workdir: Path) -> tuple[str, str, str]:
    """Two batches made from one upload, both tracked, the second still running."""
    (first,) = make_jobs(emulator, workdir, 1)
    assert first.uploaded_file_name
    client = client_for(emulator)
    try:
        second = client.batches.create(
            model=MODEL, src=first.uploaded_file_name, config={"display_name": first.input_file}
        ).name
    finally:
        client.close()
    assert second
    twin = {
        "input_file": first.input_file,
        "count": first.count,
        "uploaded_file_name": first.uploaded_file_name,
        "batch": {"name": second, "model": MODEL, "state": "JOB_STATE_PENDING"},
    }
    with open(workdir / "job-info.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(twin) + "\n")
    emulator.set_state(second, "RUNNING")
    emulator.set_state(first.batch_name, "SUCCEEDED")
    return first.batch_name, second, first.uploaded_file_name


def test_poll_keeps_an_input_a_running_twin_still_uses(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    first, second, upload = _twins(emulator, workdir)
    result = poll(emulator, "--once", run_cli=run_cli)
    assert result.exit_code == 0, result.output
    assert first not in emulator.batch_names()
    assert upload in emulator.file_names()
    by_name = {row.batch_name: row for row in rows(workdir)}
    assert by_name[first].cleaned_at is not None
    # The last twin to finish deletes it.
    emulator.set_state(second, "SUCCEEDED")
    assert poll(emulator, run_cli=run_cli).exit_code == 0
    assert upload not in emulator.file_names()
    assert all(row.cleaned_at is not None for row in rows(workdir))


def test_cleanup_keeps_an_input_a_running_twin_still_uses(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    first, second, upload = _twins(emulator, workdir)
    assert poll(emulator, "--once", "--keep-remote", run_cli=run_cli).exit_code == 0
    done = cleanup(emulator, "-y", run_cli=run_cli)
    assert done.exit_code == 0, done.output
    assert first not in emulator.batch_names()
    assert upload in emulator.file_names()
    emulator.set_state(second, "SUCCEEDED")
    assert poll(emulator, "--keep-remote", run_cli=run_cli).exit_code == 0
    assert cleanup(emulator, "-y", run_cli=run_cli).exit_code == 0
    assert upload not in emulator.file_names()
    assert all(row.cleaned_at is not None for row in rows(workdir))
