"""`gembatch cancel` through the real CLI and SDK against the emulator."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from test_submit import KEY, jobs, write_input

from gembatch.common import states
from gembatch.common.locations import sqlite_url
from gembatch.emulator import Emulator
from gembatch.store.database import open_store
from gembatch.store.models import Event


def cancel(emulator: Emulator, *args: str, run_cli):  # type: ignore[no-untyped-def]
    return run_cli("cancel", "--base-url", emulator.base_url, *args, env=KEY)


def submitted(emulator: Emulator, workdir: Path, run_cli, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    names = [f"batch/{i:03d}.jsonl" for i in range(n)]
    for i in range(n):
        write_input(workdir, f"{i:03d}.jsonl", 2, i)
    result = run_cli("submit", "--base-url", emulator.base_url, *names, env=KEY)
    assert result.exit_code == 0, result.output
    for name in emulator.batch_names():
        emulator.set_state(name, "RUNNING")  # held running until cancelled
    return names


def test_cancel_by_path_batch_name_and_id(emulator: Emulator, workdir: Path, run_cli) -> None:
    submitted(emulator, workdir, run_cli, 4)
    rows = jobs(workdir)
    result = cancel(
        emulator,
        "batch/000.jsonl",
        rows[1].batch_name or "",
        str(rows[2].id),
        run_cli=run_cli,
    )
    assert result.exit_code == 0, result.output
    assert "done: 3 cancelled or cancelling, 0 failed" in result.output
    after = jobs(workdir)
    assert [row.state for row in after] == [states.CANCELLED] * 3 + [states.PENDING]
    assert all(row.cancel_requested_at is not None for row in after[:3])
    assert after[3].cancel_requested_at is None
    assert [emulator.state_of(row.batch_name or "") for row in after] == ["CANCELLED"] * 3 + [
        "RUNNING"
    ]
    store = open_store(sqlite_url(workdir / "gembatch.db"))
    with store.reading() as session:
        kinds = list(session.scalars(select(Event.kind).where(Event.job_id == after[0].id)))
    store.dispose()
    assert "cancel_requested" in kinds and "state_change" in kinds

    # Already finished: nothing asked of the API.
    emulator.reset_stats()
    again = cancel(emulator, "batch/000.jsonl", run_cli=run_cli)
    assert again.exit_code == 0 and "already cancelled" in again.output
    assert emulator.count("batches.cancel") == 0


def test_cancel_all(emulator: Emulator, workdir: Path, run_cli) -> None:
    submitted(emulator, workdir, run_cli, 3)
    first = jobs(workdir)[0].batch_name or ""
    emulator.set_state(first, "SUCCEEDED")
    # The database still thinks it runs: cancel asks, then records what the API says.
    result = cancel(emulator, "--all", run_cli=run_cli)
    assert result.exit_code == 0, result.output
    assert [row.state for row in jobs(workdir)] == [
        states.SUCCEEDED,
        states.CANCELLED,
        states.CANCELLED,
    ]
    assert "finished as succeeded before the cancel" in result.output
    nothing = cancel(emulator, "--all", run_cli=run_cli)
    assert nothing.exit_code == 0 and "nothing to cancel" in nothing.output


def test_unknown_job_is_bad_input_and_cancels_nothing(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    submitted(emulator, workdir, run_cli, 2)
    result = cancel(emulator, "batch/000.jsonl", "batch/nope.jsonl", run_cli=run_cli)
    assert result.exit_code == 2
    assert "no such job: batch/nope.jsonl" in result.output
    assert emulator.count("batches.cancel") == 0
    assert cancel(emulator, run_cli=run_cli).exit_code == 2


def test_a_batch_gone_remotely_is_an_error_on_that_job_only(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    submitted(emulator, workdir, run_cli, 2)
    rows = jobs(workdir)
    emulator.store.delete_batch(rows[0].batch_name or "")
    result = cancel(emulator, "--all", run_cli=run_cli)
    assert result.exit_code == 1
    assert "no longer exists remotely" in result.output
    after = jobs(workdir)
    assert after[0].error_count == 1 and after[1].state == states.CANCELLED
