"""Streaming result parsing and the job_stats cache, checked against hand-counted files."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from conftest import REAL_GEMINI
from sqlalchemy import delete, select

from gembatch.common.hashing import file_sha256
from gembatch.common.locations import sqlite_url
from gembatch.report.resultstats import (
    MALFORMED,
    MAX_ERROR_KINDS,
    OTHER_ERRORS,
    ResultSource,
    error_label,
    load_stats,
    parse_result_file,
)
from gembatch.store.database import Store, open_store
from gembatch.store.models import Job, JobStats, Request

T0 = datetime(2025, 7, 1, 12, 0, tzinfo=timezone.utc)


def test_real_gemini_basic_by_hand() -> None:
    stats = parse_result_file(REAL_GEMINI / "results" / "basic.jsonl")
    assert (stats.succeeded, stats.failed, stats.malformed) == (5, 0, 0)
    # promptTokenCount 14+14+13+18+21, candidatesTokenCount 900+760+545+757+442,
    # totalTokenCount 914+774+558+775+463 (keys in a different order on every line).
    assert stats.tokens.as_dict() == {"prompt": 80, "output": 3404, "thinking": 0, "total": 3484}
    assert not stats.errors


def test_real_gemini_structured_by_hand() -> None:
    stats = parse_result_file(REAL_GEMINI / "results" / "structured-output.jsonl")
    assert stats.succeeded == 5
    assert stats.tokens.as_dict() == {"prompt": 201, "output": 444, "thinking": 0, "total": 645}


def write_lines(path: Path, lines: list[object]) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for line in lines:
            handle.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
    return path


def ok(key: str, prompt: int, output: int, thinking: int | None = None) -> dict[str, object]:
    usage: dict[str, int] = {"promptTokenCount": prompt, "candidatesTokenCount": output}
    if thinking is not None:
        usage["thoughtsTokenCount"] = thinking
    usage["totalTokenCount"] = prompt + output + (thinking or 0)
    return {"key": key, "response": {"usageMetadata": usage, "extra": [1, 2]}, "x": None}


def err(key: str, code: int, message: str) -> dict[str, object]:
    return {"error": {"message": message, "code": code, "details": []}, "key": key}


def test_errors_thinking_blank_and_malformed_lines(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "r.jsonl",
        [
            err("b", 13, "Internal error encountered."),
            ok("a", 10, 20, thinking=5),
            "",
            "   ",
            err("c", 13, "Internal error encountered."),
            "{not json",
            err("d", 8, "Resource has been exhausted (e.g. check quota)."),
            ok("e", 1, 2),
            "[1, 2]",
            {"key": "f"},  # neither response nor error
        ],
    )
    stats = parse_result_file(path)
    assert (stats.succeeded, stats.failed, stats.malformed) == (2, 3, 3)
    assert stats.lines == 8
    assert stats.first_malformed_line == 6
    assert stats.tokens.as_dict() == {"prompt": 11, "output": 22, "thinking": 5, "total": 38}
    assert stats.errors_json() == [
        [-2, MALFORMED[1], 3],
        [13, "Internal error encountered.", 2],
        [8, "Resource has been exhausted (e.g. check quota).", 1],
    ]
    assert error_label(13, "Internal error encountered.") == (
        "13 INTERNAL: Internal error encountered."
    )


def test_error_kinds_are_bounded(tmp_path: Path) -> None:
    lines = [err(f"k{n}", 3, f"bad request {n}") for n in range(MAX_ERROR_KINDS + 25)]
    stats = parse_result_file(write_lines(tmp_path / "r.jsonl", lines))
    assert stats.failed == MAX_ERROR_KINDS + 25
    assert len(stats.errors) == MAX_ERROR_KINDS + 1
    assert stats.errors[OTHER_ERRORS] == 25


def test_missing_total_is_the_sum(tmp_path: Path) -> None:
    line = {"key": "a", "response": {"usageMetadata": {"promptTokenCount": 3}}}
    stats = parse_result_file(write_lines(tmp_path / "r.jsonl", [line]))
    assert stats.tokens.as_dict() == {"prompt": 3, "output": 0, "thinking": 0, "total": 3}


# --- cache ----------------------------------------------------------------------------


def _store_with_job(tmp_path: Path, result: Path, sha: str | None) -> tuple[Store, int]:
    store = open_store(sqlite_url(tmp_path / "gembatch.db"))
    with store.transaction() as session:
        job = Job(
            input_file="a.jsonl",
            result_path=str(result),
            result_sha256=sha,
            added_at=T0,
        )
        session.add(job)
        session.flush()
        return store, job.id


def test_cache_is_used_then_invalidated_by_a_new_hash(tmp_path: Path) -> None:
    result = tmp_path / "basic.jsonl"
    shutil.copy(REAL_GEMINI / "results" / "basic.jsonl", result)
    sha = file_sha256(result)
    store, job_id = _store_with_job(tmp_path, result, sha)
    source = ResultSource(job_id, str(result), sha)
    first = load_stats(store, [source])
    assert first.parsed == 1 and first.stats[job_id].succeeded == 5
    assert first.indexed == {job_id}
    second = load_stats(store, [source])
    assert second.parsed == 0
    assert second.stats[job_id].tokens.total == 3484
    # A new download (new hash) is indexed again.
    write_lines(result, [err("x", 13, "boom")])
    new_sha = file_sha256(result)
    third = load_stats(store, [ResultSource(job_id, str(result), new_sha)])
    assert third.parsed == 1 and third.indexed == {job_id}
    assert (third.stats[job_id].succeeded, third.stats[job_id].failed) == (0, 1)
    with store.reading() as session:
        row = session.scalars(select(JobStats)).one()
        assert row.result_sha256 == new_sha and row.failed == 1
    # Deleting the job deletes its cached figures.
    with store.transaction() as session:
        session.execute(delete(Job))
    with store.reading() as session:
        assert session.scalars(select(JobStats)).all() == []
    store.dispose()


def test_a_file_that_is_not_the_recorded_download_is_counted_but_not_indexed(
    tmp_path: Path,
) -> None:
    result = tmp_path / "basic.jsonl"
    shutil.copy(REAL_GEMINI / "results" / "basic.jsonl", result)
    store, job_id = _store_with_job(tmp_path, result, "a" * 64)
    loaded = load_stats(store, [ResultSource(job_id, str(result), "a" * 64)])
    assert loaded.stats[job_id].succeeded == 5 and loaded.indexed == set()
    assert "not the file poll saved" in loaded.notes[job_id]
    with store.reading() as session:
        assert session.scalars(select(JobStats)).all() == []
        assert session.scalars(select(Request)).all() == []
    store.dispose()


def test_cache_without_a_hash_follows_the_file(tmp_path: Path) -> None:
    result = write_lines(tmp_path / "r.jsonl", [ok("a", 1, 1)])
    store, job_id = _store_with_job(tmp_path, result, None)
    source = ResultSource(job_id, str(result), None)
    assert load_stats(store, [source]).parsed == 1
    assert load_stats(store, [source]).parsed == 0
    write_lines(result, [ok("a", 1, 1), ok("b", 1, 1)])
    again = load_stats(store, [source])
    assert again.parsed == 1 and again.stats[job_id].succeeded == 2
    assert load_stats(store, [source], refresh=True).parsed == 1
    store.dispose()


def test_missing_file_is_reported_not_raised(tmp_path: Path) -> None:
    store, job_id = _store_with_job(tmp_path, tmp_path / "gone.jsonl", None)
    loaded = load_stats(store, [ResultSource(job_id, str(tmp_path / "gone.jsonl"), None)])
    assert loaded.stats == {} and "not found" in loaded.missing[job_id]
    store.dispose()
