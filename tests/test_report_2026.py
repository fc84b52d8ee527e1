"""`gembatch report` on what the Batch API grew: embeddings jobs, the API's last
batchStats for jobs whose results were never downloaded, and SUCCEEDED jobs whose
every request failed. Real commands (CliRunner) against the emulator, through the
real google-genai client."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from jobfactory import make_jobs

from gembatch.common import states
from gembatch.common.locations import sqlite_url
from gembatch.emulator import Emulator, running_emulator
from gembatch.emulator.config import OutcomeRule
from gembatch.report.pricing import PRICES
from gembatch.store.database import open_store
from gembatch.store.models import Job

ENV = {"GEMINI_API_KEY": "test-key"}


def embed_lines(path: Path, count: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(
            json.dumps(
                {
                    "key": f"e{n}",
                    "request": {
                        "content": {"parts": [{"text": f"text number {n} to embed"}]},
                        "output_dimensionality": 8,
                    },
                }
            )
            + "\n"
            for n in range(count)
        )
    )


def poll(emulator: Emulator, run_cli, *extra: str) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("poll", "--base-url", emulator.base_url, "--interval", "0.2", *extra, env=ENV)
    assert result.exit_code == 0, result.output


def report_json(run_cli) -> dict:  # type: ignore[no-untyped-def, type-arg]
    result = run_cli("report", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


# --- embeddings ------------------------------------------------------------------------


def test_embedding_jobs_are_reported_at_the_embedding_price(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    make_jobs(emulator, workdir, 1, requests=3)  # one generation job first
    embed_lines(workdir / "emb" / "docs.jsonl", 4)
    submitted = run_cli(
        "submit", "--embed", "--base-url", emulator.base_url, "emb/docs.jsonl", env=ENV
    )
    assert submitted.exit_code == 0, submitted.output
    poll(emulator, run_cli)

    data = report_json(run_cli)
    jobs = {job["input_file"]: job for job in data["jobs"]}
    embed, generate = jobs["emb/docs.jsonl"], jobs["batch/000.jsonl"]
    assert (embed["kind"], generate["kind"]) == ("embed", "generate")
    # Input tokens only, summed by hand from the result file.
    lines = (workdir / "emb" / "results" / "docs.jsonl").read_text().splitlines()
    prompt = sum(
        json.loads(line)["response"]["usageMetadata"]["promptTokenCount"] for line in lines
    )
    assert prompt > 0
    assert (embed["prompt_tokens"], embed["output_tokens"], embed["thinking_tokens"]) == (
        prompt,
        0,
        0,
    )
    assert embed["total_tokens"] == prompt
    # gemini-embedding-001: $0.15 per 1M input tokens, half off through the Batch API.
    assert PRICES["gemini-embedding-001"] == (0.15, 0.0)
    assert embed["cost_usd"] == pytest.approx(prompt * 0.15 / 1e6 * 0.5)
    assert data["summary"]["unpriced_models"] == []
    assert data["summary"]["cost_usd"] == pytest.approx(embed["cost_usd"] + generate["cost_usd"])
    kinds = {group["name"]: group for group in data["by_kind"]}
    assert sorted(kinds) == ["embed", "generate"]
    assert (kinds["embed"]["jobs"], kinds["embed"]["succeeded"]) == (1, 4)
    assert kinds["embed"]["tokens"] == {
        "prompt": prompt,
        "output": 0,
        "thinking": 0,
        "total": prompt,
    }
    assert kinds["embed"]["cost_usd"] == pytest.approx(embed["cost_usd"])

    rows = list(csv.DictReader(io.StringIO(run_cli("report", "--csv").output)))
    assert {row["input_file"]: row["kind"] for row in rows} == {
        "emb/docs.jsonl": "embed",
        "batch/000.jsonl": "generate",
    }

    text = run_cli("report").output
    assert f"tokens (embed)     {prompt:,} input (embeddings have no output tokens)" in text
    assert "tokens (generate)" in text
    assert "by kind" in text and "embed" in text
    # Asked for one job, the report still splits by kind only where it matters.
    assert "by kind" not in run_cli("report", str(generate["id"])).output

    # The joined results read embedding rows too: no text answer, a vector, input tokens.
    out = run_cli(
        "results", str(embed["id"]), "--fields", "key,status,prompt_tokens,embedding_dim,embedding"
    )
    assert out.exit_code == 0, out.output
    rows = [json.loads(line) for line in out.output.splitlines() if line.startswith("{")]
    assert [(r["key"], r["status"], r["embedding_dim"]) for r in rows] == [
        (f"e{n}", "ok", 8) for n in range(4)
    ]
    assert all(len(r["embedding"]) == 8 and r["prompt_tokens"] for r in rows)
    table = run_cli("results", str(embed["id"]), "--format", "table")
    assert table.exit_code == 0, table.output
    assert "e3" in table.output


# --- the API's last batchStats ----------------------------------------------------------


def test_jobs_never_downloaded_report_the_apis_last_stats(workdir: Path, run_cli) -> None:
    # A long run, moved along by the emulator's own clock: no sleeping, no wall-clock asserts.
    with running_emulator(pending_s=0.0, running_s=100.0) as emulator:
        made = make_jobs(emulator, workdir, 4, requests=4)
        emulator.advance(50)  # every batch half done: 2 of 4 requests succeeded
        once = run_cli("poll", "--base-url", emulator.base_url, "--once", env=ENV)
        assert once.exit_code == 0, once.output
        # #1 expires, #2 fails, #3 is cancelled half way, #4 keeps running.
        emulator.set_state(made[0].batch_name, "EXPIRED")
        emulator.set_state(made[1].batch_name, "FAILED", "input rejected")
        cancel = run_cli("cancel", "3", "--base-url", emulator.base_url, env=ENV)
        assert cancel.exit_code == 0, cancel.output
        once = run_cli("poll", "--base-url", emulator.base_url, "--once", env=ENV)
        assert once.exit_code == 0, once.output

    data = report_json(run_cli)
    jobs = {job["id"]: job for job in data["jobs"]}
    assert {j: jobs[j]["state"] for j in jobs} == {
        1: states.EXPIRED,
        2: states.FAILED,
        3: states.CANCELLED,
        4: states.RUNNING,
    }
    got = {
        j: (jobs[j]["succeeded"], jobs[j]["failed"], jobs[j]["no_result"], jobs[j]["pending"])
        for j in jobs
    }
    assert got == {
        1: (0, 0, 4, 0),  # expired: the API counted all 4 as pending, so none has a result
        2: (0, 4, 0, 0),  # failed: the API counted every request as failed
        3: (2, 0, 2, 0),  # cancelled half way: 2 done, 2 never run
        4: (2, 0, 0, 2),  # running: 2 done, 2 pending
    }
    assert all(jobs[j]["outcome_source"] == "api_stats" for j in jobs)
    summary = data["summary"]
    assert summary["from_api_stats"] == [1, 2, 3, 4]
    assert (summary["succeeded"], summary["failed"], summary["no_result"], summary["pending"]) == (
        4,
        4,
        6,
        2,
    )
    assert data["warnings"] == []

    text = run_cli("report").output
    assert "4 succeeded · 4 failed · 6 without result · 2 pending" in text
    assert "* jobs #1, #2, #3, #4: no result file read; their request figures are" in text
    row = next(line for line in text.splitlines() if line.startswith("4 "))
    assert "2*" in row  # the running job's succeeded count, marked as the API's


def test_result_files_win_over_the_apis_stats(emulator: Emulator, workdir: Path, run_cli) -> None:
    emulator.add_rule(OutcomeRule(outcome="SUCCEEDED", index=0, request_error_rate=0.5))
    make_jobs(emulator, workdir, 1, requests=6)
    poll(emulator, run_cli)
    job = report_json(run_cli)["jobs"][0]
    assert job["outcome_source"] == "result_file"
    assert job["succeeded"] + job["failed"] == 6 and job["failed"] and job["succeeded"]
    assert job["outcome"] == "succeeded"
    assert "no result file read" not in run_cli("report").output


# --- every request failed -------------------------------------------------------------


def test_a_succeeded_job_whose_requests_all_failed_is_a_failure(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    emulator.add_rule(OutcomeRule(outcome="SUCCEEDED", index=0, request_error_rate=1.0))
    make_jobs(emulator, workdir, 2, requests=3)
    result = run_cli("poll", "--base-url", emulator.base_url, "--interval", "0.2", env=ENV)
    assert result.exit_code == 0, result.output

    data = report_json(run_cli)
    first, second = data["jobs"]
    assert (first["state"], first["outcome"]) == (states.SUCCEEDED, "failed")
    assert (second["state"], second["outcome"]) == (states.SUCCEEDED, "succeeded")
    assert data["summary"]["job_outcomes"] == {"failed": 1, "succeeded": 1}
    by_state = {group["name"]: group["jobs"] for group in data["by_state"]}
    assert by_state == {"all failed": 1, "succeeded": 1}
    text = run_cli("report").output
    assert "1 succeeded · 1 failed (1 with every request failed)" in text
    assert "✗ all failed" in text


def _add_job(db: Path, **fields: object) -> None:
    store = open_store(sqlite_url(db))
    try:
        with store.transaction() as session:
            session.add(Job(added_at=datetime.now(timezone.utc), **fields))
    finally:
        store.dispose()


def test_all_failed_by_the_apis_stats_when_no_file_was_read(workdir: Path, run_cli) -> None:
    """A SUCCEEDED job deleted remotely before its results came down: only its last
    batchStats are known, and they say every request failed."""
    assert run_cli("status").exit_code == 0  # creates the database
    start = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)
    common = {"model": "models/gemini-2.5-flash", "request_count": 5, "create_time": start}
    _add_job(
        workdir / "gembatch.db",
        input_file="batch/lost.jsonl",
        state=states.SUCCEEDED,
        end_time=start + timedelta(minutes=20),
        api_request_count=5,
        api_failed_count=5,
        **common,
    )
    _add_job(
        workdir / "gembatch.db",
        input_file="batch/half.jsonl",
        state=states.SUCCEEDED,
        end_time=start + timedelta(minutes=30),
        api_request_count=5,
        api_succeeded_count=3,
        api_failed_count=2,
        **common,
    )
    data = report_json(run_cli)
    lost, half = data["jobs"]
    assert (lost["outcome"], lost["failed"], lost["outcome_source"]) == ("failed", 5, "api_stats")
    assert (half["outcome"], half["succeeded"], half["failed"]) == ("succeeded", 3, 2)
    assert data["summary"]["all_failed_jobs"] == 1
    assert data["summary"]["from_api_stats"] == [1, 2]
