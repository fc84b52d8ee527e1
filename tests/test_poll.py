"""`gembatch poll` end to end: the real CLI, the real SDK, the emulator over HTTP."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from jobfactory import client_for, json_line, make_jobs, poll_process
from jobfactory import event_rows as events
from jobfactory import job_rows as jobs

from gembatch.common import states
from gembatch.emulator import Emulator
from gembatch.emulator.config import OutcomeRule


def poll(emulator: Emulator, *args: str, run_cli) -> object:  # type: ignore[no-untyped-def]
    return run_cli(
        "poll",
        "--base-url",
        emulator.base_url,
        "--interval",
        "0.2",
        *args,
        env={"GEMINI_API_KEY": "test-key"},
    )


def test_full_lifecycle_with_mixed_outcomes(emulator: Emulator, workdir: Path, run_cli) -> None:
    emulator.add_rule(OutcomeRule(outcome="FAILED", index=1, message="input rejected"))
    emulator.add_rule(OutcomeRule(outcome="CANCELLED", index=2))
    emulator.add_rule(OutcomeRule(outcome="EXPIRED", index=3))
    emulator.add_rule(OutcomeRule(outcome="SUCCEEDED", index=4, request_error_rate=1.0))
    made = make_jobs(emulator, workdir, 6)
    expected = {}
    result = poll(emulator, run_cli=run_cli)
    assert result.exit_code == 0, result.output
    # Job 4 "succeeded" with every request failed: a failure to the user.
    assert (
        "2 succeeded, 2 failed (1 succeeded with every request failed), 1 cancelled, 1 expired"
        in result.output
    )

    rows = {row.batch_name: row for row in jobs(workdir)}
    assert [rows[m.batch_name].state for m in made] == [
        states.SUCCEEDED,
        states.FAILED,
        states.CANCELLED,
        states.EXPIRED,
        states.SUCCEEDED,
        states.SUCCEEDED,
    ]
    for index in (0, 4, 5):
        item = made[index]
        path = workdir / "batch" / "results" / Path(item.input_file).name
        row = rows[item.batch_name]
        assert row.result_path == f"batch/results/{path.name}"  # relative to job-info
        assert row.result_size == path.stat().st_size
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert sorted(line["key"] for line in lines) == [f"req-{index}-{n}" for n in range(3)]
        expected[item.batch_name] = path.read_bytes()
    errors_file = workdir / "batch" / "results" / "004.jsonl"
    assert all("error" in json.loads(line) for line in errors_file.read_text().splitlines())
    assert rows[made[1].batch_name].remote_error and "input rejected" in (
        rows[made[1].batch_name].remote_error or ""
    )
    # Everything finished is cleaned up remotely: batches and uploaded inputs.
    assert all(row.cleaned_at is not None for row in rows.values())
    assert emulator.count("batches.delete", 200) == 6
    assert emulator.count("files.delete", 200) == 6
    assert emulator.count("files.download", 200) == 3
    # job-info.jsonl was exported with the final states.
    exported = [json.loads(line) for line in (workdir / "job-info.jsonl").read_text().splitlines()]
    assert {line["batch"]["name"]: line["batch"]["state"] for line in exported} == {
        name: row.state for name, row in rows.items()
    }
    # A second run finds nothing to do and makes no API call.
    emulator.reset_stats()
    again = poll(emulator, run_cli=run_cli)
    assert again.exit_code == 0
    assert emulator.count() == 0


def test_a_running_job_is_never_deleted(emulator: Emulator, workdir: Path, run_cli) -> None:
    made = make_jobs(emulator, workdir, 3)
    for item in made:
        emulator.set_state(item.batch_name, "RUNNING")
    result = poll(emulator, "--once", run_cli=run_cli)
    assert result.exit_code == 0, result.output
    assert emulator.count("batches.delete") == 0
    assert emulator.count("files.delete") == 0
    assert emulator.count("files.download") == 0
    assert all(row.state == states.RUNNING for row in jobs(workdir))
    assert sorted(emulator.batch_names()) == sorted(m.batch_name for m in made)


def test_a_rerun_picks_up_where_the_last_one_stopped(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    made = make_jobs(emulator, workdir, 2)
    for item in made:
        emulator.set_state(item.batch_name, "RUNNING")
    assert poll(emulator, "--once", run_cli=run_cli).exit_code == 0
    emulator.set_state(made[0].batch_name, "SUCCEEDED")
    assert poll(emulator, "--once", run_cli=run_cli).exit_code == 0
    first, second = jobs(workdir)
    assert first.cleaned_at is not None and second.state == states.RUNNING
    emulator.reset_stats()
    emulator.set_state(made[1].batch_name, "SUCCEEDED")
    assert poll(emulator, run_cli=run_cli).exit_code == 0
    # Only the unfinished job was touched: one get (or list), one download, two deletes.
    assert emulator.count("files.download") == 1
    assert emulator.count("batches.delete") == 1
    assert all(row.cleaned_at for row in jobs(workdir))


def test_inline_batches_write_results_keyed_as_in_the_input(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    made = make_jobs(emulator, workdir, 2, requests=4, inline=True)
    result = poll(emulator, run_cli=run_cli)
    assert result.exit_code == 0, result.output
    for index, item in enumerate(made):
        path = workdir / "batch" / "results" / Path(item.input_file).name
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert [line["key"] for line in lines] == [f"req-{index}-{n}" for n in range(4)]
        assert all("response" in line for line in lines)
    rows = jobs(workdir)
    assert all(row.dest_inline and row.cleaned_at for row in rows)
    assert emulator.count("batches.delete", 200) == 2


def test_failed_download_is_retried_later_and_never_followed_by_delete(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    made = make_jobs(emulator, workdir, 1)
    emulator.finish_all()
    expected = emulator_result(emulator, made[0].batch_name)
    emulator.faults.drop_download(after_bytes=10, count=100)
    result = poll(emulator, "--once", "--retries", "2", run_cli=run_cli)
    assert result.exit_code == 1  # a job failed: something to look at
    (row,) = jobs(workdir)
    assert row.downloaded_at is None and row.cleaned_at is None
    assert row.last_error and row.error_count == 1
    assert emulator.count("batches.delete") == 0
    assert emulator.count("files.delete") == 0
    assert not (workdir / "batch" / "results" / "000.jsonl").exists()
    assert list((workdir / "batch" / "results").glob("*")) == []  # no temp left behind
    emulator.faults.clear()
    result = poll(emulator, run_cli=run_cli)
    assert result.exit_code == 0
    (row,) = jobs(workdir)
    assert row.cleaned_at is not None and row.last_error is None
    assert Path(row.result_path or "").read_bytes() == expected
    assert emulator.count("files.download") == 4  # 3 dropped attempts, then one whole


def emulator_result(emulator: Emulator, name: str) -> bytes:
    path = emulator.result_path(name)
    assert path is not None
    return path.read_bytes()


def test_cleanup_404_is_recorded_and_does_not_block(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    made = make_jobs(emulator, workdir, 2)
    emulator.finish_all()
    client = client_for(emulator)
    client.files.delete(name=made[0].uploaded_file_name)  # someone else removed it
    client.close()
    emulator.faults.fail_next("batches.delete", 400, count=1, message="name too long")
    result = poll(emulator, run_cli=run_cli)
    assert result.exit_code == 0, result.output
    assert all(row.cleaned_at is not None for row in jobs(workdir))
    notes = " | ".join(e.message or "" for e in events(workdir, "cleaned_up"))
    assert "already gone" in notes and "not deleted" not in notes
    # The refused delete was an error on its job, retried by the next cycle.
    assert any("400" in (e.message or "") for e in events(workdir, "error"))
    assert emulator.batch_names() == []


def test_transient_faults_with_latency_still_complete_every_job(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    made = make_jobs(emulator, workdir, 12)
    emulator.finish_all()
    emulator.faults.configure(rate=0.2, codes=(429, 500, 503), latency_s=0.05)
    result = poll(emulator, run_cli=run_cli)
    assert result.exit_code == 0, result.output
    assert emulator.count(status=429) + emulator.count(status=500) + emulator.count(status=503) > 0
    emulator.faults.clear()
    rows = {row.batch_name: row for row in jobs(workdir)}
    for item in made:
        row = rows[item.batch_name]
        assert row.cleaned_at is not None
        # Compare with what the emulator keeps on disk (its copy outlives the delete).
        assert row.result_sha256 is not None
        assert Path(row.result_path or "").stat().st_size == row.result_size


def test_missing_api_key_is_a_one_line_error(emulator: Emulator, workdir: Path, run_cli) -> None:
    make_jobs(emulator, workdir, 1)
    result = run_cli("poll", "--base-url", emulator.base_url, "--once")
    assert result.exit_code == 2
    assert "GEMINI_API_KEY" in result.output
    assert "Traceback" not in result.output


def test_results_deleted_from_disk_are_downloaded_again_before_cleanup(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    made = make_jobs(emulator, workdir, 1)
    emulator.finish_all()
    expected = emulator_result(emulator, made[0].batch_name)
    result = poll(emulator, "--keep-remote", run_cli=run_cli)
    assert result.exit_code == 0
    (row,) = jobs(workdir)
    assert row.cleaned_at is None
    Path(row.result_path or "").unlink()
    result = poll(emulator, run_cli=run_cli)
    assert result.exit_code == 0, result.output
    (row,) = jobs(workdir)
    assert Path(row.result_path or "").read_bytes() == expected
    assert row.cleaned_at is not None


# ---------------------------------------------------------------- subprocess tests


def _poll_process(emulator: Emulator, workdir: Path, *args: str) -> subprocess.Popen[str]:
    return poll_process(
        emulator, workdir, *args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.slow
def test_two_pollers_never_download_or_delete_twice(emulator: Emulator, workdir: Path) -> None:
    made = make_jobs(emulator, workdir, 50, requests=2)
    emulator.faults.configure(latency_s=0.02)
    emulator.finish_all()
    first = _poll_process(emulator, workdir, "--concurrency", "4")
    second = _poll_process(emulator, workdir, "--concurrency", "4")
    out1, _ = first.communicate(timeout=240)
    out2, _ = second.communicate(timeout=240)
    assert first.returncode == 0, out1
    assert second.returncode == 0, out2
    assert emulator.count("files.download", 200) == 50
    assert emulator.count("batches.delete", 200) == 50
    assert emulator.count("files.delete", 200) == 50
    assert emulator.count("batches.delete", 404) == 0
    rows = jobs(workdir)
    assert len(rows) == 50 and all(row.cleaned_at for row in rows)
    assert {row.batch_name for row in rows} == {m.batch_name for m in made}


def _written(out: str) -> int:
    match = re.search(r"(\d+) result files written this run", out)
    assert match, out
    return int(match.group(1))


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_two_pollers_share_the_work_and_none_is_done_twice(
    emulator: Emulator,
    workdir: Path,
    backend: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pollers claim a pool's worth of jobs at a time, so a second poller on the
    same database takes a share instead of waiting for the first to do them all."""
    if backend == "postgresql":
        monkeypatch.setenv("GEMBATCH_DB", request.getfixturevalue("pg_schema_url"))
    make_jobs(emulator, workdir, 40, requests=2)
    emulator.finish_all()
    # Slow answers: one poller alone would need seconds, so the second one starts in time.
    emulator.faults.configure(latency_s=0.1)
    pollers = [
        poll_process(
            emulator,
            workdir,
            "--concurrency",
            "4",
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [process.communicate(timeout=240)[0] for process in pollers]
    for process, out in zip(pollers, outs, strict=True):
        assert process.returncode == 0, out
    written = [_written(out) for out in outs]
    assert sum(written) == 40, outs
    assert min(written) >= 5, written
    assert emulator.count("files.download", 200) == 40
    assert emulator.count("batches.delete", 200) == 40
    assert emulator.count("batches.delete", 404) == 0
    assert emulator.count("files.delete", 200) == 40


@pytest.mark.slow
def test_line_appended_during_a_poll_survives(emulator: Emulator, workdir: Path) -> None:
    first = make_jobs(emulator, workdir, 2)
    for item in first:
        emulator.set_state(item.batch_name, "RUNNING")
    process = _poll_process(emulator, workdir)
    try:
        deadline = time.monotonic() + 30
        while not (workdir / "gembatch.db").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # a few cycles, with exports, have run
        # Another program appends a job while the poller keeps exporting the file.
        extra = make_jobs(emulator, workdir, 1, start=7, job_info="other.jsonl")
        with open(workdir / "job-info.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json_line(extra[0]) + "\n")
        time.sleep(0.6)
        for item in first:
            emulator.set_state(item.batch_name, "SUCCEEDED")
        out, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, out
    lines = (workdir / "job-info.jsonl").read_text().splitlines()
    names = {json.loads(line)["batch"]["name"] for line in lines}
    assert extra[0].batch_name in names
    assert {row.batch_name for row in jobs(workdir)} >= {extra[0].batch_name}
    assert all(row.cleaned_at for row in jobs(workdir))


def test_ctrl_c_exits_130_and_says_how_to_resume(emulator: Emulator, workdir: Path) -> None:
    made = make_jobs(emulator, workdir, 2)
    for item in made:
        emulator.set_state(item.batch_name, "RUNNING")
    emulator.reset_stats()
    process = _poll_process(emulator, workdir, "--interval", "30")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and emulator.count("batches.*") < 1:
            time.sleep(0.05)
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, out
    assert "gembatch poll" in out and "resume" in out
    assert "Traceback" not in out


def test_api_key_reaches_no_file_and_no_output(emulator: Emulator, workdir: Path, run_cli) -> None:
    secret = "AIzaSy-very-secret-key-0042"
    make_jobs(emulator, workdir, 3)
    emulator.finish_all()
    emulator.faults.fail_next("batches.get", 400, count=1, message="bad request")
    emulator.faults.drop_download(after_bytes=5, count=2)
    result = run_cli(
        "--debug",
        "poll",
        "--base-url",
        emulator.base_url,
        "--interval",
        "0.1",
        "--retries",
        "0",
        env={"GEMINI_API_KEY": secret},
    )
    assert result.exit_code == 0, result.output
    assert "error" in result.output  # the faults were reported...
    assert secret not in result.output  # ...without the key
    for path in workdir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert all(secret not in (r.path + r.method) for r in emulator.stats().recent)


def test_bad_job_info_line_is_reported_and_kept_aside(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    made = make_jobs(emulator, workdir, 1)
    emulator.finish_all()
    with open(workdir / "job-info.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"input_file": "x.jsonl", "batch": {"name": "batches/cut\n')
    result = poll(emulator, run_cli=run_cli)
    assert result.exit_code == 0, result.output
    assert "job-info.jsonl:2: not JSON" in result.output
    assert "moved from job-info.jsonl" in result.output
    lines = (workdir / "job-info.jsonl").read_text().splitlines()
    assert [json.loads(line)["batch"]["name"] for line in lines] == [made[0].batch_name]
    assert "batches/cut" in (workdir / "job-info.jsonl.rejected").read_text()


def test_two_jobs_of_one_input_never_overwrite_each_other(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    first = make_jobs(emulator, workdir, 1, requests=3)[0]
    second = make_jobs(emulator, workdir, 1, requests=5)[0]  # same batch/000.jsonl, new content
    emulator.finish_all()
    expected = {m.batch_name: emulator_result(emulator, m.batch_name) for m in (first, second)}
    result = poll(emulator, run_cli=run_cli)
    assert result.exit_code == 0, result.output
    rows = {row.batch_name: row for row in jobs(workdir)}
    paths = {name: workdir / (row.result_path or "") for name, row in rows.items()}
    assert len(set(paths.values())) == 2
    for name, path in paths.items():
        assert path.read_bytes() == expected[name]


def test_moved_workspace_keeps_old_results_when_a_new_job_lands(
    emulator: Emulator, tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "old"
    old.mkdir()
    monkeypatch.chdir(old)
    first = make_jobs(emulator, old, 1, requests=3)[0]
    emulator.finish_all()
    kept = emulator_result(emulator, first.batch_name)
    assert poll(emulator, run_cli=run_cli).exit_code == 0
    moved = tmp_path / "moved"
    old.rename(moved)
    monkeypatch.chdir(moved)
    second = make_jobs(emulator, moved, 1, requests=5)[0]
    emulator.finish_all()
    assert poll(emulator, run_cli=run_cli).exit_code == 0
    rows = {row.batch_name: row for row in jobs(moved)}
    assert (moved / (rows[first.batch_name].result_path or "")).read_bytes() == kept
    assert rows[second.batch_name].result_path != rows[first.batch_name].result_path


def test_a_finished_state_only_job_info_claims_never_deletes_a_running_batch(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    (made,) = make_jobs(emulator, workdir, 1)
    emulator.set_state(made.batch_name, "RUNNING")
    lines = (workdir / "job-info.jsonl").read_text().splitlines()
    for claim in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"):
        line = json.loads(lines[0])
        line["batch"]["state"] = claim
        (workdir / "job-info.jsonl").write_text(json.dumps(line) + "\n")
        (workdir / "gembatch.db").unlink(missing_ok=True)
        result = poll(emulator, "--once", run_cli=run_cli)
        assert result.exit_code == 0, result.output
        assert emulator.count("batches.delete") == 0 and emulator.count("files.delete") == 0
        assert jobs(workdir)[0].state == states.RUNNING
        assert made.batch_name in emulator.batch_names()


def test_an_imported_downloaded_mark_without_a_file_is_not_trusted(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    (made,) = make_jobs(emulator, workdir, 1)
    emulator.finish_all()
    expected = emulator_result(emulator, made.batch_name)
    line = json.loads((workdir / "job-info.jsonl").read_text())
    line["downloaded_at"] = "2025-01-01T00:00:00+00:00"
    (workdir / "job-info.jsonl").write_text(json.dumps(line) + "\n")
    result = poll(emulator, run_cli=run_cli)
    assert result.exit_code == 0, result.output
    (row,) = jobs(workdir)
    assert (workdir / (row.result_path or "missing")).read_bytes() == expected
    assert row.cleaned_at is not None
