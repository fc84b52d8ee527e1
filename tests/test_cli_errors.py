"""Bad usage and bad locations: one line naming the culprit, exit 2, no traceback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from conftest import invoke


def one_line_error(result, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("gembatch: error:")
    for needle in needles:
        assert needle in lines[0]
    assert "Traceback" not in result.output


def test_unknown_database_kind() -> None:
    one_line_error(invoke("--db", "bogus://x", "status"), "bogus")


def test_database_from_a_newer_gembatch_is_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "newer.db"
    assert invoke("--db", str(db), "status").exit_code == 0
    with sqlite3.connect(db) as conn:
        conn.execute("update alembic_version set version_num = '9999_future'")
    before = db.read_bytes()
    one_line_error(invoke("--db", str(db), "status"), "newer than this gembatch")
    assert db.read_bytes() == before


def test_export_into_a_path_below_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    result = invoke("export", "-o", str(tmp_path / "afile" / "x.jsonl"))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "afile" in result.output


def test_api_key_that_cannot_travel_in_a_header() -> None:
    result = invoke("poll", "--base-url", "http://127.0.0.1:9", env={"GEMINI_API_KEY": "secretkéy"})
    one_line_error(result, "GEMINI_API_KEY", "ASCII")
    assert "secretkéy" not in result.output


def test_base_url_must_be_http() -> None:
    one_line_error(
        invoke("poll", "--base-url", "ftp://x", env={"GEMINI_API_KEY": "k"}), "--base-url"
    )
