"""`gembatch retry` end to end: emulator, real poll, real submit; only failed requests go again."""

from __future__ import annotations

import json
from pathlib import Path

from jobfactory import make_jobs
from sqlalchemy import select

from gembatch.common import states
from gembatch.common.locations import Locations, sqlite_url
from gembatch.emulator import Emulator
from gembatch.emulator.config import OutcomeRule
from gembatch.engine.retry import retry_input_path
from gembatch.report.failed import request_history
from gembatch.store.database import open_store
from gembatch.store.models import Job

ENV = {"GEMINI_API_KEY": "test-key"}


def poll(emulator: Emulator, run_cli) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("poll", "--base-url", emulator.base_url, "--interval", "0.2", env=ENV)
    assert result.exit_code == 0, result.output


def rows(workdir: Path) -> list[Job]:
    store = open_store(sqlite_url(workdir / "gembatch.db"))
    try:
        with store.reading() as session:
            return list(session.scalars(select(Job).order_by(Job.id)))
    finally:
        store.dispose()


def keys_by_outcome(path: Path) -> tuple[set[str], set[str]]:
    ok, bad = set(), set()
    for line in path.read_text().splitlines():
        obj = json.loads(line)
        (bad if "error" in obj else ok).add(obj["key"])
    return ok, bad


def test_retry_resubmits_only_failed_requests(emulator: Emulator, workdir: Path, run_cli) -> None:
    emulator.add_rule(OutcomeRule(outcome="SUCCEEDED", index=0, request_error_rate=0.5))
    emulator.add_rule(OutcomeRule(outcome="FAILED", index=1, message="input rejected"))
    emulator.add_rule(OutcomeRule(outcome="SUCCEEDED", index=2))
    make_jobs(emulator, workdir, 3, requests=6)
    poll(emulator, run_cli)
    first_ok, first_bad = keys_by_outcome(workdir / "batch" / "results" / "000.jsonl")
    assert first_bad and first_ok  # the seeded rate fails some, not all

    result = run_cli("retry", "--base-url", emulator.base_url, env=ENV)
    assert result.exit_code == 0, result.output
    jobs = rows(workdir)
    assert len(jobs) == 5
    retries = {job.retry_of_job_id: job for job in jobs if job.retry_of_job_id}
    assert sorted(retries) == [1, 2]  # job 3 had no failures
    # The retry inputs hold exactly the failed requests, byte for byte as written.
    original = (workdir / "batch" / "000.jsonl").read_text().splitlines()
    retry0 = workdir / retries[1].input_file
    assert retry0 == retry_input_path(workdir / "batch" / "000.jsonl", 1)
    assert retry0.read_text().splitlines() == [
        line for line in original if json.loads(line)["key"] in first_bad
    ]
    assert (workdir / retries[2].input_file).read_text() == (
        workdir / "batch" / "001.jsonl"
    ).read_text()
    assert all(job.request_count == len(first_bad) for job in [retries[1]])

    # The new results land once poll runs again.
    poll(emulator, run_cli)
    jobs = {job.id: job for job in rows(workdir)}
    for original_id, expected in ((1, first_bad), (2, {f"req-1-{n}" for n in range(6)})):
        job = jobs[retries[original_id].id]
        assert job.state == states.SUCCEEDED
        ok, bad = keys_by_outcome(Path(job.result_path or ""))
        assert (ok, bad) == (expected, set())

    # A request's whole history: failed in job 1, succeeded in its retry.
    store = open_store(sqlite_url(workdir / "gembatch.db"))
    locations = Locations(job_info=workdir / "job-info.jsonl", db_url=store.url)
    key = sorted(first_bad)[0]
    history = request_history(store, locations, 1, key)
    store.dispose()
    assert [(a.job_id, a.outcome) for a in history] == [
        (1, "failed"),
        (retries[1].id, "succeeded"),
    ]

    # Nothing left to retry; a second run submits nothing.
    emulator.reset_stats()
    again = run_cli("retry", "--base-url", emulator.base_url, env=ENV)
    assert again.exit_code == 0, again.output
    assert "already retried" in again.output
    assert emulator.count("batches.create") == 0
    report = json.loads(run_cli("report", "--json").output)
    assert {j["id"]: j["retry_of"] for j in report["jobs"]}[retries[1].id] == 1
