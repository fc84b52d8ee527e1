"""``gembatch export``: canonical, atomic, and never losing a line another program wrote."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import filelock
import pytest
from conftest import JOB_INFO_FIXTURES, invoke

from gembatch.common.errors import BadInput, GembatchError
from gembatch.common.locations import sqlite_url
from gembatch.common.timeutil import now
from gembatch.jobinfo import exporter
from gembatch.jobinfo.exporter import export_jobinfo, jobinfo_lock
from gembatch.jobinfo.importer import import_jobinfo
from gembatch.store.database import Store, open_store
from gembatch.store.models import Job

UTC = timezone.utc
V03 = JOB_INFO_FIXTURES / "v0.3-counted.jsonl"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(sqlite_url(tmp_path / "gembatch.db"))
    yield opened
    opened.dispose()


def line(name: str, input_file: str = "in.jsonl", **batch: object) -> str:
    return json.dumps({"input_file": input_file, "batch": {"name": name, **batch}})


def names(path: Path) -> list[str]:
    return [json.loads(x)["batch"]["name"] for x in path.read_text("utf-8").splitlines()]


def test_canonical_file_exports_byte_identical(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "job-info.jsonl"
    out.write_bytes(V03.read_bytes())
    import_jobinfo(store, out)
    report = export_jobinfo(store, out)
    assert (report.lines, report.merged is not None and report.merged.unchanged) == (4, 4)
    assert out.read_bytes() == V03.read_bytes()


def test_export_is_atomic_and_keeps_the_file_mode(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "job-info.jsonl"
    out.write_text(line("batches/a") + "\n", encoding="utf-8")
    out.chmod(0o640)
    inode = out.stat().st_ino
    export_jobinfo(store, out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert out.stat().st_ino != inode  # replaced by rename, not rewritten in place
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert leftovers == []


def test_failed_write_leaves_the_old_file(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "job-info.jsonl"
    out.write_text(line("batches/a") + "\n", encoding="utf-8")
    before = out.read_bytes()

    def explode(_record: object) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(exporter, "to_line", explode)
    with pytest.raises(BadInput, match="No space left on device"):
        export_jobinfo(store, out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_lines_appended_by_another_program_are_merged_not_lost(
    store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "job-info.jsonl"
    out.write_text(line("batches/a") + "\n", encoding="utf-8")
    import_jobinfo(store, out)
    with open(out, "a", encoding="utf-8") as handle:  # another tool submits a job
        handle.write(line("batches/b", state="JOB_STATE_PENDING") + "\n")
    report = export_jobinfo(store, out)
    assert report.merged is not None and report.merged.new == 1
    assert names(out) == ["batches/a", "batches/b"]


def test_bad_lines_move_to_rejected_file(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "job-info.jsonl"
    out.write_bytes(line("batches/a").encode() + b"\n{broken\n" + b'{"input_file": "x", "batch')
    report = export_jobinfo(store, out)
    assert (report.lines, report.rejected) == (1, 2)
    assert names(out) == ["batches/a"]  # the file parses completely
    rejected = tmp_path / "job-info.jsonl.rejected"
    assert rejected.read_bytes() == b'{broken\n{"input_file": "x", "batch\n'
    # A second bad line later is appended, the first ones kept.
    with open(out, "ab") as handle:
        handle.write(b"[]\n")
    export_jobinfo(store, out)
    assert rejected.read_bytes() == b'{broken\n{"input_file": "x", "batch\n[]\n'


def test_export_to_other_directory_rebases_relative_paths(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "job-info.jsonl"
    src.write_text(line("batches/a", "batch/001.jsonl") + "\n", encoding="utf-8")
    import_jobinfo(store, src)
    out = tmp_path / "copies" / "deep" / "jobs.jsonl"
    export_jobinfo(store, out, base_dir=tmp_path, merge=False)
    assert json.loads(out.read_text("utf-8"))["input_file"] == "../../batch/001.jsonl"
    # ...and importing that copy from its own directory gives back the same row.
    other = open_store(sqlite_url(tmp_path / "other.db"))
    import_jobinfo(other, out, base_dir=tmp_path)
    with other.reading() as session:
        assert session.query(Job.input_file).scalar() == "batch/001.jsonl"
    other.dispose()


def test_jobs_without_a_batch_name_are_not_exported(store: Store, tmp_path: Path) -> None:
    with store.transaction() as session:
        session.add(Job(batch_name=None, input_file="submitting.jsonl", added_at=now()))
        session.add(Job(batch_name="batches/x", input_file="x.jsonl", added_at=now()))
    out = tmp_path / "job-info.jsonl"
    assert export_jobinfo(store, out).lines == 1
    assert names(out) == ["batches/x"]


def test_gembatch_columns_are_exported(store: Store, tmp_path: Path) -> None:
    with store.transaction() as session:
        session.add(
            Job(
                batch_name="batches/x",
                input_file="x.jsonl",
                state="JOB_STATE_SUCCEEDED",
                result_path="results/x.jsonl",
                result_sha256="0" * 64,
                cleaned_at=datetime(2025, 7, 13, 1, 2, 3, tzinfo=UTC),
                extra_json={"owner": "ana"},
                added_at=now(),
            )
        )
    out = tmp_path / "job-info.jsonl"
    export_jobinfo(store, out)
    assert json.loads(out.read_text("utf-8")) == {
        "input_file": "x.jsonl",
        "batch": {"name": "batches/x", "state": "JOB_STATE_SUCCEEDED"},
        "result_path": "results/x.jsonl",
        "result_sha256": "0" * 64,
        "cleaned_at": "2025-07-13T01:02:03+00:00",
        "owner": "ana",
    }


def test_lock_is_held_across_merge_and_write(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "job-info.jsonl"
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with filelock.FileLock(f"{out}.lock"):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        held.wait(10)
        with pytest.raises(GembatchError, match="another gembatch is writing"):
            export_jobinfo(store, out, lock_timeout=0.2)
    finally:
        release.set()
        thread.join()
    with jobinfo_lock(out):
        pass


def test_cli_export_default_and_output(tmp_path: Path) -> None:
    (tmp_path / "job-info.jsonl").write_bytes(V03.read_bytes())
    assert invoke("import").exit_code == 0
    result = invoke("export")
    assert result.exit_code == 0, result.output
    assert result.output == "exported 4 jobs to job-info.jsonl\n"
    assert (tmp_path / "job-info.jsonl").read_bytes() == V03.read_bytes()
    result = invoke("export", "-o", "copy.jsonl")
    assert result.output == "exported 4 jobs to copy.jsonl\n"
    assert (tmp_path / "copy.jsonl").read_bytes() == V03.read_bytes()


def test_cli_export_merges_and_reports_rejected(tmp_path: Path) -> None:
    info = tmp_path / "job-info.jsonl"
    info.write_text(line("batches/a") + "\nnot json\n", encoding="utf-8")
    result = invoke("export")
    assert result.exit_code == 0
    assert result.stdout == (
        "imported job-info.jsonl: 1 new, 0 updated, 0 unchanged, 1 skipped\n"
        "exported 1 job to job-info.jsonl\n"
    )
    assert result.stderr == "moved 1 bad line to job-info.jsonl.rejected\n"


def test_cli_export_to_a_directory_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    result = invoke("export", "-o", "d")
    assert result.exit_code == 2
    assert "is a directory" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_cli_export_unwritable_directory(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    result = invoke("export", "-o", "ro/x.jsonl")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1


def test_line_appended_without_the_lock_while_exporting_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another program appends (without taking our lock) between our merge and rename."""
    from gembatch.jobinfo import exporter
    from gembatch.store.database import open_store

    info = tmp_path / "job-info.jsonl"
    first = (
        '{"input_file": "a.jsonl", "batch": {"name": "batches/aaa", "state": "JOB_STATE_RUNNING"}}'
    )
    late = (
        '{"input_file": "b.jsonl", "batch": {"name": "batches/bbb", "state": "JOB_STATE_PENDING"}}'
    )
    info.write_text(first + "\n")
    store = open_store(f"sqlite:///{tmp_path / 'gembatch.db'}")
    real_write = exporter._write
    calls = []

    def write_after_someone_appended(*args, **kwargs):  # type: ignore[no-untyped-def]
        if not calls:
            with open(info, "a", encoding="utf-8") as handle:
                handle.write(late + "\n")
        calls.append(1)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(exporter, "_write", write_after_someone_appended)
    exporter.export_jobinfo(store, info)
    names = [json.loads(line)["batch"]["name"] for line in info.read_text().splitlines()]
    assert names == ["batches/aaa", "batches/bbb"]
    assert len(calls) == 2  # written again after catching up
    store.dispose()
