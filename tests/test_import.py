"""``gembatch import``: every historical format, the merge rules, and bad input."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import JOB_INFO_FIXTURES, invoke
from sqlalchemy import create_engine, select, text

from gembatch.common.errors import BadInput
from gembatch.common.locations import sqlite_url
from gembatch.jobinfo import importer, reader
from gembatch.jobinfo.importer import import_jobinfo
from gembatch.jobinfo.lines import JobRecord
from gembatch.jobinfo.merge import merge_values
from gembatch.jobinfo.reader import BadLines
from gembatch.store.database import Store, open_store
from gembatch.store.models import Event, Job

UTC = timezone.utc
FIXTURE_FILES = ["v0.1-legacy.jsonl", "v0.2-structured.jsonl", "v0.3-counted.jsonl"]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(sqlite_url(tmp_path / "gembatch.db"))
    yield opened
    opened.dispose()


def dump(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, for "nothing changed" checks."""
    with store.reading() as session:
        return {
            name: [tuple(r) for r in session.execute(text(f"SELECT * FROM {name} ORDER BY id"))]
            for name in ("jobs", "events")
        }


def jobs(store: Store) -> dict[str, Job]:
    with store.reading() as session:
        rows = {j.batch_name: j for j in session.scalars(select(Job).order_by(Job.id))}
        session.expunge_all()  # keep the loaded values past the snapshot's rollback
        return rows


def line(name: str, input_file: str = "in.jsonl", **batch: Any) -> str:
    return json.dumps({"input_file": input_file, "batch": {"name": name, **batch}})


def write(path: Path, *lines: str, end: str = "\n") -> Path:
    path.write_text("".join(f"{x}{end}" for x in lines), encoding="utf-8")
    return path


def all_fixture_lines() -> list[str]:
    out: list[str] = []
    for name in FIXTURE_FILES:
        out += (JOB_INFO_FIXTURES / name).read_text(encoding="utf-8").splitlines()
    return out


# --- every historical format ---------------------------------------------------------


@pytest.mark.parametrize(("name", "count"), list(zip(FIXTURE_FILES, [2, 2, 4], strict=True)))
def test_each_fixture_imports(store: Store, name: str, count: int) -> None:
    report = import_jobinfo(store, JOB_INFO_FIXTURES / name)
    assert (report.new, report.updated, report.unchanged, report.skipped) == (count, 0, 0, 0)
    assert len(jobs(store)) == count


def test_mixed_file_via_cli(tmp_path: Path) -> None:
    write(tmp_path / "job-info.jsonl", *all_fixture_lines())
    result = invoke("import")
    assert result.exit_code == 0, result.output
    assert result.output == "imported job-info.jsonl: 8 new, 0 updated, 0 unchanged, 0 skipped\n"
    result = invoke("import")
    assert result.output == "imported job-info.jsonl: 0 new, 0 updated, 8 unchanged, 0 skipped\n"
    store = open_store(sqlite_url(tmp_path / "gembatch.db"))
    rows = jobs(store)
    assert rows["batches/7ddeq0sfshm2yq3a0pgp9m4mslkcbvfbrahq"].state is None
    assert rows["batches/m3n4b5v6c7x8z9a0s1d2f3g4h5j6k7l8p9o0i1"].state == "JOB_STATE_FAILED"
    assert rows["batches/m3n4b5v6c7x8z9a0s1d2f3g4h5j6k7l8p9o0i1"].request_count == 1200
    with store.reading() as session:
        events = session.scalars(select(Event).order_by(Event.id)).all()
        session.expunge_all()
    assert [e.kind for e in events] == ["imported"] * 8  # the second import changed nothing
    assert events[0].message == "job-info.jsonl:1"
    assert events[3].new_state == "JOB_STATE_SUCCEEDED"
    store.dispose()


def test_import_file_argument_and_other_directory_rebases_paths(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    write(tmp_path / "old" / "jobs.jsonl", line("batches/a", "batch/001.jsonl"))
    result = invoke("import", "old/jobs.jsonl")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("imported old/jobs.jsonl: 1 new")
    store = open_store(sqlite_url(tmp_path / "gembatch.db"))
    # Stored relative to the --job-info file's directory (here: the cwd).
    assert jobs(store)["batches/a"].input_file == "old/batch/001.jsonl"
    store.dispose()


def test_blank_lines_bom_and_crlf_are_tolerated(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf"
        + line("batches/a").encode()
        + b"\r\n\r\n   \t \r\n"
        + line("batches/b").encode()
        + b"\r\n\n"
    )
    report = import_jobinfo(store, path)
    assert (report.new, report.bad_total) == (2, 0)


def test_last_line_without_newline_is_fine_when_whole(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "j.jsonl", line("batches/a"), line("batches/b"), end="")
    path.write_text(line("batches/a") + "\n" + line("batches/b"), encoding="utf-8")
    assert import_jobinfo(store, path).new == 2


# --- merge rules ----------------------------------------------------------------------

T1 = "2025-07-12T19:00:00+00:00"
T2 = "2025-07-12T20:00:00+00:00"


def imported(store: Store, tmp_path: Path, *lines: str) -> reader.ImportReport:
    return import_jobinfo(store, write(tmp_path / f"{uuid.uuid4().hex}.jsonl", *lines))


def test_later_update_time_wins(store: Store, tmp_path: Path) -> None:
    imported(store, tmp_path, line("batches/a", state="JOB_STATE_PENDING", update_time=T1))
    report = imported(store, tmp_path, line("batches/a", state="JOB_STATE_RUNNING", update_time=T2))
    assert report.updated == 1
    assert jobs(store)["batches/a"].state == "JOB_STATE_RUNNING"


def test_older_line_never_moves_a_job_backwards(store: Store, tmp_path: Path) -> None:
    imported(store, tmp_path, line("batches/a", state="JOB_STATE_RUNNING", update_time=T2))
    report = imported(store, tmp_path, line("batches/a", state="JOB_STATE_PENDING", update_time=T1))
    assert report.unchanged == 1
    assert jobs(store)["batches/a"].state == "JOB_STATE_RUNNING"


def test_terminal_state_in_database_is_final(store: Store, tmp_path: Path) -> None:
    imported(store, tmp_path, line("batches/a", state="JOB_STATE_SUCCEEDED", update_time=T1))
    later_running = line("batches/a", state="JOB_STATE_RUNNING", update_time=T2)
    later_failed = line("batches/a", state="JOB_STATE_FAILED", update_time=T2)
    assert imported(store, tmp_path, later_running).unchanged == 1
    assert imported(store, tmp_path, later_failed).unchanged == 1
    assert jobs(store)["batches/a"].state == "JOB_STATE_SUCCEEDED"


def test_terminal_line_beats_non_terminal_database(store: Store, tmp_path: Path) -> None:
    imported(store, tmp_path, line("batches/a", state="JOB_STATE_RUNNING", update_time=T2))
    done = line("batches/a", state="JOB_STATE_SUCCEEDED", update_time=T1, end_time=T1)
    assert imported(store, tmp_path, done).updated == 1
    job = jobs(store)["batches/a"]
    assert (job.state, job.end_time) == (
        "JOB_STATE_SUCCEEDED",
        datetime(2025, 7, 12, 19, tzinfo=UTC),
    )


def test_v01_line_then_structured_line_fills_state(store: Store, tmp_path: Path) -> None:
    v01 = json.dumps(
        {"input_file": "in.jsonl", "job_name": "batches/a", "uploaded_file_name": "files/u"}
    )
    imported(store, tmp_path, v01)
    assert jobs(store)["batches/a"].state is None
    assert imported(store, tmp_path, line("batches/a", state="RUNNING")).updated == 1
    job = jobs(store)["batches/a"]
    assert (job.state, job.uploaded_file_name) == ("JOB_STATE_RUNNING", "files/u")
    # ...and the stateless line again changes nothing.
    assert imported(store, tmp_path, v01).unchanged == 1


def test_missing_fields_are_filled_never_overwritten(store: Store, tmp_path: Path) -> None:
    imported(store, tmp_path, line("batches/a", "first.jsonl", model="m1"))
    report = imported(
        store,
        tmp_path,
        json.dumps(
            {
                "input_file": "second.jsonl",
                "count": 7,
                "batch": {"name": "batches/a", "model": "m2", "display_name": "d"},
                "note": "kept",
            }
        ),
    )
    assert report.updated == 1
    job = jobs(store)["batches/a"]
    assert (job.input_file, job.model) == ("first.jsonl", "m1")
    assert (job.request_count, job.display_name, job.extra_json) == (7, "d", {"note": "kept"})
    with store.reading() as session:
        last = session.scalars(select(Event).order_by(Event.id.desc())).first()
        session.expunge_all()
    assert last is not None and "updated request_count, display_name, extra_json" in last.message


def test_same_state_fills_dest_and_end_time(store: Store, tmp_path: Path) -> None:
    imported(store, tmp_path, line("batches/a", state="SUCCEEDED", update_time=T1))
    report = imported(
        store,
        tmp_path,
        line("batches/a", state="SUCCEEDED", update_time=T1, end_time=T1, dest={"file_name": "f"}),
    )
    assert report.updated == 1
    assert jobs(store)["batches/a"].dest_file_name == "f"


def test_merge_values_is_pure() -> None:
    current = {name: None for name in JobRecord.__dataclass_fields__} | {
        "batch_name": "batches/a",
        "input_file": "a",
        "state": "JOB_STATE_RUNNING",
        "update_time": datetime(2025, 1, 2, tzinfo=UTC),
    }
    older = JobRecord(
        "batches/a", "a", state="JOB_STATE_PENDING", update_time=datetime(2025, 1, 1, tzinfo=UTC)
    )
    assert merge_values(current, older) == {}
    newer = JobRecord(
        "batches/a", "a", state="JOB_STATE_PAUSED", update_time=datetime(2025, 1, 3, tzinfo=UTC)
    )
    assert merge_values(current, newer) == {
        "state": "JOB_STATE_PAUSED",
        "update_time": datetime(2025, 1, 3, tzinfo=UTC),
    }


# --- duplicates -----------------------------------------------------------------------


def test_identical_duplicate_is_counted_once(store: Store, tmp_path: Path) -> None:
    report = imported(store, tmp_path, line("batches/a"), line("batches/b"), line("batches/a"))
    assert (report.new, report.repeated, report.bad_total) == (2, 1, 0)
    assert "(1 repeated line)" in report.summary()


@pytest.mark.parametrize("chunk", [1, 2, 1000])
def test_conflicting_duplicate_names_the_earlier_line(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    # Small chunks: the earlier line has already gone to the database.
    monkeypatch.setattr(importer, "CHUNK_ROWS", chunk)
    path = write(
        tmp_path / "j.jsonl", line("batches/a", "x"), line("batches/b"), line("batches/a", "y")
    )
    before = dump(store)
    with pytest.raises(BadLines) as caught:
        import_jobinfo(store, path)
    assert caught.value.lines == [
        f"{path}:3: batches/a already appears on line 1 with different data"
    ]
    assert dump(store) == before


# --- bad input ------------------------------------------------------------------------

# Lines of one file, and the message each bad one must produce.
CORPUS: list[tuple[bytes, str | None]] = [
    (line("batches/good1").encode(), None),
    (b"{not json", "not JSON: Expecting property name enclosed in double quotes at column 2"),
    (b"[1, 2, 3]", "expected a JSON object, got an array"),
    (b'"just a string"', "expected a JSON object, got a string"),
    (b"3.5", "expected a JSON object, got a number"),
    (b"", None),
    (b"   ", None),
    (
        b'{"input_file": "a.jsonl"}',
        'missing the batch name ("batch.name", or "job_name" in v0.1 lines)',
    ),
    (
        b'{"input_file": "a.jsonl", "batch": {"state": "JOB_STATE_RUNNING"}}',
        'missing the batch name ("batch.name", or "job_name" in v0.1 lines)',
    ),
    (b'{"batch": {"name": "batches/nofile"}}', 'missing "input_file"'),
    (
        b'{"input_file": "a", "count": "5", "batch": {"name": "batches/c"}}',
        '"count" must be an integer, got a string',
    ),
    (
        b'{"input_file": "a", "count": false, "batch": {"name": "batches/c"}}',
        '"count" must be an integer, got a boolean',
    ),
    (
        b'{"input_file": "a", "batch": {"name": "batches/s", "state": ["RUNNING"]}}',
        '"batch.state" must be a string, got an array',
    ),
    (
        b'{"input_file": "a", "batch": {"name": "batches/t", "create_time": "12/07/2025"}}',
        "\"batch.create_time\" is not a valid ISO 8601 timestamp: '12/07/2025'",
    ),
    (
        b'{"input_file": "a", "job_name": "my-job"}',
        '"job_name" must look like "batches/<id>", got \'my-job\'',
    ),
    (
        b'{"input_file": "caf\xe9.jsonl", "job_name": "batches/u"}',
        "not UTF-8: invalid byte 0xe9 at byte offset 19",
    ),
    (b'{"input_file": "a", "batch": {"name": "batches/new", "state": "BATCH_STATE_NEW"}}', None),
    (
        b'{"input_file": "a", "batch": {"name": "batches/paused", "state": "JOB_STATE_PAUSED"}}',
        None,
    ),
    (
        b'{"input_file": "a", "x": "'
        + b"y" * (11 * 1024 * 1024)
        + b'", "job_name": "batches/big"}',
        "line too long (more than 1048576 bytes)",
    ),
    (
        line("batches/good1", "other.jsonl").encode(),
        "batches/good1 already appears on line 1 with different data",
    ),
    (line("batches/good1").encode(), None),  # identical repeat: fine
    (line("batches/good2").encode(), None),
]


def write_corpus(path: Path, truncated_tail: bool = True) -> dict[int, str]:
    """Write the corpus (plus a last line cut off mid-write); return {line: reason}."""
    expected = {}
    with open(path, "wb") as out:
        for number, (raw, reason) in enumerate(CORPUS, start=1):
            out.write(raw + b"\n")
            if reason:
                expected[number] = reason
        if truncated_tail:
            out.write(b'{"input_file": "z.jsonl", "batch": {"name": "batches/z", "sta')
            expected[len(CORPUS) + 1] = (
                "not JSON: Unterminated string starting at column 58; "
                "the last line has no newline: probably cut off mid-write"
            )
    return expected


def stderr_lines(result: Any) -> list[str]:
    return result.stderr.splitlines()


def test_bad_corpus_reports_every_line_and_changes_nothing(tmp_path: Path) -> None:
    write(tmp_path / "job-info.jsonl", line("batches/existing", state="RUNNING"))
    assert invoke("import").exit_code == 0
    store = open_store(sqlite_url(tmp_path / "gembatch.db"))
    before = dump(store)
    corpus = tmp_path / "corpus.jsonl"
    expected = write_corpus(corpus)
    content = corpus.read_bytes()
    mtime = corpus.stat().st_mtime_ns

    result = invoke("import", "corpus.jsonl")

    assert result.exit_code == 2
    assert result.stdout == ""
    assert stderr_lines(result) == [
        *(f"corpus.jsonl:{n}: {reason}" for n, reason in sorted(expected.items())),
        f"gembatch: error: nothing imported: {len(expected)} bad lines in corpus.jsonl "
        "(--skip-bad imports the good lines)",
    ]
    assert "Traceback" not in result.output
    assert dump(store) == before
    assert corpus.read_bytes() == content and corpus.stat().st_mtime_ns == mtime
    store.dispose()


def test_skip_bad_imports_the_good_lines(tmp_path: Path) -> None:
    expected = write_corpus(tmp_path / "job-info.jsonl")
    result = invoke("import", "--skip-bad")
    assert result.exit_code == 0
    assert stderr_lines(result) == [
        f"job-info.jsonl:{n}: {reason}" for n, reason in sorted(expected.items())
    ]
    assert result.stdout == (
        f"imported job-info.jsonl: 4 new, 0 updated, 0 unchanged, {len(expected)} skipped "
        "(1 repeated line)\n"
    )
    store = open_store(sqlite_url(tmp_path / "gembatch.db"))
    rows = jobs(store)
    assert sorted(rows) == ["batches/good1", "batches/good2", "batches/new", "batches/paused"]
    assert rows["batches/good1"].input_file == "in.jsonl"  # the first occurrence wins
    assert rows["batches/new"].state == "JOB_STATE_NEW"
    assert rows["batches/paused"].state == "JOB_STATE_PAUSED"
    store.dispose()


def test_many_bad_lines_are_listed_up_to_a_limit(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "MAX_LISTED_BAD", 3)
    path = write(tmp_path / "j.jsonl", *(["oops"] * 10))
    report = import_jobinfo(store, path, skip_bad=True)
    assert report.bad_total == 10 and len(report.bad) == 3
    assert report.bad_lines_text()[-1] == f"{path}: ... and 7 more bad lines"


def test_reject_sink_gets_bad_lines_verbatim(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(b"bad one\r\n" + line("batches/a").encode() + b"\n[]")
    sink = tmp_path / "sink"
    with open(sink, "wb") as out:
        import_jobinfo(store, path, skip_bad=True, reject_sink=out)
    assert sink.read_bytes() == b"bad one\r\n[]\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["import", "missing.jsonl"], "gembatch: error: missing.jsonl: no such file\n"),
        (["import", "adir"], "gembatch: error: adir: is a directory, not a job-info file\n"),
        (
            ["--job-info", "missing.jsonl", "import"],
            "gembatch: error: missing.jsonl: no such file\n",
        ),
    ],
)
def test_unusable_file_is_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "adir").mkdir()
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.stderr == message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_one_line_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path / "job-info.jsonl", line("batches/a"))
    path.chmod(0)
    result = invoke("import")
    assert result.exit_code == 2
    assert result.stderr == "gembatch: error: job-info.jsonl: permission denied\n"


def test_unwritable_database_location_is_one_line_exit_2(tmp_path: Path) -> None:
    write(tmp_path / "job-info.jsonl", line("batches/a"))
    result = invoke("--db", str(tmp_path / "no" / "such" / "dir" / "g.db"), "import")
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("gembatch: error: ") and "does not exist" in result.stderr


def test_library_raises_bad_input_with_file_line_first(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "j.jsonl", line("batches/a"), "nope")
    with pytest.raises(BadInput) as caught:
        import_jobinfo(store, path)
    assert str(caught.value).splitlines()[0].startswith(f"{path}:2: not JSON")
    assert jobs(store) == {}


# --- PostgreSQL -----------------------------------------------------------------------


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    """A fresh database on the test server, dropped afterwards."""
    name = f"gembatch_import_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = pg_url.rsplit("/", 1)[0] + f"/{name}"
    opened = open_store(url)
    try:
        yield opened
    finally:
        opened.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE "{name}"')
        admin.dispose()


@pytest.mark.postgres
def test_postgres_import_merge_and_bad_lines(pg_store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "j.jsonl", *all_fixture_lines(), line("batches/ü", "données.jsonl"))
    assert import_jobinfo(pg_store, path).new == 9
    assert import_jobinfo(pg_store, path).unchanged == 9
    before = dump(pg_store)
    bad = write(tmp_path / "bad.jsonl", line("batches/new1"), "{")
    with pytest.raises(BadLines):
        import_jobinfo(pg_store, bad)
    assert dump(pg_store) == before
    newer = line("batches/p0vn3y8e6zq4kqhwq7v8n2f9c5l1x3mdae0t", state="RUNNING", update_time=T2)
    report = import_jobinfo(pg_store, write(tmp_path / "n.jsonl", newer))
    assert report.updated == 1


@pytest.mark.postgres
def test_importers_starting_together_on_postgresql_each_succeed(
    pg_schema_url: str, tmp_path: Path
) -> None:
    """Pollers that start together each merge job-info first: on PostgreSQL both
    used to find the jobs new and both insert them, and one died on the unique
    batch name. Imports take turns now, as they do on SQLite."""
    import subprocess
    import sys

    info = tmp_path / "job-info.jsonl"
    with open(info, "w", encoding="utf-8") as handle:
        for index in range(3000):
            line = {
                "input_file": f"batch/{index:05d}.jsonl",
                "batch": {"name": f"batches/race{index:05d}", "state": "JOB_STATE_RUNNING"},
            }
            handle.write(json.dumps(line) + "\n")
    env = {**os.environ, "GEMBATCH_DB": pg_schema_url}
    # The schema first, so that the importers race on the rows, not the migration.
    open_store(pg_schema_url).dispose()
    command = [sys.executable, "-m", "gembatch", "import", str(info)]
    importers = [
        subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(4)
    ]
    outs = [process.communicate(timeout=240)[0].decode() for process in importers]
    assert [process.returncode for process in importers] == [0] * 4, outs
    engine = create_engine(pg_schema_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM jobs")).scalar_one() == 3000
    finally:
        engine.dispose()
