"""``gembatch sql``: output formats, the read-only guard (SQLite and PostgreSQL),
``--schema``, and the example queries of docs/schema.md."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import create_engine, func, make_url, select

from gembatch.common import states
from gembatch.common.errors import BadInput
from gembatch.store import sqlquery
from gembatch.store.database import Store, open_store
from gembatch.store.models import Event, Job, Request
from gembatch.store.sqlquery import connect_sqlite_readonly, run_query
from gembatch.store.sqlschema import describe_schema
from gembatch.view.output import write_json

RunCli = Callable[..., Result]
UTC = timezone.utc
T0 = datetime(2025, 7, 12, 10, 0, 0, tzinfo=UTC)
DOCS = Path(__file__).resolve().parent.parent / "docs" / "schema.md"
README = Path(__file__).resolve().parent.parent / "README.md"


def add_jobs(store: Store) -> None:
    """Two models, one failure, one job gembatch had trouble with, one still running."""
    rows = [
        # model, state, requests, succeeded, created, seconds, remote error, last error
        ("flash", states.SUCCEEDED, 100, 98, T0, 3600, None, None),
        ("flash", states.SUCCEEDED, 50, 50, T0 + timedelta(minutes=10), 1800, None, None),
        ("pro", states.SUCCEEDED, 10, 10, T0, 7200, None, None),
        ("pro", states.FAILED, 5, None, T0, 60, "INVALID_ARGUMENT: bad line 3", None),
        ("pro", states.RUNNING, 7, None, T0, None, None, "HTTP 503"),
    ]
    with store.transaction() as session:
        for n, (model, state, requests, ok, created, seconds, remote, local) in enumerate(rows):
            job = Job(
                input_file=f"batch/{n:03d}.jsonl",
                batch_name=f"batches/{n}",
                model=model,
                state=state,
                request_count=requests,
                api_succeeded_count=ok,
                create_time=created,
                end_time=None if seconds is None else created + timedelta(seconds=seconds),
                remote_error=remote,
                last_error=local,
                error_count=1 if local else 0,
                added_at=T0,
            )
            session.add(job)
            session.flush()
            session.add(Event(job_id=job.id, at=T0, kind="imported"))


def add_requests(store: Store) -> None:
    """Result rows of job 1 (flash), of job 6 retrying it, and of job 3 (pro)."""
    with store.transaction() as session:
        session.add(
            Job(
                id=6,
                input_file="batch/000.retry-1.jsonl",
                model="flash",
                retry_of_job_id=1,
                added_at=T0,
            )
        )
        session.flush()
        rows = [
            (1, "k1", "ok", None, None, (10, 20, 0, 30)),
            (1, "k2", "error", 13, "Internal", None),
            (1, "k3", "error", 13, "Internal", None),
            (6, "k2", "ok", None, None, (5, 5, 0, 10)),
            (6, "k3", "error", 8, "Resource exhausted", None),
            (3, "p1", "error", 3, "bad", None),
        ]
        for line, (job_id, key, status, code, message, tokens) in enumerate(rows, start=1):
            prompt, output, thinking, total = tokens or (None,) * 4
            session.add(
                Request(
                    job_id=job_id,
                    line_no=line,
                    byte_offset=0,
                    byte_length=1,
                    key=key,
                    status=status,
                    error_code=code,
                    error_message=message,
                    prompt_tokens=prompt,
                    output_tokens=output,
                    thinking_tokens=thinking,
                    total_tokens=total,
                )
            )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "jobs.db"
    store = open_store(f"sqlite:///{path}")
    add_jobs(store)
    add_requests(store)
    store.dispose()
    yield path


def dump(path: Path) -> str:
    """Every row and every schema object, to compare before and after."""
    conn = sqlite3.connect(path)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


# --- output ---------------------------------------------------------------------------


def test_table_by_default(db: Path, run_cli: RunCli) -> None:
    result = run_cli("--db", str(db), "sql", "SELECT id, model, state FROM jobs ORDER BY id")
    assert result.exit_code == 0, result.output
    assert "model" in result.output and "JOB_STATE_FAILED" in result.output
    assert "flash" in result.output


def test_table_shows_null_and_no_markup(db: Path, run_cli: RunCli) -> None:
    result = run_cli("--db", str(db), "sql", "SELECT NULL AS n, '[red]x[/red]' AS m")
    assert "NULL" in result.output and "[red]x[/red]" in result.output


def test_json_streams_an_array_of_objects(db: Path, run_cli: RunCli) -> None:
    result = run_cli(
        "--db", str(db), "sql", "--json", "SELECT id, model, end_time FROM jobs ORDER BY id"
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert rows[0] == {"id": 1, "model": "flash", "end_time": "2025-07-12 11:00:00.000000"}
    assert rows[4]["end_time"] is None


def test_json_empty_result(db: Path, run_cli: RunCli) -> None:
    result = run_cli("--db", str(db), "sql", "--json", "SELECT id FROM jobs WHERE 0")
    assert json.loads(result.output) == []


def test_nl_and_csv(db: Path, run_cli: RunCli) -> None:
    nl = run_cli("--db", str(db), "sql", "--nl", "SELECT id, last_error FROM jobs ORDER BY id")
    lines = [json.loads(line) for line in nl.output.splitlines()]
    assert lines[4] == {"id": 5, "last_error": "HTTP 503"}
    out = run_cli("--db", str(db), "sql", "--csv", "SELECT id, last_error, 'a%b,c' AS s FROM jobs")
    rows = list(csv.reader(io.StringIO(out.output)))
    assert rows[0] == ["id", "last_error", "s"]
    assert rows[1] == ["1", "", "a%b,c"]


def test_query_from_stdin(db: Path, run_cli: RunCli) -> None:
    result = run_cli("--db", str(db), "sql", "--json", "-", input="SELECT COUNT(*) AS n FROM jobs")
    assert json.loads(result.output) == [{"n": 6}]  # five jobs and a retry


def test_json_datetimes_are_iso_strings() -> None:
    out = io.StringIO()
    write_json(["t", "d"], [(T0, None)], out)
    assert json.loads(out.getvalue()) == [{"t": "2025-07-12T10:00:00+00:00", "d": None}]


def test_rows_are_streamed_not_fetched(db: Path) -> None:
    store = open_store(f"sqlite:///{db}")
    try:
        with run_query(store, "SELECT id FROM jobs ORDER BY id") as result:
            assert result.columns == ["id"]
            assert not isinstance(result.rows, list)
            assert next(result.rows) == (1,)
    finally:
        store.dispose()


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT * FROM nosuch", "sql: no such table: nosuch"),
        ("SELEC 1", "sql: "),
        ("", "sql: empty query"),
        ("  -- only a comment\n", "sql: empty query"),
    ],
)
def test_sql_errors_are_one_line_exit_2(
    db: Path, run_cli: RunCli, query: str, message: str
) -> None:
    result = run_cli("--db", str(db), "sql", "--", query)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert "Traceback" not in result.output


def test_missing_query(db: Path, run_cli: RunCli) -> None:
    result = run_cli("--db", str(db), "sql")
    assert result.exit_code == 2 and "missing QUERY" in result.output


# --- the read-only guard on SQLite ----------------------------------------------------

SQLITE_WRITES = [
    "INSERT INTO jobs (input_file, added_at) VALUES ('x', '2025-01-01')",
    "REPLACE INTO jobs (id, input_file, added_at) VALUES (1, 'x', '2025-01-01')",
    "UPDATE jobs SET state = 'JOB_STATE_FAILED'",
    "DELETE FROM jobs",
    "DROP TABLE events",
    "DROP INDEX ix_jobs_state",
    "CREATE TABLE t (x)",
    "CREATE TEMP TABLE t (x)",
    "CREATE INDEX ix_t ON jobs (model)",
    "CREATE VIEW v AS SELECT 1",
    "CREATE TRIGGER tr AFTER INSERT ON jobs BEGIN DELETE FROM events; END",
    "ALTER TABLE jobs ADD COLUMN z",
    "ATTACH 'other.db' AS other",
    "DETACH main",
    "VACUUM",
    "VACUUM INTO 'copy.db'",
    "REINDEX",
    "ANALYZE",
    "BEGIN",
    "PRAGMA user_version = 5",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA query_only = OFF",
    "PRAGMA wal_checkpoint(TRUNCATE)",
    "PRAGMA optimize",
    # Statements that start like a read:
    "WITH x AS (SELECT 1) DELETE FROM jobs",
    "WITH x AS (SELECT 1) INSERT INTO events (job_id, at, kind) SELECT 1, '2025-01-01', 'x'",
    "WITH x AS (SELECT 1) UPDATE jobs SET model = 'x'",
    "SELECT 1; DELETE FROM jobs",
    "SELECT 1; ATTACH 'other.db' AS other",
    "-- a comment first\nDELETE FROM jobs",
    "/* a comment first */ DROP TABLE jobs",
    "EXPLAIN DELETE FROM jobs",
    "UPDATE sqlite_master SET sql = 'x'",
]


@pytest.mark.parametrize("statement", SQLITE_WRITES)
def test_sqlite_writes_fail_and_change_nothing(db: Path, run_cli: RunCli, statement: str) -> None:
    before, files = dump(db), sorted(os.listdir(db.parent))
    result = run_cli("--db", str(db), "sql", "--", statement)
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert len(line.splitlines()) == 1
    assert "read-only" in line or "one statement at a time" in line, line
    assert dump(db) == before
    # No file appeared either (ATTACH and VACUUM INTO would create one).
    assert sorted(f for f in os.listdir(db.parent) if not f.endswith(("-wal", "-shm"))) == [
        f for f in files if not f.endswith(("-wal", "-shm"))
    ]


RAW_WRITES = [
    "INSERT INTO jobs (input_file, added_at) VALUES ('x', '2025-01-01')",
    "UPDATE jobs SET state = NULL",
    "DELETE FROM jobs",
    "DROP TABLE events",
    "CREATE TABLE t (x)",
    "CREATE TEMP TABLE t (x)",
    "ATTACH 'other.db' AS other",
    "VACUUM INTO 'copy.db'",
    "PRAGMA user_version = 5",
    "PRAGMA query_only = OFF",
    "BEGIN IMMEDIATE",
    "UPDATE sqlite_master SET sql = 'x'",
]


@pytest.mark.parametrize("statement", RAW_WRITES)
def test_sqlite_connection_itself_refuses_writes(db: Path, statement: str) -> None:
    """Below the keyword check: the connection alone refuses every write."""
    before = dump(db)
    conn, _denied = connect_sqlite_readonly(db)
    try:
        with pytest.raises((sqlite3.DatabaseError, sqlite3.Warning)):
            conn.execute(statement)
    finally:
        conn.close()
    assert dump(db) == before
    assert not (db.parent / "other.db").exists() and not (db.parent / "copy.db").exists()


@pytest.mark.parametrize(
    "query",
    [
        "PRAGMA table_info(jobs)",
        "SELECT name FROM pragma_table_info('jobs')",
        "PRAGMA user_version",
        "PRAGMA index_list('jobs')",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3) "
        "SELECT i FROM n",
        "EXPLAIN QUERY PLAN SELECT * FROM jobs WHERE state = 'x'",
        "VALUES (1, 2)",
        "SELECT 1 UNION SELECT 2",
        "SELECT 1;",
    ],
)
def test_sqlite_reads_are_allowed(db: Path, run_cli: RunCli, query: str) -> None:
    result = run_cli("--db", str(db), "sql", "--json", query)
    assert result.exit_code == 0, result.output
    json.loads(result.output)


# --- --schema -------------------------------------------------------------------------


def test_schema_lists_tables_columns_and_indexes(db: Path, run_cli: RunCli) -> None:
    result = run_cli("--db", str(db), "sql", "--schema")
    assert result.exit_code == 0, result.output
    for word in ("jobs", "events", "input_file", "create_time", "ix_jobs_state", "job_id"):
        assert word in result.output
    assert "alembic_version" not in result.output


def test_schema_as_json(db: Path, run_cli: RunCli) -> None:
    rows = json.loads(run_cli("--db", str(db), "sql", "--schema", "--json").output)
    by_column = {(r["table"], r["column"]): r for r in rows}
    assert by_column[("jobs", "id")]["primary_key"] is True
    assert by_column[("jobs", "input_file")]["nullable"] is False
    assert by_column[("events", "kind")]["type"].startswith("VARCHAR")


def test_schema_and_query_together_is_an_error(db: Path, run_cli: RunCli) -> None:
    assert run_cli("--db", str(db), "sql", "--schema", "SELECT 1").exit_code == 2


# --- docs/schema.md never lies --------------------------------------------------------


def doc_queries(dialect: str) -> list[str]:
    return re.findall(rf"```{dialect}\n(.*?)```", DOCS.read_text(), re.DOTALL)


def test_docs_explain_every_table_and_column(db: Path) -> None:
    text = DOCS.read_text()
    store = open_store(f"sqlite:///{db}")
    try:
        tables = describe_schema(store)
    finally:
        store.dispose()
    assert {t.name for t in tables} == {"jobs", "events", "job_stats", "requests", "webhook_events"}
    for table in tables:
        section = text.split(f"## `{table.name}`", 1)[1].split("\n## ", 1)[0]
        for column in table.columns:
            assert f"| `{column.name}` |" in section, f"{table.name}.{column.name} undocumented"


def test_docs_example_queries_on_sqlite(db: Path) -> None:
    queries = doc_queries("sql")
    assert len(queries) == 6
    check_example_results(*run_all(db, queries))


def run_all(db: Path, queries: list[str]) -> list[list[dict[str, object]]]:
    """Each query's rows as dictionaries, on the SQLite database ``db``."""
    store = open_store(f"sqlite:///{db}")
    try:
        results = []
        for query in queries:
            with run_query(store, query) as result:
                results.append([dict(zip(result.columns, row, strict=True)) for row in result.rows])
        return results
    finally:
        store.dispose()


def check_example_results(
    by_model: list[dict[str, object]],
    failed: list[dict[str, object]],
    per_hour: list[dict[str, object]],
    codes: list[dict[str, object]],
    tokens: list[dict[str, object]],
    every_retry: list[dict[str, object]],
) -> None:
    assert [(r["model"], r["jobs"], float(r["avg_seconds"])) for r in by_model] == [  # type: ignore[arg-type]
        ("pro", 1, 7200.0),
        ("flash", 2, 2700.0),
    ]
    assert [(r["input_file"], r["remote_error"], r["last_error"]) for r in failed] == [
        ("batch/003.jsonl", "INVALID_ARGUMENT: bad line 3", None),
        ("batch/004.jsonl", None, "HTTP 503"),
    ]
    assert [(r["hour"], r["jobs"], r["requests"], r["succeeded"]) for r in per_hour] == [
        ("2025-07-12 10:00", 2, 55, 50),
        ("2025-07-12 11:00", 1, 100, 98),
        ("2025-07-12 12:00", 1, 10, 10),
    ]
    assert [(r["model"], r["error_code"], r["error_message"], r["requests"]) for r in codes] == [
        ("flash", 13, "Internal", 2),
        ("flash", 8, "Resource exhausted", 1),
        ("pro", 3, "bad", 1),
    ]
    assert [
        (r["id"], r["requests"], int(r["prompt"]), int(r["output"]), int(r["total"]))  # type: ignore[call-overload]
        for r in tokens
    ] == [(1, 3, 10, 20, 30), (6, 2, 5, 5, 10), (3, 1, 0, 0, 0)]
    assert [(r["first_job"], r["key"], r["attempts"], r["an_error"]) for r in every_retry] == [
        (1, "k3", 2, "Resource exhausted")
    ]


# --- PostgreSQL -----------------------------------------------------------------------


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    """The jobs and events tables in a schema of their own on the shared test server."""
    name = f"gembatch_sql_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    url = make_url(pg_url).update_query_dict({"options": f"-csearch_path={name}"})
    store = open_store(url.render_as_string(hide_password=False))
    try:
        add_jobs(store)
        add_requests(store)
        yield store
    finally:
        store.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
        admin.dispose()


def pg_counts(store: Store) -> tuple[int, int, list[str | None]]:
    with store.reading() as session:
        jobs = session.scalar(select(func.count()).select_from(Job)) or 0
        events = session.scalar(select(func.count()).select_from(Event)) or 0
        models = list(session.scalars(select(Job.model).order_by(Job.id)))
    return jobs, events, models


PG_WRITES = [
    "INSERT INTO jobs (input_file, added_at) VALUES ('x', now())",
    "UPDATE jobs SET model = 'x'",
    "DELETE FROM jobs",
    "DROP TABLE events",
    "CREATE TABLE t (x int)",
    "CREATE TEMP TABLE t (x int)",
    "TRUNCATE events",
    "ALTER TABLE jobs ADD COLUMN z int",
    "COPY jobs TO '/tmp/gembatch-copy.csv'",
    "SET default_transaction_read_only = off",
    "COMMIT",
    "WITH d AS (DELETE FROM events RETURNING id) SELECT count(*) FROM d",
    "WITH u AS (UPDATE jobs SET model = 'x' RETURNING id) SELECT * FROM u",
    "SELECT nextval('jobs_id_seq')",
    "SELECT 1; DELETE FROM jobs",
    "COMMIT; DELETE FROM jobs",
    "SELECT 1; SET default_transaction_read_only = off; DELETE FROM jobs",
    "EXPLAIN ANALYZE DELETE FROM jobs",
]


@pytest.mark.postgres
@pytest.mark.parametrize("statement", PG_WRITES)
def test_postgres_writes_fail_and_change_nothing(pg_store: Store, statement: str) -> None:
    before = pg_counts(pg_store)
    with pytest.raises(BadInput) as caught, run_query(pg_store, statement) as result:
        list(result.rows)
    message = str(caught.value)
    assert "read-only" in message or "one statement at a time" in message, message
    assert "\n" not in message
    assert pg_counts(pg_store) == before


@pytest.mark.postgres
@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO jobs (input_file, added_at) VALUES ('x', now())",
        "DELETE FROM jobs",
        "DROP TABLE events",
        "TRUNCATE events",
        "COMMIT; DELETE FROM jobs",
    ],
)
def test_postgres_transaction_itself_refuses_writes(pg_store: Store, statement: str) -> None:
    """Below the keyword check: the read-only transaction alone refuses every write."""
    before = pg_counts(pg_store)
    with pytest.raises(BadInput), sqlquery._postgres_query(pg_store, statement) as result:
        list(result.rows)
    assert pg_counts(pg_store) == before


@pytest.mark.postgres
def test_postgres_reads_and_percent_signs(pg_store: Store, run_cli: RunCli) -> None:
    with run_query(pg_store, "SELECT id, 5 % 2 AS m, 'a%b' AS s FROM jobs ORDER BY id") as result:
        assert result.columns == ["id", "m", "s"]
        assert next(result.rows) == (1, 1, "a%b")
    result = run_cli("--db", pg_store.url, "sql", "--json", "SELECT create_time FROM jobs LIMIT 1")
    assert json.loads(result.output) == [{"create_time": "2025-07-12T10:00:00+00:00"}]
    assert run_cli("--db", pg_store.url, "sql", "DELETE FROM jobs").exit_code == 2
    result = run_cli("--db", pg_store.url, "sql", "SELECT * FROM nosuch")
    assert result.exit_code == 2 and 'relation "nosuch" does not exist' in result.output


@pytest.mark.postgres
def test_postgres_schema(pg_store: Store) -> None:
    names = {t.name: [c.name for c in t.columns] for t in describe_schema(pg_store)}
    assert set(names) == {"jobs", "events", "job_stats", "requests", "webhook_events"}
    assert "input_file" in names["jobs"]


@pytest.mark.postgres
def test_docs_example_queries_on_postgres(pg_store: Store) -> None:
    queries = doc_queries("postgresql")
    assert len(queries) == 2
    unchanged = doc_queries("sql")  # [1] and [3:] are documented as running unchanged
    results = []
    for query in [queries[0], unchanged[1], queries[1], *unchanged[3:]]:
        with run_query(pg_store, query) as result:
            results.append([dict(zip(result.columns, row, strict=True)) for row in result.rows])
    check_example_results(*results)


# --- the README's queries ---------------------------------------------------------------


def readme_queries() -> list[str]:
    section = README.read_text().split("## The database", 1)[1].split("\n## ", 1)[0]
    return re.findall(r'gembatch sql (?:--csv )?"(.*?)"\n```', section, re.DOTALL)


def test_readme_example_queries_run_and_agree_with_the_docs(db: Path) -> None:
    queries = readme_queries()
    assert len(queries) == 6
    by_model, failed, per_hour, codes, tokens, every_retry = run_all(db, queries)
    # The README's short duration query leaves out the NULL checks; on this data it agrees.
    check_example_results(by_model, failed, per_hour, codes, tokens, every_retry)
