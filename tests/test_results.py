"""The ``requests`` table and ``gembatch results``: every request a row, joined by key.

Rows are checked against the real Gemini result files (their lines shuffled, so
order cannot stand in for keys), files with error, blank and malformed lines,
inline results and embedding results, and a whole run through the emulator.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REAL_GEMINI
from sqlalchemy import func, select

from gembatch.common.hashing import file_sha256
from gembatch.common.locations import sqlite_url
from gembatch.common.resultlines import RequestRow
from gembatch.common.timeutil import now
from gembatch.emulator import Emulator
from gembatch.emulator.config import OutcomeRule
from gembatch.store import requests as request_rows
from gembatch.store.database import Store, open_store
from gembatch.store.indexing import index_file
from gembatch.store.models import Job, JobStats, Request

ENV = {"GEMINI_API_KEY": "test-key"}


def _job(store: Store, input_file: str, result: Path | None, **extra: object) -> int:
    with store.transaction() as session:
        job = Job(
            input_file=input_file,
            result_path=str(result) if result else None,
            result_sha256=file_sha256(result) if result else None,
            result_size=result.stat().st_size if result else None,
            state="JOB_STATE_SUCCEEDED",
            added_at=now(),
            **extra,
        )
        session.add(job)
        session.flush()
        return job.id


def _rows(store: Store, job_id: int) -> list[RequestRow]:
    return list(request_rows.iter_requests(store, job_id))


def _shuffled_copy(source: Path, target: Path, seed: int = 7) -> Path:
    lines = source.read_bytes().splitlines(keepends=True)
    random.Random(seed).shuffle(lines)
    target.write_bytes(b"".join(lines))
    return target


@contextlib.contextmanager
def store_of(workdir: Path):  # type: ignore[no-untyped-def]
    opened = open_store(sqlite_url(workdir / "gembatch.db"))
    try:
        yield opened
    finally:
        opened.dispose()


@pytest.fixture
def store(workdir: Path) -> Store:
    opened = open_store(sqlite_url(workdir / "gembatch.db"))
    yield opened
    opened.dispose()


# --- the rows --------------------------------------------------------------------------


def test_real_gemini_rows_are_found_by_key_and_offset(store: Store, workdir: Path) -> None:
    result = _shuffled_copy(REAL_GEMINI / "results" / "basic.jsonl", workdir / "r.jsonl")
    job_id = _job(store, "basic.jsonl", result)
    outcome = index_file(
        store, job_id, result, sha256=file_sha256(result), size=result.stat().st_size
    )
    assert outcome.indexed and outcome.rows == 5
    rows = _rows(store, job_id)
    data = result.read_bytes()
    for row in rows:
        line = json.loads(data[row.byte_offset : row.byte_offset + row.byte_length])
        assert line["key"] == row.key  # the offset finds this row's own line
        usage = line["response"]["usageMetadata"]
        assert (row.prompt_tokens, row.output_tokens, row.total_tokens) == (
            usage["promptTokenCount"],
            usage["candidatesTokenCount"],
            usage["totalTokenCount"],
        )
        assert (row.status, row.finish_reason, row.error_code) == ("ok", "STOP", None)
    assert [row.line_no for row in rows] == [1, 2, 3, 4, 5]
    assert sorted(row.key for row in rows) == [f"request_{n}" for n in range(1, 6)]
    # By hand from the fixture: request_1 is 14 prompt + 900 output = 914 tokens.
    first = next(row for row in rows if row.key == "request_1")
    assert (first.prompt_tokens, first.output_tokens, first.total_tokens) == (14, 900, 914)
    with store.reading() as session:
        stats = session.get(JobStats, job_id)
        assert stats is not None and stats.succeeded == 5 and stats.total_tokens == 3484


def test_rows_and_figures_are_the_same_on_each_backend(
    store_on_each_backend: Store, workdir: Path
) -> None:
    store = store_on_each_backend
    result = _shuffled_copy(REAL_GEMINI / "results" / "basic.jsonl", workdir / "r.jsonl")
    with result.open("a") as handle:
        handle.write('{"key": "z", "error": {"code": 13, "message": "Internal"}}\n{oops\n')
    job_id = _job(store, "basic.jsonl", result)
    outcome = index_file(
        store, job_id, result, sha256=file_sha256(result), size=result.stat().st_size
    )
    assert outcome.indexed and outcome.rows == 7
    rows = _rows(store, job_id)
    assert [(r.line_no, r.status) for r in rows][-2:] == [(6, "error"), (7, "malformed")]
    with store.reading() as session:
        stats = session.get(JobStats, job_id)
        assert stats is not None
        assert (stats.succeeded, stats.failed, stats.malformed) == (5, 1, 1)
        assert (stats.prompt_tokens, stats.output_tokens, stats.total_tokens) == (80, 3404, 3484)
        assert stats.errors_json == [[-2, "(malformed result line)", 1], [13, "Internal", 1]]


def test_error_blank_malformed_and_thinking_lines(store: Store, workdir: Path) -> None:
    lines = [
        {
            "key": "a",
            "response": {
                "candidates": [{"finishReason": "MAX_TOKENS"}],
                "usageMetadata": {
                    "promptTokenCount": 3,
                    "candidatesTokenCount": 5,
                    "thoughtsTokenCount": 7,
                },
            },
        },
        {"error": {"code": 8, "message": " Resource exhausted. "}, "key": "b"},
        None,  # a blank line: no request, but its bytes still count for offsets
        {"key": 7, "error": {"code": "13", "message": "Internal"}},
        "[1, 2]",
        "{not json",
        {"key": "e", "response": "not an object"},
    ]
    raw = b""
    for line in lines:
        if line is None:
            raw += b"   \n"
        elif isinstance(line, str):
            raw += line.encode() + b"\n"
        else:
            raw += json.dumps(line).encode() + b"\n"
    raw += "\xff\xfe not utf-8\n".encode("latin-1")
    result = workdir / "r.jsonl"
    result.write_bytes(raw)
    job_id = _job(store, "in.jsonl", result)
    assert index_file(store, job_id, result, sha256=None, size=None).indexed
    rows = {row.line_no: row for row in _rows(store, job_id)}
    assert sorted(rows) == [1, 2, 4, 5, 6, 7, 8]
    assert rows[1].status == "ok" and rows[1].finish_reason == "MAX_TOKENS"
    # No totalTokenCount: the sum of the parts.
    assert (rows[1].prompt_tokens, rows[1].output_tokens, rows[1].thinking_tokens) == (3, 5, 7)
    assert rows[1].total_tokens == 15
    assert (rows[2].status, rows[2].error_code, rows[2].error_message) == (
        "error",
        8,
        "Resource exhausted.",
    )
    assert rows[4].key == "7" and rows[4].error_code == 13
    assert [rows[n].status for n in (5, 6, 7, 8)] == ["malformed"] * 4
    assert rows[7].key == "e"
    assert rows[5].byte_offset == len(raw.split(b"\n[1, 2]")[0]) + 1
    with store.reading() as session:
        stats = session.get(JobStats, job_id)
        assert stats is not None
        assert (stats.succeeded, stats.failed, stats.malformed) == (1, 2, 4)
        assert [8, "Resource exhausted.", 1] in stats.errors_json
        assert [-2, "(malformed result line)", 4] in stats.errors_json


def test_embedding_results_keep_the_vector_length(store: Store, workdir: Path) -> None:
    result = workdir / "embed.jsonl"
    result.write_text(
        json.dumps(
            {"key": "x", "response": {"embedding": {"values": [0.5] * 768}, "tokenCount": "9"}}
        )
        + "\n"
        + json.dumps({"response": {"embedding": {"values": [0.1, 0.2, 0.3]}}, "key": "y"})
        + "\n"
    )
    job_id = _job(store, "embed-in.jsonl", result)
    index_file(store, job_id, result, sha256=file_sha256(result), size=None)
    rows = _rows(store, job_id)
    assert [(r.key, r.embedding_dim, r.prompt_tokens, r.total_tokens) for r in rows] == [
        ("x", 768, 9, 9),
        ("y", 3, None, None),
    ]


def test_indexing_twice_gives_the_same_rows(store: Store, workdir: Path) -> None:
    result = _shuffled_copy(
        REAL_GEMINI / "results" / "structured-output.jsonl", workdir / "s.jsonl"
    )
    sha = file_sha256(result)
    job_id = _job(store, "s.jsonl", result)
    index_file(store, job_id, result, sha256=sha, size=None)
    first = _rows(store, job_id)
    index_file(store, job_id, result, sha256=sha, size=None)
    assert _rows(store, job_id) == first
    with store.reading() as session:
        assert session.scalar(select(func.count()).select_from(Request)) == len(first) == 5


def test_a_file_that_is_not_the_recorded_one_keeps_the_old_rows(
    store: Store, workdir: Path
) -> None:
    result = workdir / "r.jsonl"
    shutil.copy(REAL_GEMINI / "results" / "basic.jsonl", result)
    sha = file_sha256(result)
    job_id = _job(store, "basic.jsonl", result)
    index_file(store, job_id, result, sha256=sha, size=None)
    result.write_text('{"key": "other", "response": {}}\n')
    outcome = index_file(store, job_id, result, sha256=sha, size=None)
    assert outcome.status == "changed"
    assert len(_rows(store, job_id)) == 5  # rolled back: the rows of the recorded file stay


def test_a_stopped_index_leaves_no_rows(store: Store, workdir: Path) -> None:
    result = workdir / "big.jsonl"
    result.write_text("".join(f'{{"key": "k{n}", "response": {{}}}}\n' for n in range(12_000)))
    job_id = _job(store, "big.jsonl", result)
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 1  # after the first chunk went in

    outcome = index_file(store, job_id, result, sha256=None, size=None, stop=stop)
    assert outcome.status == "stopped"
    assert _rows(store, job_id) == []


# --- end to end through the emulator ----------------------------------------------------


def _write_input(workdir: Path, name: str, keys: list[str]) -> Path:
    path = workdir / "batch" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(
            json.dumps(
                {"key": key, "request": {"contents": [{"parts": [{"text": f"tell {key}"}]}]}}
            )
            + "\n"
            for key in keys
        )
    )
    return path


def _submit_and_poll(emulator: Emulator, run_cli, *args: str) -> None:  # type: ignore[no-untyped-def]
    base = ("--base-url", emulator.base_url)
    submitted = run_cli("submit", *base, *args, env=ENV)
    assert submitted.exit_code == 0, submitted.output
    polled = run_cli("poll", *base, "--interval", "0.2", "--plain", env=ENV)
    assert polled.exit_code == 0, polled.output


def test_results_csv_has_one_row_per_request_with_its_own_text(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    emulator.add_rule(OutcomeRule(outcome="SUCCEEDED", index=0, request_error_rate=0.4))
    keys = {
        "a.jsonl": [f"a{n}" for n in range(9)],
        "b.jsonl": [f"b{n}" for n in range(4)],
    }
    for name, names in keys.items():
        _write_input(workdir, name, names)
    _submit_and_poll(emulator, run_cli, "batch/a.jsonl")
    _submit_and_poll(emulator, run_cli, "--inline", "batch/b.jsonl")

    # poll indexed each file as it landed: the table is full before anyone asks.
    listed = run_cli("sql", "--csv", "select job_id, key, status from requests order by 1, 2")
    indexed = list(csv.DictReader(io.StringIO(listed.output)))
    assert len(indexed) == 13

    out = run_cli("results", "--format", "csv", env=ENV)
    assert out.exit_code == 0, out.output
    body = out.stdout if hasattr(out, "stdout") else out.output
    rows = list(csv.DictReader(io.StringIO(body)))
    assert sorted(row["key"] for row in rows) == sorted(k for names in keys.values() for k in names)
    statuses = {row["status"] for row in rows}
    assert statuses == {"ok", "error"}  # the seeded error rate failed some requests
    for row in rows:
        assert row["request"] == f"tell {row['key']}"
        if row["status"] == "ok":
            assert row["response"].startswith(f'Emulated answer to "tell {row["key"]}"')
            assert row["error"] == "" and int(row["total_tokens"]) > 0
        else:
            assert row["response"] == "" and row["error"]
    failed = run_cli("results", "--failed", "--format", "jsonl", env=ENV)
    assert failed.exit_code == 0
    failed_rows = [json.loads(line) for line in failed.stdout.splitlines() if line.strip()]
    assert sorted(r["key"] for r in failed_rows) == sorted(
        row["key"] for row in rows if row["status"] != "ok"
    )


# --- the join, from files on disk --------------------------------------------------------


@pytest.fixture
def basic(store: Store, workdir: Path) -> int:
    """The real basic.jsonl input and its real results, shuffled, as one job."""
    shutil.copy(REAL_GEMINI / "basic.jsonl", workdir / "basic.jsonl")
    result = _shuffled_copy(REAL_GEMINI / "results" / "basic.jsonl", workdir / "basic.out.jsonl")
    return _job(store, "basic.jsonl", result, input_sha256=file_sha256(workdir / "basic.jsonl"))


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_shuffled_real_results_pair_each_prompt_with_its_own_answer(
    basic: int, workdir: Path, run_cli
) -> None:
    out = run_cli("results", "--format", "jsonl", "--fields", "key,request,response,line")
    assert out.exit_code == 0, out.output
    rows = _jsonl(out.stdout)
    prompts = {
        json.loads(line)["key"]: json.loads(line)["request"]["contents"][0]["parts"][0]["text"]
        for line in (workdir / "basic.jsonl").read_text().splitlines()
    }
    answers = {}
    for line in (REAL_GEMINI / "results" / "basic.jsonl").read_text().splitlines():
        obj = json.loads(line)
        answers[obj["key"]] = obj["response"]["candidates"][0]["content"]["parts"][0]["text"]
    assert len(rows) == 5 and [r["line"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["key"] for r in rows] != sorted(prompts)  # shuffled: order proves nothing
    for row in rows:
        assert row["request"] == prompts[row["key"]]
        assert row["response"] == answers[row["key"]]
    assert "5 requests from 1 job (0 without a result, 0 results not in the input)" in out.stderr


def test_keys_on_one_side_only_are_reported_never_dropped(
    store: Store, workdir: Path, run_cli
) -> None:
    (workdir / "in.jsonl").write_text(
        "".join(
            json.dumps({"key": k, "request": {"contents": [{"parts": [{"text": f"q {k}"}]}]}})
            + "\n"
            for k in ("a", "b", "dup", "dup", "lost")
        )
    )
    result = workdir / "out.jsonl"
    result.write_text(
        "".join(
            json.dumps(line) + "\n"
            for line in (
                {"key": "dup", "response": {"candidates": []}},
                {"key": "stranger", "response": {"candidates": []}},
                {"key": "a", "error": {"code": 3, "message": "bad request"}},
                {"key": "b", "response": {"candidates": []}},
            )
        )
    )
    _job(store, "in.jsonl", result)
    out = run_cli("results", "--format", "jsonl")
    assert out.exit_code == 0, out.output
    rows = _jsonl(out.stdout)
    assert [(r["key"], r["status"], r["request"]) for r in rows] == [
        ("dup", "ok", "q dup"),
        ("stranger", "ok", None),
        ("a", "error", "q a"),
        ("b", "ok", "q b"),
        ("dup", "missing", "q dup"),  # the second "dup" got no answer
        ("lost", "missing", "q lost"),
    ]
    assert rows[2]["error"] == "3 INVALID_ARGUMENT: bad request"
    assert rows[5]["error"] == "no result line for this key"
    assert "2 request(s) have no result line" in out.stderr
    assert "1 result line(s) name a key its input does not have" in out.stderr
    failed = _jsonl(run_cli("results", "--failed", "--format", "jsonl").stdout)
    assert [(r["key"], r["status"]) for r in failed] == [
        ("a", "error"),
        ("dup", "missing"),
        ("lost", "missing"),
    ]


def test_a_missing_input_file_is_a_one_line_error(basic: int, workdir: Path, run_cli) -> None:
    (workdir / "basic.jsonl").unlink()
    out = run_cli("results", "-o", "joined.jsonl")
    assert out.exit_code == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "basic.jsonl: input file of job #1 not found" in lines[0]
    assert not (workdir / "joined.jsonl").exists()
    without = run_cli("results", "--no-input", "--format", "jsonl")
    assert without.exit_code == 0
    rows = _jsonl(without.stdout)
    assert len(rows) == 5 and all(r["request"] is None and r["response"] for r in rows)


def test_an_input_changed_since_submit_is_refused_and_no_file_appears(
    basic: int, workdir: Path, run_cli
) -> None:
    path = workdir / "basic.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(reversed(lines)))  # same keys, other bytes: maybe other prompts
    out = run_cli("results", "--format", "csv", "-o", "joined.csv")
    assert out.exit_code == 2
    assert "changed since job #1 was submitted" in out.stderr
    assert not (workdir / "joined.csv").exists()
    assert list(workdir.glob("*.tmp*")) == [] and list(workdir.glob(".*joined*")) == []


def test_output_file_formats(basic: int, workdir: Path, run_cli) -> None:
    assert run_cli("results", "--format", "csv", "-o", "out/j.csv").exit_code == 0
    rows = list(csv.DictReader((workdir / "out" / "j.csv").open(encoding="utf-8")))
    assert len(rows) == 5 and rows[0]["status"] == "ok"
    pq = pytest.importorskip("pyarrow.parquet")
    made = run_cli(
        "results", "--format", "parquet", "-o", "j.parquet", "--fields", "key,total_tokens"
    )
    assert made.exit_code == 0, made.output
    table = pq.read_table(workdir / "j.parquet")
    assert table.column_names == ["key", "total_tokens"]
    assert sorted(table.column("total_tokens").to_pylist()) == [463, 558, 774, 775, 914]
    shown = run_cli("results", "--format", "table")
    assert shown.exit_code == 0 and "request_1" in shown.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--fields", "key,nope"), "unknown field 'nope'"),
        (("--fields", ","), "name at least one field"),
        (("--format", "parquet"), "give it with -o FILE"),
        (("7",), "no job #7"),
    ],
)
def test_bad_options_are_one_line_errors(
    basic: int, run_cli, args: tuple[str, ...], message: str
) -> None:
    out = run_cli("results", *args)
    assert out.exit_code == 2
    assert message in out.stderr


def test_embedding_vectors_come_out_when_asked(store: Store, workdir: Path, run_cli) -> None:
    (workdir / "e.jsonl").write_text(
        json.dumps({"key": "v", "request": {"content": {"parts": [{"text": "embed me"}]}}}) + "\n"
    )
    result = workdir / "e.out.jsonl"
    result.write_text(
        json.dumps({"key": "v", "response": {"embedding": {"values": [0.25, -1.5]}}}) + "\n"
    )
    _job(store, "e.jsonl", result)
    out = run_cli("results", "--format", "jsonl", "--fields", "key,request,embedding_dim,embedding")
    assert _jsonl(out.stdout) == [
        {"key": "v", "request": "embed me", "embedding_dim": 2, "embedding": [0.25, -1.5]}
    ]


# --- db reindex, and a kill in the middle of an index -------------------------------------


def test_db_reindex_rebuilds_and_names_what_it_could_not(
    store: Store, basic: int, workdir: Path, run_cli
) -> None:
    gone = workdir / "gone.jsonl"
    gone.write_text('{"key": "k", "response": {}}\n')
    other = _job(store, "gone-in.jsonl", gone)
    gone.unlink()
    out = run_cli("db", "reindex")
    assert out.exit_code == 1
    assert "indexed 1 result file, 5 requests" in out.stdout
    assert f"#{other} gone-in.jsonl" in out.stderr and "not found" in out.stderr
    assert len(_rows(store, basic)) == 5
    request_rows.forget(store)
    assert _rows(store, basic) == []
    assert run_cli("db", "reindex", str(basic)).exit_code == 0
    assert len(_rows(store, basic)) == 5


def test_report_and_results_find_files_beside_a_job_info_elsewhere(workdir: Path, run_cli) -> None:
    """Paths are stored relative to the job-info file's directory, wherever the
    command is run from."""
    sub = workdir / "project"
    sub.mkdir()
    shutil.copy(REAL_GEMINI / "basic.jsonl", sub / "basic.jsonl")
    shutil.copy(REAL_GEMINI / "results" / "basic.jsonl", sub / "out.jsonl")
    opened = open_store(sqlite_url(sub / "gembatch.db"))
    with opened.transaction() as session:
        session.add(
            Job(
                input_file="basic.jsonl",
                result_path="out.jsonl",
                result_sha256=file_sha256(sub / "out.jsonl"),
                state="JOB_STATE_SUCCEEDED",
                added_at=now(),
            )
        )
    opened.dispose()
    info = ("--job-info", "project/job-info.jsonl")
    report = run_cli(*info, "report", "--json")
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)["summary"]["succeeded"] == 5
    joined = run_cli(*info, "results", "--format", "jsonl")
    assert joined.exit_code == 0, joined.output
    assert len(_jsonl(joined.stdout)) == 5


@pytest.mark.slow
def test_an_index_killed_half_way_leaves_nothing_and_the_next_run_finishes(
    store: Store, workdir: Path
) -> None:
    lines = 300_000
    result = workdir / "big.jsonl"
    with result.open("w") as handle:
        for n in range(lines):
            handle.write(
                f'{{"response":{{"candidates":[{{"finishReason":"STOP"}}],"usageMetadata":'
                f'{{"promptTokenCount":3,"candidatesTokenCount":4,"totalTokenCount":7}}}},'
                f'"key":"k{n}"}}\n'
            )
    job_id = _job(store, "big-in.jsonl", result)
    wal = workdir / "gembatch.db-wal"
    process = subprocess.Popen(
        [sys.executable, "-m", "gembatch", "db", "reindex"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    # Rows spill into the WAL as the transaction runs: kill once some are there.
    while time.monotonic() < deadline and process.poll() is None:
        if wal.exists() and wal.stat().st_size > 2_000_000:
            break
        time.sleep(0.005)
    assert process.poll() is None, "the index finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert _rows(store, job_id) == []
    with store.reading() as session:
        assert session.get(JobStats, job_id) is None
    # The next command that needs the rows indexes the file whole.
    again = subprocess.run(
        [sys.executable, "-m", "gembatch", "report", "--json"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["summary"]["succeeded"] == lines
    with store.reading() as session:
        assert session.scalar(select(func.count()).select_from(Request)) == lines


@pytest.mark.postgres
def test_results_and_report_on_postgresql(pg_schema_url: str, workdir: Path, run_cli) -> None:
    opened = open_store(pg_schema_url)
    shutil.copy(REAL_GEMINI / "basic.jsonl", workdir / "basic.jsonl")
    result = _shuffled_copy(REAL_GEMINI / "results" / "basic.jsonl", workdir / "out.jsonl")
    _job(opened, "basic.jsonl", result, input_sha256=file_sha256(workdir / "basic.jsonl"))
    opened.dispose()
    report = run_cli("--db", pg_schema_url, "report", "--json")
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)["summary"]["tokens"]["total"] == 3484
    joined = run_cli("--db", pg_schema_url, "results", "--format", "jsonl")
    assert joined.exit_code == 0, joined.output
    rows = _jsonl(joined.stdout)
    assert sorted(r["key"] for r in rows) == [f"request_{n}" for n in range(1, 6)]
    assert all(r["request"] and r["response"] for r in rows)
    assert run_cli("--db", pg_schema_url, "db", "reindex").exit_code == 0


# --- what the review found ---------------------------------------------------------------


def test_other_writers_are_not_held_up_while_a_file_is_read(store: Store, workdir: Path) -> None:
    """The rows are staged outside any write transaction: while the file is being
    read, another process can commit (it would wait for the lock otherwise)."""
    import sqlite3

    result = workdir / "big.jsonl"
    result.write_text("".join(f'{{"key": "k{n}", "response": {{}}}}\n' for n in range(12_000)))
    job_id = _job(store, "big.jsonl", result)
    other = _job(store, "other.jsonl", None)
    wrote: list[bool] = []

    def stop() -> bool:
        if not wrote:
            peer = sqlite3.connect(workdir / "gembatch.db", timeout=0.5, isolation_level=None)
            try:
                peer.execute("BEGIN IMMEDIATE")
                peer.execute("UPDATE jobs SET model = 'touched' WHERE id = ?", (other,))
                peer.execute("COMMIT")
                wrote.append(True)
            finally:
                peer.close()
        return False

    assert index_file(store, job_id, result, sha256=None, size=None, stop=stop).indexed
    assert wrote == [True]
    assert len(_rows(store, job_id)) == 12_000


def test_a_result_file_rewritten_to_the_same_size_is_indexed_again(
    basic: int, workdir: Path, run_cli
) -> None:
    assert run_cli("results", "--format", "jsonl").exit_code == 0  # indexed as it is
    result = workdir / "basic.out.jsonl"
    lines = result.read_bytes().splitlines(keepends=True)
    result.write_bytes(b"".join(sorted(lines)))  # same bytes, other order: same size
    out = run_cli("results", "--format", "jsonl", "--fields", "key,request,response")
    # Not the file poll saved (its hash differs): joined from the file as it is now.
    rows = _jsonl(out.stdout)
    prompts = {
        json.loads(line)["key"]: json.loads(line)["request"]["contents"][0]["parts"][0]["text"]
        for line in (workdir / "basic.jsonl").read_text().splitlines()
    }
    assert len(rows) == 5 and all(row["request"] == prompts[row["key"]] for row in rows)
    answers = {
        json.loads(line)["key"]: json.loads(line)["response"]["candidates"][0]["content"]["parts"][
            0
        ]["text"]
        for line in lines
    }
    assert all(row["response"] == answers[row["key"]] for row in rows)


def test_an_index_that_no_longer_fits_its_file_is_never_joined(
    basic: int, workdir: Path, run_cli
) -> None:
    assert run_cli("results").exit_code == 0
    result = workdir / "basic.out.jsonl"
    before = result.stat()
    lines = result.read_bytes().splitlines(keepends=True)
    result.write_bytes(b"".join(sorted(lines)))
    os.utime(result, ns=(before.st_atime_ns, before.st_mtime_ns))  # hides the change
    with store_of(workdir) as opened, opened.transaction() as session:
        # ... and a hash recorded for the new bytes, as a careless hand edit might.
        session.get(Job, basic).result_sha256 = file_sha256(result)
        session.get(JobStats, basic).result_sha256 = file_sha256(result)
    out = run_cli("results", "--format", "jsonl")
    assert out.exit_code == 2
    assert "is no longer the result of key" in out.stderr and "db reindex 1" in out.stderr


def test_odd_values_in_a_result_line_are_stored_as_unknown(store: Store, workdir: Path) -> None:
    result = workdir / "odd.jsonl"
    lines = [
        {
            "key": "a",
            "response": {
                "usageMetadata": {
                    "promptTokenCount": "²",
                    "candidatesTokenCount": 10**20,
                    "totalTokenCount": "12",
                }
            },
        },
        {"key": "b", "response": {"candidates": [{"finishReason": "X" * 500}]}},
        {"key": "c", "error": {"code": 2**40, "message": "huge code"}},
        {
            "key": "d",
            "response": {
                "usageMetadata": {
                    "promptTokenCount": 4,
                    "candidatesTokenCount": 6,
                    "totalTokenCount": 0,
                }
            },
        },
    ]
    result.write_text("".join(json.dumps(line) + "\n" for line in lines))
    job_id = _job(store, "odd-in.jsonl", result)
    assert index_file(store, job_id, result, sha256=None, size=None).indexed
    a, b, c, d = _rows(store, job_id)
    assert (a.prompt_tokens, a.output_tokens, a.total_tokens) == (None, None, 12)
    assert b.finish_reason == "X" * 64
    assert (c.status, c.error_code, c.error_message) == ("error", 2, "huge code")
    assert d.total_tokens == 10  # a zero total is the sum of its parts, as before


def test_rows_of_a_result_file_gone_from_disk_still_join(
    basic: int, workdir: Path, run_cli
) -> None:
    assert run_cli("db", "reindex").exit_code == 0
    (workdir / "basic.out.jsonl").unlink()
    out = run_cli("results", "--format", "jsonl")
    assert out.exit_code == 0, out.output
    rows = _jsonl(out.stdout)
    assert len(rows) == 5 and all(r["request"] and r["response"] is None for r in rows)
    assert "is gone; answers' texts left out" in out.stderr


def test_keyless_and_repeated_keys_are_named(store: Store, workdir: Path, run_cli) -> None:
    (workdir / "in.jsonl").write_text(
        '{"key": "a", "request": {}}\n{"key": "a", "request": {}}\n{"request": {}}\n'
    )
    result = workdir / "out.jsonl"
    result.write_text('{"key": "a", "response": {}}\n{"response": {}}\n')
    _job(store, "in.jsonl", result)
    out = run_cli("results", "--format", "jsonl")
    assert "1 input line(s) repeat a key ('a')" in out.stderr
    assert "1 input line(s) have no key" in out.stderr
    assert "1 result line(s) carry no key" in out.stderr


def test_report_names_the_first_malformed_line_from_the_table(store: Store, workdir: Path) -> None:
    from gembatch.report.resultstats import ResultSource, load_stats

    result = workdir / "r.jsonl"
    result.write_text('{"key": "a", "response": {}}\n\n{broken\n')
    job_id = _job(store, "in.jsonl", result)
    source = ResultSource(job_id, str(result), file_sha256(result))
    assert load_stats(store, [source]).stats[job_id].first_malformed_line == 3
    cached = load_stats(store, [source])
    assert cached.parsed == 0 and cached.stats[job_id].first_malformed_line == 3


def test_many_error_kinds_fold_alike_from_the_table_and_from_the_file(
    store: Store, workdir: Path
) -> None:
    from gembatch.report.resultstats import parse_result_file

    result = workdir / "r.jsonl"
    with result.open("w") as handle:
        for n in range(120):  # kinds 0..59 once, then 40..59 three times more
            kind = n if n < 60 else 40 + n % 20
            handle.write(json.dumps({"key": f"k{n}", "error": {"code": 13, "message": f"e{kind}"}}))
            handle.write("\n")
    job_id = _job(store, "in.jsonl", result)
    index_file(store, job_id, result, sha256=None, size=None)
    with store.reading() as session:
        indexed = session.get(JobStats, job_id).errors_json
    direct = parse_result_file(result).errors_json()
    assert indexed == direct
    # 20 kinds seen 4 times (the last ones to appear), 40 seen once: the 50 most
    # frequent kept, 10 folded.
    assert direct[0] == [-1, "(other error kinds)", 10]
    assert [kind[2] for kind in direct[1:]] == [4] * 20 + [1] * 30
    assert direct[1][1] == "e40"


def test_text_no_database_column_takes_is_stored_replaced(
    store_on_each_backend: Store, workdir: Path, run_cli
) -> None:
    store = store_on_each_backend
    (workdir / "in.jsonl").write_text(
        '{"key": "\\ud800x", "request": {"contents": [{"parts": [{"text": "q"}]}]}}\n'
        '{"key": "n\\u0000ul", "request": {}}\n'
    )
    result = workdir / "out.jsonl"
    result.write_text(
        '{"key": "\\ud800x", "response": {"candidates": [{"finishReason": "S\\u0000"}]}}\n'
        '{"key": "n\\u0000ul", "error": {"code": 13, "message": "bad \\udfff"}}\n'
    )
    job_id = _job(store, "in.jsonl", result)
    assert index_file(store, job_id, result, sha256=None, size=None).indexed
    first, second = _rows(store, job_id)
    assert (first.key, first.finish_reason) == ("\ufffdx", "S\ufffd")
    assert (second.key, second.error_message) == ("n\ufffdul", "bad \ufffd")
    from gembatch.common.locations import resolve
    from gembatch.report.joined import ResultsJoin

    locations = resolve(workdir / "job-info.jsonl", store.url)
    joined = list(ResultsJoin(store, locations))
    assert [(r.key, r.status, r.text) for r in joined] == [
        ("\ufffdx", "ok", "q"),
        ("n\ufffdul", "error", None),
    ]
    assert joined and not any(r.status == "missing" for r in joined)


@pytest.mark.postgres
def test_a_sum_past_64_bits_falls_back_to_reading_the_file(
    pg_schema_url: str, workdir: Path
) -> None:
    from gembatch.report.resultstats import ResultSource, load_stats

    store = open_store(pg_schema_url)
    try:
        result = workdir / "r.jsonl"
        big = {"promptTokenCount": str(2**63 - 1)}
        result.write_text(
            "".join(json.dumps({"key": k, "response": {"usageMetadata": big}}) + "\n" for k in "ab")
        )
        job_id = _job(store, "in.jsonl", result)
        outcome = index_file(store, job_id, result, sha256=None, size=None)
        assert outcome.status == "failed" and _rows(store, job_id) == []
        loaded = load_stats(store, [ResultSource(job_id, str(result), file_sha256(result))])
        assert loaded.stats[job_id].succeeded == 2
    finally:
        store.dispose()


def test_keyless_results_without_input_are_not_called_unmatched(
    store: Store, workdir: Path, run_cli
) -> None:
    result = workdir / "out.jsonl"
    result.write_text('{"response": {}}\n{"key": "a", "response": {}}\n')
    _job(store, "gone.jsonl", result)
    out = run_cli("results", "--no-input", "--format", "jsonl")
    assert out.exit_code == 0, out.output
    assert "0 results not in the input" in out.stderr and "carry no key" not in out.stderr
