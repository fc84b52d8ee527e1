"""Shared fixtures. Every test runs in its own temporary directory with its own database."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gembatch.cli import cli
from gembatch.common.locations import sqlite_url
from gembatch.store.database import Store, open_store

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"
JOB_INFO_FIXTURES = FIXTURES / "job-info"
REAL_GEMINI = FIXTURES / "real-gemini"

PG_URL = os.environ.get("GEMBATCH_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True)
def _isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reads the developer's environment or writes outside its tmp dir."""
    for name in (
        "GEMBATCH_DB",
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "GOOGLE_GEMINI_BASE_URL",
        "GOOGLE_GENAI_USE_VERTEXAI",
        "GOOGLE_GENAI_API_VERSION",
        "NO_COLOR",
        "GEMBATCH_DEBUG",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    """Run the real ``gembatch`` click command in-process."""
    return CliRunner().invoke(cli, list(args), input=input, env=env, catch_exceptions=False)


@pytest.fixture
def run_cli():
    return invoke


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_url() -> str:
    """A PostgreSQL URL for tests that need the server; they skip where it is absent."""
    if not _port_open("127.0.0.1", 5432):
        # CI provides the server and sets GEMBATCH_REQUIRE_PG: there a missing
        # server is a failure, not a reason to skip.
        if os.environ.get("GEMBATCH_REQUIRE_PG"):
            pytest.fail("GEMBATCH_REQUIRE_PG is set but PostgreSQL is not reachable")
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed")
    return PG_URL


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_on_each_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated store on SQLite, then on PostgreSQL (its own schema)."""
    url = (
        sqlite_url(tmp_path / "t.db")
        if request.param == "sqlite"
        else request.getfixturevalue("pg_schema_url")
    )
    opened = open_store(url)
    yield opened
    opened.dispose()


@pytest.fixture
def pg_schema_url(pg_url: str) -> Iterator[str]:
    """A private PostgreSQL database per test, dropped afterwards."""
    import uuid

    from sqlalchemy import create_engine, text

    name = f"gembatch_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = pg_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- emulator fixtures (gembatch/emulator) -------------------------------------------------
# Imported here, not at the top, so this block stays self-contained.

from google import genai  # noqa: E402
from google.genai import types as genai_types  # noqa: E402

from gembatch.emulator import Emulator, running_emulator  # noqa: E402


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A fresh local Gemini Batch API per test, on a free 127.0.0.1 port.

    Fast schedule (PENDING 0.2 s, RUNNING 0.3 s, no jitter); force states with
    ``emulator.set_state(name, "SUCCEEDED")`` / ``emulator.finish_all()``, inject faults with
    ``emulator.faults``, read what the server saw with ``emulator.count(endpoint, status)``.
    """
    with running_emulator() as emu:
        yield emu


@pytest.fixture
def genai_client(emulator: Emulator) -> Iterator[genai.Client]:
    """A google-genai Client pointed at :func:`emulator` (api_version v1beta, any key)."""
    client = genai.Client(
        api_key="test-key",
        http_options=genai_types.HttpOptions(base_url=emulator.base_url, api_version="v1beta"),
    )
    yield client
    client.close()
