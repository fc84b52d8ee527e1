"""Start-up cost: what each command imports, measured in fresh processes.

No wall-clock time is asserted (machines differ); what is asserted is what
makes the time: ``--help`` loads no database layer and no API client, the
read-only commands never load google-genai, and alembic is loaded only for a
database that needs migrating. ``bench/startup.py`` has the timings.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import click
import pytest
from conftest import invoke

import gembatch.commands
from gembatch.cli import cli
from gembatch.commands import command_modules
from gembatch.common.errors import StoreError
from gembatch.store.database import current_revision, downgrade, head_revision, open_store
from gembatch.store.revisions import alembic_head, migrations_dir, scanned_head

# Runs one command in-process inside a fresh interpreter, then writes the names of
# every module loaded to the file named last.
_RUN = """
import json, sys
from gembatch.cli import main
try:
    main(sys.argv[1:-1])
except SystemExit as exc:
    code = exc.code
else:
    code = 0
with open(sys.argv[-1], "w", encoding="utf-8") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""

# Opens the store at argv[1] in a fresh interpreter: which libraries did that load?
_OPEN = """
import json, sys
from gembatch.store.database import open_store
open_store(sys.argv[1]).dispose()
print(json.dumps(sorted(sys.modules)))
"""

API_CLIENT = ("google.genai", "gembatch.remote", "gembatch.engine")
DATABASE = ("sqlalchemy", "alembic", "gembatch.store")


def loaded(modules: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)]


def job_line(i: int) -> str:
    batch = {
        "name": f"batches/job{i:04d}",
        "model": "models/gemini-2.5-flash",
        "state": "JOB_STATE_SUCCEEDED" if i % 3 else "JOB_STATE_RUNNING",
        "create_time": "2025-07-12T08:00:00Z",
        "update_time": "2025-07-12T09:00:00Z",
    }
    if i % 3:
        batch["end_time"] = "2025-07-12T09:00:00Z"
    return json.dumps({"input_file": f"batch/{i:03d}.jsonl", "count": 10, "batch": batch})


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """job-info.jsonl and its gembatch.db, a few jobs in it, made by the current code."""
    lines = [job_line(i) for i in range(6)]
    (tmp_path / "job-info.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = invoke("import")
    assert result.exit_code == 0, result.output
    return tmp_path


def run_in_fresh_process(workdir: Path, *args: str) -> list[str]:
    record = workdir / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", _RUN, *args, str(record)],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(record.read_text(encoding="utf-8"))
    assert outcome["code"] in (0, None), done.stdout + done.stderr
    return outcome["modules"]


@pytest.mark.parametrize("args", [["--help"], ["--version"]])
def test_help_and_version_load_neither_the_database_layer_nor_the_api_client(
    workspace: Path, args: list[str]
) -> None:
    modules = run_in_fresh_process(workspace, *args)
    assert loaded(modules, API_CLIENT + DATABASE) == []
    assert loaded(modules, ("gembatch.report", "gembatch.view", "gembatch.jobinfo")) == []
    # Not even rich: listing the commands needs click alone.
    assert loaded(modules, ("rich",)) == []


@pytest.mark.parametrize(
    "args",
    [["status"], ["status", "--json"], ["sql", "select 1"], ["report"], ["watch"]],
    ids=" ".join,
)
def test_read_only_commands_never_load_the_api_client_nor_alembic(
    workspace: Path, args: list[str]
) -> None:
    # `watch` with its output on a pipe, as here, prints one frame and exits.
    modules = run_in_fresh_process(workspace, *args)
    assert loaded(modules, (*API_CLIENT, "alembic")) == []
    assert "rich.live" not in modules


def test_sql_on_sqlite_does_not_even_load_sqlalchemy(workspace: Path) -> None:
    modules = run_in_fresh_process(workspace, "sql", "select count(*) from jobs")
    assert loaded(modules, ("sqlalchemy", "alembic")) == []


def test_a_new_database_is_still_made_and_migrated(tmp_path: Path) -> None:
    modules = run_in_fresh_process(tmp_path, "status")
    assert "alembic" in modules
    assert (tmp_path / "gembatch.db").is_file()
    assert loaded(run_in_fresh_process(tmp_path, "status"), ("alembic",)) == []


# --- the sub-commands, found without importing them -----------------------------------


def test_the_cheap_rule_finds_exactly_the_modules_that_define_a_command() -> None:
    # The rule as it was: import every module, keep those with a click `command`.
    defined = {}
    for info in pkgutil.iter_modules(gembatch.commands.__path__):
        module = importlib.import_module(f"gembatch.commands.{info.name}")
        command = getattr(module, "command", None)
        if isinstance(command, click.Command):
            defined[command.name] = module.__name__
    assert command_modules() == defined
    assert "gembatch.commands.support" not in defined.values()
    assert "gembatch.commands.poll_screen" not in defined.values()


def test_help_lists_every_command_with_its_short_help() -> None:
    result = invoke("--help")
    assert result.exit_code == 0, result.output
    listed = result.output.split("Commands:", 1)[1]
    for name in command_modules():
        command = cli.commands[name]
        assert f"  {name} " in listed
        assert command.get_short_help_str(limit=45).rstrip(".")[:30] in listed
    assert set(cli.commands) == set(command_modules())


def test_lazy_defaults_show_and_apply_as_the_engine_defines_them() -> None:
    from gembatch.engine.demo import DEFAULT_DIR
    from gembatch.engine.inputs import MAX_INPUT_BYTES
    from gembatch.engine.poller import PollOptions
    from gembatch.engine.units import DEFAULT_MODEL, MODEL_ENV
    from gembatch.report.joined import FIELDS
    from gembatch.report.pricing import BATCH_DISCOUNT

    def help_of(*args: str) -> str:
        return " ".join(invoke(*args, "--help").output.split())

    assert f"[default: {PollOptions().concurrency};" in help_of("poll")
    assert f"[default: {DEFAULT_DIR}]" in help_of("demo")
    assert f"[default: ({DEFAULT_MODEL}, env {MODEL_ENV})]" in help_of("submit")
    assert f"[default: {BATCH_DISCOUNT * 100}]" in help_of("report")
    assert ", ".join(FIELDS) in help_of("results")

    ctx = click.Context(cli.commands["submit"])
    options = {p.name: p for p in cli.commands["submit"].params}
    assert options["max_bytes"].get_default(ctx) == MAX_INPUT_BYTES
    assert options["model"].get_default(ctx) == DEFAULT_MODEL


# --- the schema check that needs no alembic -------------------------------------------


def test_the_scanned_head_is_alembics_head() -> None:
    files = sorted((migrations_dir() / "versions").glob("*.py"))
    assert scanned_head(files) == alembic_head()
    assert head_revision() == alembic_head()


def _revision(path: Path, revision: str, down: str) -> None:
    path.write_text(
        f'revision: str = "{revision}"\ndown_revision: str | None = {down}\n', encoding="utf-8"
    )


def test_the_scan_leaves_anything_but_a_straight_line_to_alembic(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    _revision(a, "0001", "None")
    _revision(b, "0002", '"0001"')
    assert scanned_head([a, b]) == "0002"
    _revision(c, "0003", '"0001"')  # a branch: two heads
    assert scanned_head([a, b, c]) is None
    _revision(c, "0003", '("0001", "0002")')  # a merge
    assert scanned_head([a, b, c]) is None
    c.write_text('revision = REVISION\ndown_revision = "0002"\n', encoding="utf-8")
    assert scanned_head([a, b, c]) is None
    c.write_text('revision = "0003"\ndown_revision = "0002"\ndepends_on = "x"\n', encoding="utf-8")
    assert scanned_head([a, b, c]) is None


def _open_in_fresh_process(url: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _OPEN, url], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_database_made_by_this_code_opens_without_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    open_store(url).dispose()
    modules = _open_in_fresh_process(url)
    # Not even SQLAlchemy: an up-to-date SQLite file is asked through sqlite3.
    assert loaded(modules, ("alembic", "sqlalchemy")) == []


@pytest.mark.postgres
def test_a_postgres_database_made_by_this_code_opens_without_alembic(pg_schema_url: str) -> None:
    open_store(pg_schema_url).dispose()
    assert loaded(_open_in_fresh_process(pg_schema_url), ("alembic",)) == []


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_older_schema_is_still_migrated(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'old.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_schema_url")
    )
    store = open_store(url)
    downgrade(store.engine, "0004")
    assert current_revision(store.engine) == "0004"
    store.dispose()
    assert "alembic" in _open_in_fresh_process(url)
    store = open_store(url)
    assert current_revision(store.engine) == head_revision()
    store.dispose()


def test_a_version_table_with_more_than_the_head_is_alembics_to_judge(tmp_path: Path) -> None:
    # Not a state gembatch makes; the cheap check must not call it up to date, and
    # alembic refuses it as it always did.
    db = tmp_path / "two.db"
    open_store(f"sqlite:///{db}").dispose()
    with sqlite3.connect(db) as conn:
        conn.execute("insert into alembic_version values ('0004')")
    with pytest.raises(StoreError, match="newer than this gembatch knows"):
        open_store(f"sqlite:///{db}")
