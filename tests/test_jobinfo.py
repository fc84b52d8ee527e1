"""Parsing one job-info line of every historical shape, and writing the canonical one."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import JOB_INFO_FIXTURES

from gembatch.jobinfo.lines import (
    JobRecord,
    LineError,
    parse_line,
    rebase,
    rebase_record,
    to_line,
    to_object,
)

UTC = timezone.utc


def fixture_lines(name: str) -> list[str]:
    return (JOB_INFO_FIXTURES / name).read_text(encoding="utf-8").splitlines()


@pytest.fixture
def new_york_time(monkeypatch: pytest.MonkeyPatch):
    """The machine's local zone, which v0.1 ``created_at`` values are written in."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_v01_line_has_no_state_and_local_created_at(new_york_time: None) -> None:
    record = parse_line(fixture_lines("v0.1-legacy.jsonl")[0])
    assert record.batch_name == "batches/7ddeq0sfshm2yq3a0pgp9m4mslkcbvfbrahq"
    assert record.input_file == "batch/001.jsonl"
    assert record.uploaded_file_name == "files/yq1u3ex6rpno"
    assert record.display_name == "batch-job-001"
    assert record.state is None
    assert record.update_time is None
    # 16:01 in New York in July (EDT, UTC-4) is 20:01 UTC.
    assert record.create_time == datetime(2025, 7, 12, 20, 1, 38, 127455, tzinfo=UTC)
    assert record.extra_json is None


def test_v02_line() -> None:
    pending, succeeded = (parse_line(line) for line in fixture_lines("v0.2-structured.jsonl"))
    assert pending.state == "JOB_STATE_PENDING"
    assert pending.request_count is None
    assert pending.end_time is None
    assert pending.dest_file_name is None
    assert succeeded.state == "JOB_STATE_SUCCEEDED"
    assert succeeded.model == "models/gemini-2.5-flash-lite-preview-06-17"
    assert succeeded.end_time == datetime(2025, 7, 12, 19, 25, 12, 229251, tzinfo=UTC)
    assert succeeded.dest_file_name == "files/batch-f3j8d0c2w9s7x1v5b4n6m8q0r2t4y6u8i0o2"


def test_v03_lines_are_already_canonical() -> None:
    for line in fixture_lines("v0.3-counted.jsonl"):
        record = parse_line(line)
        assert to_line(record) == line


def test_v02_line_gains_nothing_it_did_not_have() -> None:
    line = fixture_lines("v0.2-structured.jsonl")[1]
    assert json.loads(to_line(parse_line(line))) == json.loads(line)


def test_v01_line_exports_as_v03_shape_without_unknown_values(new_york_time: None) -> None:
    obj = to_object(parse_line(fixture_lines("v0.1-legacy.jsonl")[0]))
    assert obj == {
        "input_file": "batch/001.jsonl",
        "uploaded_file_name": "files/yq1u3ex6rpno",
        "batch": {
            "name": "batches/7ddeq0sfshm2yq3a0pgp9m4mslkcbvfbrahq",
            "display_name": "batch-job-001",
            "create_time": "2025-07-12T20:01:38.127455+00:00",
        },
    }


def test_line_mixing_shapes_prefers_structured_values() -> None:
    line = json.dumps(
        {
            "input_file": "a.jsonl",
            "job_name": "batches/x1",
            "display_name": "old name",
            "created_at": "2025-01-01T00:00:00+00:00",
            "batch": {"name": "batches/x1", "display_name": "new name", "state": "RUNNING"},
        }
    )
    record = parse_line(line)
    assert record.display_name == "new name"
    assert record.create_time == datetime(2025, 1, 1, tzinfo=UTC)  # fallback used
    assert record.state == "JOB_STATE_RUNNING"
    assert record.extra_json is None  # legacy keys are understood, not "unknown"


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("JOB_STATE_PAUSED", "JOB_STATE_PAUSED"),
        ("BATCH_STATE_NEW", "JOB_STATE_NEW"),
        ("BATCH_STATE_SUCCEEDED", "JOB_STATE_SUCCEEDED"),
        ("running", "JOB_STATE_RUNNING"),
    ],
)
def test_states_are_normalized_and_future_states_kept(raw: str, stored: str) -> None:
    obj = {"input_file": "a", "batch": {"name": "batches/a", "state": raw}}
    record = parse_line(json.dumps(obj))
    assert record.state == stored


def test_odd_timestamps_are_normalized_to_utc() -> None:
    batch = {
        "name": "batches/a",
        "create_time": "2026-01-06T11:09:11.943530657Z",  # nanoseconds, as the API sends
        "update_time": "2026-01-06T16:39:11+05:30",
        "end_time": "9999-12-31T23:59:59.999999+00:00",
    }
    record = parse_line(json.dumps({"input_file": "a", "batch": batch}))
    assert record.create_time == datetime(2026, 1, 6, 11, 9, 11, 943530, tzinfo=UTC)
    assert record.update_time == datetime(2026, 1, 6, 11, 9, 11, tzinfo=UTC)
    assert to_object(record)["batch"]["create_time"] == "2026-01-06T11:09:11.943530+00:00"
    assert to_object(record)["batch"]["end_time"] == "9999-12-31T23:59:59.999999+00:00"


def test_unknown_keys_are_kept_at_every_level_in_order() -> None:
    obj = {
        "zeta": 1,
        "input_file": "a",
        "batch": {
            "name": "batches/a",
            "batch_stats": {"request_count": 3},
            "dest": {"file_name": "files/r", "inlined_responses": None},
        },
        "alpha": ["x", {"y": None}],
        "result_path": "results/a",
    }
    record = parse_line(json.dumps(obj))
    assert record.result_path == "results/a"
    assert record.extra_json == {
        "zeta": 1,
        "alpha": ["x", {"y": None}],
        "batch": {"batch_stats": {"request_count": 3}, "dest": {"inlined_responses": None}},
    }
    out = to_object(record)
    assert list(out) == ["input_file", "batch", "result_path", "zeta", "alpha"]
    assert out["batch"] == {
        "name": "batches/a",
        "dest": {"file_name": "files/r", "inlined_responses": None},
        "batch_stats": {"request_count": 3},
    }
    assert to_line(parse_line(to_line(record))) == to_line(record)


def test_null_means_unknown_and_is_never_written() -> None:
    line = json.dumps(
        {"input_file": "a", "count": None, "batch": {"name": "batches/a", "end_time": None}}
    )
    record = parse_line(line)
    assert record.request_count is None and record.end_time is None
    assert to_line(record) == '{"input_file": "a", "batch": {"name": "batches/a"}}'


def test_gembatch_keys_round_trip() -> None:
    record = JobRecord(
        batch_name="batches/a",
        input_file="in/a.jsonl",
        result_path="in/results/a.jsonl",
        result_size=12,
        result_sha256="ab" * 32,
        downloaded_at=datetime(2025, 1, 1, tzinfo=UTC),
        cleaned_at=datetime(2025, 1, 2, tzinfo=UTC),
    )
    assert parse_line(to_line(record)) == record


def test_non_ascii_is_written_as_utf8_text() -> None:
    record = JobRecord(batch_name="batches/a", input_file="données/日本.jsonl")
    assert "données/日本.jsonl" in to_line(record)
    assert parse_line(to_line(record)) == record


# Each bad line and the reason it must give (a distinctive part of it).
BAD_LINES = [
    ("{not json", "not JSON: Expecting property name enclosed in double quotes at column 2"),
    ('{"input_file": "a", "batch": {"name": "batches/a"}', "not JSON: Expecting ',' delimiter"),
    ("[1, 2]", "expected a JSON object, got an array"),
    ('"text"', "expected a JSON object, got a string"),
    ("42", "expected a JSON object, got a number"),
    ("null", "expected a JSON object, got null"),
    ('{"input_file": "a", "x": NaN, "job_name": "batches/a"}', "NaN is not a JSON value"),
    ('{"input_file": "a"}', 'missing the batch name ("batch.name", or "job_name" in v0.1 lines)'),
    ('{"input_file": "a", "batch": {"state": "RUNNING"}}', "missing the batch name"),
    ('{"job_name": "batches/a"}', 'missing "input_file"'),
    ('{"input_file": "", "job_name": "batches/a"}', '"input_file" is empty'),
    ('{"input_file": 3, "job_name": "batches/a"}', '"input_file" must be a string, got a number'),
    ('{"input_file": "a", "job_name": "jobs/a"}', '"job_name" must look like "batches/<id>"'),
    ('{"input_file": "a", "batch": {"name": "batches/"}}', '"batch.name" must look like'),
    ('{"input_file": "a", "batch": {"name": "batches/a b"}}', '"batch.name" contains whitespace'),
    ('{"input_file": "a", "batch": {"name": 7}}', '"batch.name" must be a string, got a number'),
    ('{"input_file": "a", "batch": "batches/a"}', '"batch" must be an object, got a string'),
    (
        '{"input_file": "a", "job_name": "batches/a", "batch": {"name": "batches/b"}}',
        "\"job_name\" 'batches/a' and \"batch.name\" 'batches/b' disagree",
    ),
    ('{"input_file": "a", "count": "5", "job_name": "batches/a"}', '"count" must be an integer'),
    ('{"input_file": "a", "count": true, "job_name": "batches/a"}', "got a boolean"),
    ('{"input_file": "a", "count": 2.5, "job_name": "batches/a"}', '"count" must be an integer'),
    ('{"input_file": "a", "count": -1, "job_name": "batches/a"}', '"count" must not be negative'),
    ('{"input_file": "a", "batch": {"name": "batches/a", "state": 3}}', '"batch.state" must be a'),
    ('{"input_file": "a", "batch": {"name": "batches/a", "state": " "}}', "is empty"),
    (
        '{"input_file": "a", "batch": {"name": "batches/a", "create_time": "yesterday"}}',
        "\"batch.create_time\" is not a valid ISO 8601 timestamp: 'yesterday'",
    ),
    (
        '{"input_file": "a", "batch": {"name": "batches/a", "end_time": 1720000000}}',
        '"batch.end_time" must be an ISO 8601 timestamp string, got a number',
    ),
    (
        '{"input_file": "a", "batch": {"name": "batches/a", '
        '"update_time": "2025-13-01T00:00:00Z"}}',
        '"batch.update_time" is not a valid ISO 8601 timestamp',
    ),
    (
        # Year 1 with a positive offset is before the first representable UTC instant.
        '{"input_file": "a", "batch": {"name": "batches/a", "create_time": '
        '"0001-01-01T00:00:00+01:00"}}',
        '"batch.create_time" is not a valid ISO 8601 timestamp',
    ),
    ('{"input_file": "a", "job_name": "batches/a", "created_at": "soon"}', '"created_at" is not'),
    ('{"input_file": "a", "batch": {"name": "batches/a", "dest": []}}', '"batch.dest" must be an'),
    ('{"input_file": "a\\u0000b", "job_name": "batches/a"}', "contains a NUL character"),
    ('{"input_file": "a\\ud800", "job_name": "batches/a"}', "unpaired UTF-16 surrogate"),
    ('{"input_file": "a", "job_name": "batches/' + "x" * 300 + '"}', "longer than 255"),
    (
        '{"input_file": "a", "batch": {"name": "batches/a", "state": "' + "X" * 70 + '"}}',
        '"batch.state" is longer than 64 characters',
    ),
    ("[" * 100_000 + "]" * 100_000, "not JSON: nested too deeply"),
]


@pytest.mark.parametrize(("line", "reason"), BAD_LINES, ids=[r for _, r in BAD_LINES])
def test_bad_line_reasons(line: str, reason: str) -> None:
    with pytest.raises(LineError) as caught:
        parse_line(line)
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


def test_paired_surrogate_escape_is_fine() -> None:
    record = parse_line('{"input_file": "\\ud83d\\ude00.jsonl", "job_name": "batches/a"}')
    assert record.input_file == "😀.jsonl"


def test_rebase(tmp_path: Path) -> None:
    here, there = tmp_path / "a", tmp_path / "b" / "c"
    assert rebase("x/y.jsonl", here, here) == "x/y.jsonl"
    assert rebase("./x//y.jsonl", here, here) == "./x//y.jsonl"  # as written when in place
    assert rebase("x/y.jsonl", here, there) == "../../a/x/y.jsonl"
    assert rebase("/abs/y.jsonl", here, there) == "/abs/y.jsonl"
    record = JobRecord(batch_name="batches/a", input_file="y.jsonl", result_path="results/y.jsonl")
    moved = rebase_record(record, there, here)
    assert moved.input_file == "../b/c/y.jsonl"
    assert moved.result_path == "../b/c/results/y.jsonl"
