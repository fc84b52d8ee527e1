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


# --- kinds, priority and the order of a retry ------------------------------------------


def embed_input(path: Path, count: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(
            json.dumps(
                {
                    "key": f"doc-{n}",
                    "request": {
                        "content": {"parts": [{"text": f"passage {n}"}]},
                        "output_dimensionality": 4,
                    },
                }
            )
            + "\n"
            for n in range(count)
        )
    )


def test_an_embeddings_job_is_retried_as_an_embeddings_job(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    emulator.add_rule(OutcomeRule(outcome="SUCCEEDED", index=0, request_error_rate=0.5))
    embed_input(workdir / "emb" / "docs.jsonl", 8)
    submitted = run_cli(
        "submit",
        "--embed",
        "--priority",
        "7",
        "--base-url",
        emulator.base_url,
        "emb/docs.jsonl",
        env=ENV,
    )
    assert submitted.exit_code == 0, submitted.output
    poll(emulator, run_cli)
    ok, bad = keys_by_outcome(workdir / "emb" / "results" / "docs.jsonl")
    assert ok and bad

    emulator.reset_stats()
    result = run_cli("retry", "--base-url", emulator.base_url, env=ENV)
    assert result.exit_code == 0, result.output
    # Made through the embeddings create (asyncBatchEmbedContent), not batchGenerateContent.
    assert emulator.count("batches.create_embeddings") == 1
    assert emulator.count("batches.create") == 0
    original, again = rows(workdir)
    assert again.retry_of_job_id == original.id
    assert (again.kind, again.model, again.priority) == ("embed", original.model, 7)
    assert original.kind == "embed"
    assert [
        json.loads(line)["key"] for line in (workdir / again.input_file).read_text().splitlines()
    ] == sorted(bad, key=lambda key: int(key.split("-")[1]))

    poll(emulator, run_cli)
    again = rows(workdir)[1]
    assert again.state == states.SUCCEEDED
    lines = [json.loads(line) for line in Path(again.result_path or "").read_text().splitlines()]
    assert {line["key"] for line in lines} == bad
    assert all(len(line["response"]["embedding"]["values"]) == 4 for line in lines)


def test_expired_jobs_are_offered_and_retried_first(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    emulator.add_rule(OutcomeRule(outcome="FAILED", index=0, message="input rejected"))
    emulator.add_rule(OutcomeRule(outcome="SUCCEEDED", index=1, request_error_rate=1.0))
    emulator.add_rule(OutcomeRule(outcome="EXPIRED", index=2))
    emulator.add_rule(OutcomeRule(outcome="EXPIRED", index=3))
    make_jobs(emulator, workdir, 4, requests=2)
    poll(emulator, run_cli)
    assert [job.state for job in rows(workdir)] == [
        states.FAILED,
        states.SUCCEEDED,
        states.EXPIRED,
        states.EXPIRED,
    ]

    # The preview: what would go, in the order it would go, and nothing made.
    emulator.reset_stats()
    preview = run_cli("retry", "--dry-run", env={})  # no API key needed to look
    assert preview.exit_code == 0, preview.output
    lines = preview.output.splitlines()
    assert lines == [
        "#3: 2 requests in batch/002.retry-j3.jsonl: would submit (expired; generate)",
        "#4: 2 requests in batch/003.retry-j4.jsonl: would submit (expired; generate)",
        "#1: 2 requests in batch/000.retry-j1.jsonl: would submit (failed; generate)",
        "#2: 2 requests in batch/001.retry-j2.jsonl: would submit (succeeded; generate)",
        "dry run: nothing submitted",
    ]
    assert emulator.count() == 0
    assert len(rows(workdir)) == 4
    assert not (workdir / "batch" / "002.retry-j3.jsonl").exists()

    # The run itself submits in that order: the expired jobs' retries are made first.
    result = run_cli("retry", "--base-url", emulator.base_url, env=ENV)
    assert result.exit_code == 0, result.output
    assert [line.split(":")[0] for line in result.output.splitlines()] == ["#3", "#4", "#1", "#2"]
    retries = [job for job in rows(workdir) if job.retry_of_job_id]
    assert [job.retry_of_job_id for job in sorted(retries, key=lambda job: job.id)] == [3, 4, 1, 2]
    # report --failed lists the same requests in the same order.
    out = workdir / "failed.jsonl"
    assert run_cli("report", "--failed", "-o", str(out)).exit_code == 0
    keys = [json.loads(line)["key"] for line in out.read_text().splitlines()]
    assert keys[:4] == ["req-2-0", "req-2-1", "req-3-0", "req-3-1"]
