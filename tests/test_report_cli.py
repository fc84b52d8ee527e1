"""`gembatch report` end to end: emulator, real poll, then the report's CLI formats."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from jobfactory import make_jobs

from gembatch.emulator import Emulator
from gembatch.emulator.config import OutcomeRule


def _run_poll(emulator: Emulator, run_cli) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(
        "poll",
        "--base-url",
        emulator.base_url,
        "--interval",
        "0.2",
        env={"GEMINI_API_KEY": "test-key"},
    )
    assert result.exit_code == 0, result.output


def test_report_formats_after_a_real_poll(emulator: Emulator, workdir: Path, run_cli) -> None:
    emulator.add_rule(OutcomeRule(outcome="SUCCEEDED", index=1, request_error_rate=1.0))
    emulator.add_rule(OutcomeRule(outcome="FAILED", index=2, message="input rejected"))
    make_jobs(emulator, workdir, 3, requests=4)
    _run_poll(emulator, run_cli)

    result = run_cli("report", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    summary = data["summary"]
    # The FAILED job left no result file: its outcomes are the API's last batchStats
    # (the emulator, like the service, counts every request of a failed batch as failed).
    assert (summary["succeeded"], summary["failed"], summary["no_result"]) == (4, 8, 0)
    assert summary["from_api_stats"] == [3]
    # Job 2 SUCCEEDED with every request failed: a failed job, not a success.
    assert summary["job_outcomes"] == {"failed": 2, "succeeded": 1}
    assert summary["all_failed_jobs"] == 1
    assert summary["duration_seconds"]["count"] == 3
    assert summary["requests_done"] == 12
    jobs = {job["input_file"]: job for job in data["jobs"]}
    assert jobs["batch/001.jsonl"]["api_failed_count"] == 4  # poll recorded batchStats
    assert jobs["batch/001.jsonl"]["failed"] == 4
    assert jobs["batch/001.jsonl"]["outcome"] == "failed"
    assert jobs["batch/001.jsonl"]["outcome_source"] == "result_file"
    assert jobs["batch/002.jsonl"]["outcome_source"] == "api_stats"
    assert (jobs["batch/002.jsonl"]["failed"], jobs["batch/002.jsonl"]["no_result"]) == (4, 0)
    assert {job["kind"] for job in data["jobs"]} == {"generate"}
    assert data["warnings"] == []  # result files and batchStats agree
    assert [e["count"] for e in data["errors"]] == [4]
    # Every token the emulator reported, summed by hand from the result file.
    expected = 0
    for line in (workdir / "batch" / "results" / "000.jsonl").read_text().splitlines():
        expected += json.loads(line)["response"]["usageMetadata"]["totalTokenCount"]
    assert summary["tokens"]["total"] == expected == jobs["batch/000.jsonl"]["total_tokens"]

    rows = list(csv.DictReader(io.StringIO(run_cli("report", "--csv").output)))
    assert [row["state"] for row in rows] == [
        "JOB_STATE_SUCCEEDED",
        "JOB_STATE_SUCCEEDED",
        "JOB_STATE_FAILED",
    ]
    assert rows[1]["failed"] == "4" and rows[2]["failed"] == "4"
    assert rows[2]["outcome_source"] == "api_stats"

    table = run_cli("report")
    assert table.exit_code == 0
    assert "4 succeeded · 8 failed" in table.output
    assert "1 succeeded · 2 failed (1 with every request failed)" in table.output
    assert "jobs #3: no result file read" in table.output
    assert "✗ all failed" in table.output
    assert "timeline" in table.output

    out = workdir / "retry-me.jsonl"
    failed = run_cli("report", "--failed", "-o", str(out))
    assert failed.exit_code == 0, failed.output
    assert "8 failed requests from 2 jobs" in failed.output
    keys = [json.loads(line)["key"] for line in out.read_text().splitlines()]
    assert keys == [f"req-1-{n}" for n in range(4)] + [f"req-2-{n}" for n in range(4)]


def test_bad_arguments_exit_2(workdir: Path, run_cli) -> None:
    bad = run_cli("report", "--price", "gemini-2.5-flash=cheap")
    assert bad.exit_code == 2 and "--price" in bad.output
    assert run_cli("report", "--failed").exit_code == 2
    assert run_cli("report", "--history", "k").exit_code == 2
