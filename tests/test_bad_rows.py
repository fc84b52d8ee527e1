"""Values no 32-bit column holds, values no database holds, and rows someone's SQL broke.

A count past 2**31 is a real count and must be stored; a count past 2**63 (or
a number past a double) is a bad line like any other; a row whose timestamp or
JSON reads as garbage is flagged on its own job while every other job goes on.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from conftest import invoke
from jobfactory import json_line, make_jobs
from sqlalchemy import create_engine, text

from gembatch.common.locations import sqlite_url
from gembatch.emulator import Emulator
from gembatch.jobinfo.importer import import_jobinfo
from gembatch.store.database import open_store

BIG = 3_000_000_000  # past 2**31: a 32-bit column says "integer out of range"


def _line(name: str, **top: Any) -> str:
    return json.dumps({"input_file": "in.jsonl", **top, "batch": {"name": name}})


def _write(path: Path, *lines: str) -> Path:
    path.write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
    return path


def _dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                name: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {name} ORDER BY id"))]
                for name in ("jobs", "events")
            }
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "gembatch.db")
    return str(request.getfixturevalue("pg_schema_url"))


# --- item 4: counts past 32 bits, values past 64 ---------------------------------------


def _poll(emulator: Emulator, *before: str) -> Result:
    """`gembatch [before] poll` against the emulator, until every job is done."""
    env = {"GEMINI_API_KEY": "test-key"}
    return invoke(*before, "poll", "--base-url", emulator.base_url, "--interval", "0.2", env=env)


def test_a_count_past_32_bits_is_stored_and_exported(db_url: str, tmp_path: Path) -> None:
    _write(tmp_path / "job-info.jsonl", _line("batches/a", count=BIG), _line("batches/b", count=2))
    result = invoke("--db", db_url, "import")
    assert result.exit_code == 0, result.output
    assert "2 new" in result.output
    status = json.loads(invoke("--db", db_url, "status", "--json").output)
    assert [job["request_count"] for job in status["jobs"]] == [BIG, 2]
    assert invoke("--db", db_url, "export").exit_code == 0
    lines = (tmp_path / "job-info.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["count"] == BIG


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"count": 10**20}, '"count" is too large'),
        ({"count": -1}, '"count" must not be negative'),
        ({"result_size": 2**63}, '"result_size" is too large'),
        # A number past a double reads as Infinity: no JSON column takes it, and
        # the export would write a line that is not JSON.
        ({"note": "1e400"}, "number 1e400 is too large"),
    ],
)
def test_a_value_no_column_holds_is_a_bad_line(
    db_url: str, tmp_path: Path, extra: dict[str, Any], reason: str
) -> None:
    _write(tmp_path / "first.jsonl", _line("batches/old", count=BIG))
    assert invoke("--db", db_url, "--job-info", "first.jsonl", "import").exit_code == 0
    before = _dump(db_url)
    bad = _line("batches/bad", **extra).replace('"1e400"', "1e400")
    _write(tmp_path / "job-info.jsonl", _line("batches/good", count=BIG), bad)
    result = invoke("--db", db_url, "import")
    assert result.exit_code == 2, result.output
    assert f"job-info.jsonl:2: {reason}" in result.output
    assert "Traceback" not in result.output and "out of range" not in result.output
    assert _dump(db_url) == before
    skipped = invoke("--db", db_url, "import", "--skip-bad")
    assert skipped.exit_code == 0, skipped.output
    assert "1 new" in skipped.output and "1 skipped" in skipped.output


@pytest.mark.postgres
def test_poll_on_postgres_takes_big_counts_and_sets_too_large_ones_aside(
    emulator: Emulator, workdir: Path, pg_schema_url: str
) -> None:
    made = make_jobs(emulator, workdir, 2)
    emulator.finish_all()
    lines = (workdir / "job-info.jsonl").read_text().splitlines()
    big = json.loads(lines[1])
    big["count"] = BIG
    too_large = json.loads(json_line(made[0]))
    too_large["batch"]["name"] = "batches/toolarge"
    too_large["count"] = 10**20
    _write(workdir / "job-info.jsonl", lines[0], json.dumps(big), json.dumps(too_large))
    result = _poll(emulator, "--db", pg_schema_url)
    assert result.exit_code == 0, result.output
    assert 'job-info.jsonl:3: "count" is too large' in result.output
    assert "batches/toolarge" in (workdir / "job-info.jsonl.rejected").read_text()
    names = [json.loads(x)["batch"]["name"] for x in (workdir / "job-info.jsonl").open()]
    assert names == [m.batch_name for m in made]
    assert all((workdir / "batch" / "results" / Path(m.input_file).name).exists() for m in made)


# --- item 12a: a row someone's SQL broke ----------------------------------------------


def _imported_workspace(emulator: Emulator, workdir: Path) -> list[str]:
    made = make_jobs(emulator, workdir, 3)
    result = invoke("import")
    assert result.exit_code == 0, result.output
    return [m.batch_name for m in made]


def _corrupt(workdir: Path, name: str, **values: str) -> None:
    # What a user's ad-hoc SQL can leave: SQLite stores any text in any column.
    with sqlite3.connect(workdir / "gembatch.db") as conn:
        for column, value in values.items():
            conn.execute(f"UPDATE jobs SET {column} = ? WHERE batch_name = ?", (value, name))


CORRUPTIONS = [
    {"create_time": "garbage"},
    {"extra_json": "{not json"},
    {"batch_json": "[1, 2"},
    {"request_count": "many"},
    {"end_time": "2025-13-45 99:99:99", "extra_json": "nope"},
]


@pytest.mark.parametrize("values", CORRUPTIONS)
def test_status_flags_the_broken_row_and_shows_the_others(
    emulator: Emulator, workdir: Path, values: dict[str, str]
) -> None:
    names = _imported_workspace(emulator, workdir)
    _corrupt(workdir, names[1], **values)
    result = invoke("status")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    shown = json.loads(invoke("status", "--json").output)
    assert [job["batch_name"] for job in shown["jobs"]] == names
    # Status reads neither JSON column: nothing of them to flag there.
    shown_columns = sorted(set(values) - {"batch_json", "extra_json"})
    for i, job in enumerate(shown["jobs"]):
        if i == 1 and shown_columns:
            assert job["last_error"] and shown_columns[0] in job["last_error"]
            assert "unreadable" in result.output
        else:
            assert job["last_error"] is None


@pytest.mark.parametrize("values", CORRUPTIONS)
def test_export_writes_every_job_and_names_the_broken_one(
    emulator: Emulator, workdir: Path, values: dict[str, str]
) -> None:
    names = _imported_workspace(emulator, workdir)
    _corrupt(workdir, names[1], **values)
    result = invoke("export", "-o", "out.jsonl")
    if set(values) == {"batch_json"}:
        # The export does not read batch_json: nothing to report.
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 1, result.output
    assert names[1] in result.output and sorted(values)[0] in result.output
    assert "Traceback" not in result.output
    lines = (workdir / "out.jsonl").read_text().splitlines()
    assert [json.loads(x)["batch"]["name"] for x in lines] == names
    assert not any(value in lines[1] for value in values.values())


@pytest.mark.parametrize("values", CORRUPTIONS)
def test_poll_finishes_every_job_with_a_broken_row(
    emulator: Emulator, workdir: Path, values: dict[str, str]
) -> None:
    names = _imported_workspace(emulator, workdir)
    _corrupt(workdir, names[1], **values)
    emulator.finish_all()
    result = _poll(emulator)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    with sqlite3.connect(workdir / "gembatch.db") as conn:
        rows = conn.execute("SELECT batch_name, cleaned_at FROM jobs ORDER BY id").fetchall()
    assert [name for name, _ in rows] == names
    assert all(cleaned for _, cleaned in rows)


def test_import_over_a_broken_row_still_merges(emulator: Emulator, workdir: Path) -> None:
    names = _imported_workspace(emulator, workdir)
    _corrupt(workdir, names[1], update_time="garbage", extra_json="{")
    result = invoke("import")
    assert result.exit_code == 0, result.output
    assert "3 unchanged" in result.output


# --- item 12e: an import never overwrites what a poller has just confirmed -----------


@pytest.mark.postgres
def test_import_waits_for_a_poller_holding_the_row(pg_schema_url: str, tmp_path: Path) -> None:
    name = "batches/raced"
    first = _write(
        tmp_path / "a.jsonl",
        json.dumps(
            {
                "input_file": "in.jsonl",
                "batch": {
                    "name": name,
                    "state": "JOB_STATE_PENDING",
                    "update_time": "2025-01-01T00:00:00Z",
                },
            }
        ),
    )
    store = open_store(pg_schema_url)
    try:
        import_jobinfo(store, first)
        # A newer non-terminal line: it wins only while no poller has asked the API.
        newer = _write(
            tmp_path / "b.jsonl",
            json.dumps(
                {
                    "input_file": "in.jsonl",
                    "batch": {
                        "name": name,
                        "state": "JOB_STATE_RUNNING",
                        "update_time": "2025-01-02T00:00:00Z",
                    },
                }
            ),
        )
        poller = create_engine(pg_schema_url)
        with poller.connect() as conn:
            conn.execute(
                text(
                    "UPDATE jobs SET state = 'JOB_STATE_SUCCEEDED', last_polled_at = now() "
                    "WHERE batch_name = :n"
                ),
                {"n": name},
            )
            # The poller's transaction is open: the import must wait for it.
            errors: list[BaseException] = []
            thread = threading.Thread(target=_import_into, args=(store, newer, errors))
            thread.start()
            _wait_for_a_blocked_backend(poller)
            conn.commit()
        thread.join(timeout=60)
        assert not thread.is_alive() and errors == []
        with poller.connect() as conn:
            state = conn.execute(
                text("SELECT state FROM jobs WHERE batch_name = :n"), {"n": name}
            ).scalar_one()
        poller.dispose()
        assert state == "JOB_STATE_SUCCEEDED"
    finally:
        store.dispose()


def _import_into(store: Any, path: Path, errors: list[BaseException]) -> None:
    try:
        import_jobinfo(store, path)
    except BaseException as exc:
        errors.append(exc)


def _wait_for_a_blocked_backend(engine: Any) -> None:
    """Until some backend waits on a row lock (the import, stuck behind the poller)."""
    with engine.connect() as watcher:
        for _ in range(600):
            waiting = watcher.execute(
                text("SELECT count(*) FROM pg_locks WHERE NOT granted")
            ).scalar_one()
            watcher.rollback()
            if waiting:
                return
            time.sleep(0.05)
    raise AssertionError("the import never waited for the poller's row lock")
