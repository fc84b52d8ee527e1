"""The 2026 Batch API through the real commands: embeddings batches (file and inline),
priority, and the service's known quirks, each against the emulator's switch for it.

Everything goes submit -> poll -> results on disk (-> report), through the real
google-genai client over HTTP, as a user's run would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jobfactory import make_jobs
from sqlalchemy import select

from gembatch.common import states
from gembatch.common.locations import sqlite_url
from gembatch.emulator import Emulator, OutcomeRule, running_emulator
from gembatch.jobinfo.lines import parse_line
from gembatch.store.database import open_store
from gembatch.store.models import Job

KEY = {"GEMINI_API_KEY": "test-key"}


def submit(emulator: Emulator, *args: str, run_cli):  # type: ignore[no-untyped-def]
    return run_cli("submit", "--base-url", emulator.base_url, *args, env=KEY)


def poll(emulator: Emulator, *args: str, run_cli):  # type: ignore[no-untyped-def]
    return run_cli("poll", "--base-url", emulator.base_url, "--interval", "0.05", *args, env=KEY)


def jobs(workdir: Path) -> list[Job]:
    store = open_store(sqlite_url(workdir / "gembatch.db"))
    try:
        with store.reading() as session:
            found = list(session.scalars(select(Job).order_by(Job.id)))
            session.expunge_all()
            return found
    finally:
        store.dispose()


def write_embed_input(workdir: Path, name: str, count: int) -> Path:
    path = workdir / "batch" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps(
            {
                "key": f"{Path(name).stem}-{n}",
                "request": {
                    "content": {"parts": [{"text": f"sentence number {n}"}]},
                    "outputDimensionality": 8,
                },
            }
        )
        for n in range(count)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def result_lines(workdir: Path, name: str) -> list[dict[str, Any]]:
    out = workdir / "batch" / "results" / name
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


# ------------------------------------------------------------------------ embeddings


@pytest.mark.parametrize("inline", [False, True], ids=["file", "inline"])
def test_embeddings_submit_poll_results_report(
    emulator: Emulator, workdir: Path, run_cli, inline: bool
) -> None:
    write_embed_input(workdir, "vectors.jsonl", 5)
    args = ["--embed", "batch/vectors.jsonl", *(["--inline"] if inline else [])]
    made = submit(emulator, *args, run_cli=run_cli)
    assert made.exit_code == 0, made.output
    (job,) = jobs(workdir)
    assert job.kind == "embed"
    assert job.model == "models/gemini-embedding-001"
    assert emulator.count("batches.create_embeddings") == 1
    assert emulator.count("batches.create") == 0

    done = poll(emulator, run_cli=run_cli)
    assert done.exit_code == 0, done.output
    lines = result_lines(workdir, "vectors.jsonl")
    assert [line["key"] for line in lines] == [f"vectors-{n}" for n in range(5)]
    assert all(len(line["response"]["embedding"]["values"]) == 8 for line in lines)
    (job,) = jobs(workdir)
    assert job.state == states.SUCCEEDED and job.cleaned_at is not None

    # job-info says the job is an embeddings job, so a re-import keeps the kind.
    (line,) = (workdir / "job-info.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["kind"] == "embed"
    assert parse_line(line).kind == "embed"

    report = run_cli("report", "--json")
    assert report.exit_code == 0, report.output
    assert "embed" in report.output


def test_embeddings_model_from_the_environment(emulator: Emulator, workdir: Path, run_cli) -> None:
    write_embed_input(workdir, "v.jsonl", 2)
    env = {**KEY, "GEMBATCH_EMBED_MODEL": "text-embedding-005"}
    made = run_cli("submit", "--base-url", emulator.base_url, "--embed", "batch/v.jsonl", env=env)
    assert made.exit_code == 0, made.output
    (job,) = jobs(workdir)
    assert job.model == "models/text-embedding-005"


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        ({"contents": [{"parts": [{"text": "x"}]}]}, 'has "contents"'),
        ({"outputDimensionality": 8}, 'missing "request.content"'),
        ({"content": "just text"}, '"request.content" must be an object'),
    ],
)
def test_embeddings_input_is_checked_before_anything_is_sent(
    emulator: Emulator, workdir: Path, run_cli, request_body: dict[str, Any], message: str
) -> None:
    path = workdir / "batch" / "bad.jsonl"
    path.parent.mkdir(parents=True)
    good = {"key": "a", "request": {"content": {"parts": [{"text": "ok"}]}}}
    path.write_text(json.dumps(good) + "\n" + json.dumps({"key": "b", "request": request_body}))
    result = submit(emulator, "--embed", "batch/bad.jsonl", run_cli=run_cli)
    assert result.exit_code == 2, result.output
    assert "batch/bad.jsonl:2:" in result.output and message in result.output
    assert emulator.count("files.upload") == 0
    assert not (workdir / "gembatch.db").exists() or jobs(workdir) == []


def test_an_embeddings_line_submitted_as_generation_is_named(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    write_embed_input(workdir, "v.jsonl", 1)
    result = submit(emulator, "batch/v.jsonl", run_cli=run_cli)
    assert result.exit_code == 2, result.output
    assert "batch/v.jsonl:1:" in result.output and "--embed" in result.output


# ------------------------------------------------------------------------ priority


def test_priority_orders_the_start_when_the_service_is_full(workdir: Path, run_cli) -> None:
    """Capacity one: of the batches waiting for the slot, the highest priority starts
    first, whatever the order they were submitted in."""
    with running_emulator(pending_s=0.05, running_s=600, max_running=1) as emu:
        for name in ("low.jsonl", "high.jsonl", "none.jsonl"):
            write_embed_input(workdir, name, 1)
        for name, priority in (("low.jsonl", "-5"), ("none.jsonl", None), ("high.jsonl", "9")):
            args = ["--embed", f"batch/{name}", *(["--priority", priority] if priority else [])]
            made = submit(emu, *args, run_cli=run_cli)
            assert made.exit_code == 0, made.output
        by_file = {Path(job.input_file).name: job.batch_name or "" for job in jobs(workdir)}
        stored = {Path(job.input_file).name: job.priority for job in jobs(workdir)}
        assert stored == {"low.jsonl": -5, "none.jsonl": None, "high.jsonl": 9}

        def state(name: str) -> str:
            return str(emu.status(by_file[name]).state)

        # The first one took the free slot; the other two wait for it.
        assert "RUNNING" in state("low.jsonl")
        assert "PENDING" in state("none.jsonl") and "PENDING" in state("high.jsonl")
        emu.set_state(by_file["low.jsonl"], "SUCCEEDED")
        # The slot goes to the highest priority, though it was submitted last.
        assert "RUNNING" in state("high.jsonl")
        assert "PENDING" in state("none.jsonl")


def test_priority_must_be_an_int64(emulator: Emulator, workdir: Path, run_cli) -> None:
    write_embed_input(workdir, "v.jsonl", 1)
    result = submit(emulator, "--embed", "batch/v.jsonl", "--priority", str(2**63), run_cli=run_cli)
    assert result.exit_code == 2
    assert "--priority" in result.output


def test_webhook_url_must_be_http(emulator: Emulator, workdir: Path, run_cli) -> None:
    write_embed_input(workdir, "v.jsonl", 1)
    result = submit(
        emulator, "--embed", "batch/v.jsonl", "--webhook-url", "ftp://x/y", run_cli=run_cli
    )
    assert result.exit_code == 2
    assert "--webhook-url" in result.output and "http(s)" in result.output
    assert emulator.count("files.upload") == 0


def test_webhook_url_and_job_id_reach_the_batch(emulator: Emulator, workdir: Path, run_cli) -> None:
    write_embed_input(workdir, "v.jsonl", 1)
    url = "http://127.0.0.1:9/hook"
    made = submit(emulator, "--embed", "batch/v.jsonl", "--webhook-url", url, run_cli=run_cli)
    assert made.exit_code == 0, made.output
    (job,) = jobs(workdir)
    assert job.webhook_url == url
    status = emulator.status(job.batch_name or "")
    assert status.webhook_config == {
        "uris": [url],
        "userMetadata": {"gembatch_job_id": str(job.id)},
    }


# ------------------------------------------------------------------------ quirks


def test_inline_answers_out_of_order_are_matched_by_key(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    emulator.switches.set(shuffle_inline=True)
    path = workdir / "batch" / "many.jsonl"
    path.parent.mkdir(parents=True)
    rows = [
        {"key": f"k{n:02d}", "request": {"contents": [{"parts": [{"text": f"say {n}"}]}]}}
        for n in range(12)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert submit(emulator, "batch/many.jsonl", "--inline", run_cli=run_cli).exit_code == 0
    assert poll(emulator, run_cli=run_cli).exit_code == 0
    got = result_lines(workdir, "many.jsonl")
    assert sorted(line["key"] for line in got) == [r["key"] for r in rows]
    assert [line["key"] for line in got] != [r["key"] for r in rows]  # really shuffled
    # Each request is joined to its own answer: the emulator echoes the prompt.
    joined = run_cli("results", "--format", "jsonl", "-o", "joined.jsonl")
    assert joined.exit_code == 0, joined.output
    records = (workdir / "joined.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(records) == 12
    for record in map(json.loads, records):
        number = record["key"].removeprefix("k").lstrip("0") or "0"
        assert f"say {number}" in json.dumps(record["request"])
        assert f"say {number}" in json.dumps(record["response"])


def test_succeeded_before_the_output_exists_waits_and_deletes_nothing(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    emulator.switches.set(output_delay_s=3600)
    (made,) = make_jobs(emulator, workdir, 1)
    emulator.finish_all()
    for _ in range(2):
        result = poll(emulator, "--once", run_cli=run_cli)
        assert result.exit_code == 0, result.output
    assert made.batch_name in emulator.batch_names()
    (job,) = jobs(workdir)
    assert job.state == states.SUCCEEDED
    assert job.downloaded_at is None and job.cleaned_at is None and job.error_count == 0
    assert emulator.count("batches.delete") == 0 and emulator.count("files.delete") == 0
    emulator.switches.set(output_delay_s=0)
    assert poll(emulator, run_cli=run_cli).exit_code == 0
    (job,) = jobs(workdir)
    assert job.downloaded_at is not None and job.cleaned_at is not None


def test_result_file_ids_longer_than_files_get_accepts_are_downloaded(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    emulator.switches.set(long_file_ids=True)
    make_jobs(emulator, workdir, 1)
    emulator.finish_all()
    result = poll(emulator, run_cli=run_cli)
    assert result.exit_code == 0, result.output
    (job,) = jobs(workdir)
    assert len((job.dest_file_name or "").removeprefix("files/")) > 40
    assert job.downloaded_at is not None and job.cleaned_at is not None
    assert emulator.count("files.get") == 0


def test_succeeded_with_every_request_failed_is_a_failure(workdir: Path, run_cli) -> None:
    rules = [OutcomeRule("SUCCEEDED", request_error_rate=1.0)]
    with running_emulator(pending_s=0.05, running_s=0.1, rules=rules) as emu:
        make_jobs(emu, workdir, 1, requests=4)
        emu.finish_all()
        result = poll(emu, "--once", "--plain", run_cli=run_cli)
    assert result.exit_code == 1, result.output
    assert "all 4 of its requests failed" in result.output
    assert "0 succeeded, 1 failed (1 succeeded with every request failed)" in result.output
    (job,) = jobs(workdir)
    # The results are kept (the errors are worth reading) and the job is done.
    assert job.downloaded_at is not None
    assert job.api_failed_count == 4 and not job.api_succeeded_count


@pytest.mark.parametrize("form", ["strings", "numbers", "missing"])
def test_batch_stats_in_any_form_or_none(workdir: Path, run_cli, form: str) -> None:
    with running_emulator(pending_s=0.05, running_s=0.1, batch_stats=form) as emu:
        make_jobs(emu, workdir, 1, requests=3)
        result = poll(emu, run_cli=run_cli)
    assert result.exit_code == 0, result.output
    (job,) = jobs(workdir)
    assert job.downloaded_at is not None
    if form == "missing":
        assert job.api_request_count is None
    else:
        assert (job.api_request_count, job.api_succeeded_count) == (3, 3)
    assert json.loads(run_cli("status", "--json").output)
