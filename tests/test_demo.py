"""`gembatch demo`: the whole workflow in one command, no API key, no network."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from gembatch.common import states
from gembatch.common.locations import sqlite_url
from gembatch.store.database import open_store
from gembatch.store.models import Job


def test_demo_runs_end_to_end(workdir: Path, run_cli) -> None:
    target = workdir / "demo"
    result = run_cli("demo", "--dir", str(target), "--fast")
    assert result.exit_code == 0, result.output
    inputs = sorted((target / "batch").glob("*.jsonl"))
    assert len(inputs) == 9
    assert all(10 <= len(p.read_text().splitlines()) <= 50 for p in inputs)

    store = open_store(sqlite_url(target / "gembatch.db"))
    try:
        with store.reading() as session:
            rows = {Path(j.input_file).name: j for j in session.scalars(select(Job))}
    finally:
        store.dispose()
    assert rows["06-recipes.jsonl"].state == states.FAILED
    assert rows["08-long-essays.jsonl"].state == states.CANCELLED
    assert rows["08-long-essays.jsonl"].cancel_requested_at is not None
    succeeded = [name for name, job in rows.items() if job.state == states.SUCCEEDED]
    assert len(succeeded) == 7
    # One embeddings job, through create_embeddings, with its vectors on disk.
    embed = rows["09-embeddings.jsonl"]
    assert embed.kind == "embed" and embed.model == "models/gemini-embedding-001"
    vectors = [
        json.loads(line)
        for line in (target / "batch" / "results" / "09-embeddings.jsonl").read_text().splitlines()
    ]
    assert len(vectors) == 24
    assert all(len(v["response"]["embedding"]["values"]) == 256 for v in vectors)
    results = target / "batch" / "results"
    assert sorted(p.name for p in results.glob("*.jsonl")) == sorted(succeeded)
    summaries = [
        json.loads(line) for line in (results / "03-summaries.jsonl").read_text().splitlines()
    ]
    assert len(summaries) == 30 and any("error" in line for line in summaries)
    assert all(
        "response" in json.loads(line)
        for line in (results / "01-capitals.jsonl").read_text().splitlines()
    )
    assert all(job.cleaned_at is not None for job in rows.values())
    # job-info.jsonl, the report, and the way to the real API.
    assert len((target / "job-info.jsonl").read_text().splitlines()) == 9
    assert "4. gembatch report" in result.output
    assert "export GEMINI_API_KEY=" in result.output
    assert "gembatch submit batch/0[1-8]*.jsonl" in result.output
    assert "gembatch submit --embed batch/09-embeddings.jsonl" in result.output

    # A second run reuses its own directory.
    again = run_cli("demo", "--dir", str(target), "--fast")
    assert again.exit_code == 0, again.output


def test_demo_refuses_a_foreign_directory(workdir: Path, run_cli) -> None:
    target = workdir / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    result = run_cli("demo", "--dir", str(target), "--fast")
    assert result.exit_code == 2
    assert "not a previous gembatch demo" in result.output
    assert (target / "notes.txt").read_text() == "keep me"
    assert not (target / "batch").exists()
