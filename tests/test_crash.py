"""Crash safety: SIGKILL a real `gembatch poll` at many moments, check the invariants each time.

After every kill: the database passes integrity_check, job-info.jsonl parses
completely, every file under a final name in results/ is whole, and no remote
batch is gone whose results are not recorded. A last run completes every job
with result files byte-identical to what the emulator served.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from jobfactory import MODEL, Made, json_line, make_jobs, poll_process

from gembatch.emulator import Emulator

KILLS = 55


def start_poll(emulator: Emulator, workdir: Path) -> subprocess.Popen[bytes]:
    return poll_process(
        emulator,
        workdir,
        "--concurrency",
        "2",
        interval="0.1",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def add_large_jobs(emulator: Emulator, workdir: Path, sizes: list[int]) -> list[Made]:
    """Succeeded batches with big result files, so some kills land mid-download."""
    made = []
    for index, size in enumerate(sizes):
        relative = f"batch/big-{index}.jsonl"
        name = emulator.make_large_result(size, display_name=relative, model=MODEL)
        made.append(Made(relative, name, None, 1))
    with open(workdir / "job-info.jsonl", "a", encoding="utf-8") as handle:
        for item in made:
            handle.write(json_line(item) + "\n")
    return made


def check_invariants(
    workdir: Path, expected: dict[str, bytes], by_file: dict[str, str], emulator: Emulator
) -> None:
    db = workdir / "gembatch.db"
    if db.exists():
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            recorded = {
                name: (path, downloaded)
                for name, path, downloaded in conn.execute(
                    "select batch_name, result_path, downloaded_at from jobs"
                )
            }
    else:
        recorded = {}
    info = workdir / "job-info.jsonl"
    for number, line in enumerate(info.read_text(encoding="utf-8").splitlines(), 1):
        assert isinstance(json.loads(line), dict), f"job-info.jsonl:{number} is not whole"
    results = workdir / "batch" / "results"
    if results.exists():
        for path in results.iterdir():
            if path.name.startswith("."):
                continue  # a temporary file: never under a final name
            assert path.read_bytes() == expected[by_file[path.name]], f"{path} is not whole"
    alive = set(emulator.batch_names())
    for name in expected:
        if name not in alive:
            path, downloaded = recorded.get(name, (None, None))
            assert downloaded is not None, f"{name} deleted before its results were recorded"
            assert path and Path(path).read_bytes() == expected[name]


def cleaned_count(workdir: Path) -> int:
    db = workdir / "gembatch.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return conn.execute("select count(*) from jobs where cleaned_at is not null").fetchone()[0]


@pytest.mark.slow
def test_sigkill_at_many_moments_loses_nothing(emulator: Emulator, workdir: Path) -> None:
    regular = make_jobs(emulator, workdir, 36, requests=20)
    emulator.finish_all()
    large = add_large_jobs(emulator, workdir, [12_000_000, 9_000_000, 15_000_000, 7_000_000])
    expected: dict[str, bytes] = {}
    by_file: dict[str, str] = {}
    for item in [*regular, *large]:
        path = emulator.result_path(item.batch_name)
        assert path is not None
        expected[item.batch_name] = path.read_bytes()
        by_file[Path(item.input_file).name] = item.batch_name
    # Slow enough that each run gets only part of the way.
    emulator.faults.configure(latency_s=0.04)
    emulator.faults.configure(latency_by_endpoint={"files.download": 0.15})
    rng = random.Random(20261130)

    kills = 0
    progress: list[int] = []
    for attempt in range(KILLS):
        before = emulator.count()
        process = start_poll(emulator, workdir)
        if attempt % 3 == 0:
            # Anywhere, start-up and the first job-info merge included.
            time.sleep(rng.uniform(0.0, 1.2))
        else:
            deadline = time.monotonic() + 20
            while emulator.count() == before and time.monotonic() < deadline:
                if process.poll() is not None:
                    break
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.4))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
        check_invariants(workdir, expected, by_file, emulator)
        progress.append(cleaned_count(workdir))
    assert kills >= 50
    # The kills landed while work was under way, not after everything was done.
    assert sum(1 for done in progress if done < len(expected)) >= 50, progress
    assert progress[-1] > 0  # and the killed runs still made progress between kills

    emulator.faults.clear()
    final = start_poll(emulator, workdir)
    assert final.wait(timeout=300) == 0
    check_invariants(workdir, expected, by_file, emulator)
    with sqlite3.connect(workdir / "gembatch.db") as conn:
        rows = conn.execute("select batch_name, result_path, cleaned_at from jobs").fetchall()
    assert len(rows) == len(expected)
    for name, path, cleaned in rows:
        assert cleaned is not None
        assert Path(path).read_bytes() == expected[name]
    assert set(emulator.batch_names()).isdisjoint(expected)
