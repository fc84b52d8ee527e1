"""Temp files a killed run left behind are removed by the next one (invariant 9),
never a live process's; and results land whole where hard links do not exist."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from jobfactory import MODEL, Made, json_line, make_jobs, poll_process

from gembatch.common import atomic
from gembatch.common.atomic import owner_token, remove_orphan_temps
from gembatch.emulator import Emulator


def poll(emulator: Emulator, run_cli, *args: str):  # type: ignore[no-untyped-def]
    result = run_cli(
        "poll",
        "--base-url",
        emulator.base_url,
        "--interval",
        "0.1",
        *args,
        env={"GEMINI_API_KEY": "test-key"},
    )
    assert result.exit_code == 0, result.output
    return result


def temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob(".*.tmp"))


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()  # reaped: the pid names no process now
    return process.pid


def served(emulator: Emulator, batch_name: str) -> bytes:
    path = emulator.result_path(batch_name)
    assert path is not None
    return path.read_bytes()


def add_large_job(emulator: Emulator, workdir: Path, relative: str, size: int) -> str:
    name = emulator.make_large_result(size, display_name=relative, model=MODEL)
    with open(workdir / "job-info.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json_line(Made(relative, name, None, 1)) + "\n")
    return name


def kill_mid_download(emulator: Emulator, workdir: Path, results: Path) -> list[str]:
    """Start a real `gembatch poll`, SIGKILL it while its download's temp exists."""
    emulator.faults.configure(latency_by_endpoint={"files.download": 30.0})
    process = poll_process(emulator, workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not temps(results) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    emulator.faults.clear()
    return temps(results)


def test_temp_of_a_killed_poll_is_removed_by_the_next_run(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    name = add_large_job(emulator, workdir, "batch/big.jsonl", 2_000_000)
    expected = served(emulator, name)
    results = workdir / "batch" / "results"
    left = kill_mid_download(emulator, workdir, results)
    assert left, "the killed run left no temp file: the kill came too late"
    assert not (results / "big.jsonl").exists()

    poll(emulator, run_cli)
    assert temps(results) == []
    assert (results / "big.jsonl").read_bytes() == expected


def test_temps_are_removed_where_nothing_is_left_to_download(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    make_jobs(emulator, workdir, 2)
    emulator.finish_all()
    poll(emulator, run_cli)
    results = workdir / "batch" / "results"
    dead = owner_token(dead_pid())
    left = [
        results / f".000.jsonl.{dead}.abcd1234.tmp",
        workdir / f".job-info.jsonl.{dead}.efgh5678.tmp",
    ]
    for path in left:
        path.write_bytes(b"partial")

    poll(emulator, run_cli)  # every job is done: nothing is downloaded into results/
    assert [path for path in left if path.exists()] == []


def test_a_temp_whose_owner_is_alive_is_kept(emulator: Emulator, workdir: Path, run_cli) -> None:
    made = make_jobs(emulator, workdir, 1)
    emulator.finish_all()
    expected = served(emulator, made[0].batch_name)
    results = workdir / "batch" / "results"
    results.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "120"])
    try:
        live = results / f".000.jsonl.{owner_token(sleeper.pid)}.abcd1234.tmp"
        dead = results / f".000.jsonl.{owner_token(dead_pid())}.efgh5678.tmp"
        for path in (live, dead):
            path.write_bytes(b"partial")

        poll(emulator, run_cli)  # downloads into results/000.jsonl, beside both temps
        assert live.exists()
        assert not dead.exists()
        assert (results / "000.jsonl").read_bytes() == expected
    finally:
        sleeper.kill()
        sleeper.wait()
    assert remove_orphan_temps([results]) == 1  # its owner is gone now
    assert temps(results) == []


def _aged(path: Path, seconds: float) -> Path:
    path.write_bytes(b"x")
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_the_sweep_judges_each_temp_by_its_owner_or_its_age(tmp_path: Path) -> None:
    mine = owner_token()
    machine, boot = atomic.machine_identity()
    other_machine = f"gb-{'0' if machine[0] != '0' else '1'}{machine[1:]}-{boot}-1234"
    other_boot = f"gb-{machine}-{'0' if boot[0] != '0' else '1'}{boot[1:]}-{os.getpid()}"
    hour = 3600.0
    kept = [
        _aged(tmp_path / f".a.jsonl.{mine}.abcd1234.tmp", 10 * hour),  # this very process
        _aged(tmp_path / f".a.jsonl.{other_machine}.abcd1234.tmp", 10 * hour),
        _aged(tmp_path / ".a.jsonl.abcd1234.tmp", 60),  # old-style, young
        _aged(tmp_path / ".notes.abcd1234.tmp", 10 * hour),  # not a name gembatch writes
        _aged(tmp_path / "a.jsonl", 10 * hour),
    ]
    removed = [
        _aged(tmp_path / f".a.jsonl.{other_machine}.efgh5678.tmp", 30 * hour),
        _aged(tmp_path / f".a.jsonl.{other_boot}.abcd1234.tmp", 60),
        _aged(tmp_path / ".a.jsonl.efgh5678.tmp", 2 * hour),
    ]
    assert remove_orphan_temps([tmp_path, tmp_path / "missing"]) == len(removed)
    assert [path for path in kept if not path.exists()] == []
    assert [path for path in removed if path.exists()] == []


def _no_hard_links(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", refuse)


def _lands_whole(emulator: Emulator, workdir: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    # Two jobs of one input (edited in between): one takes results/000.jsonl, the
    # other, whose claim on that name is refused, its per-batch name.
    made = make_jobs(emulator, workdir, 1) + make_jobs(emulator, workdir, 1, requests=4)
    emulator.finish_all()
    expected = {served(emulator, item.batch_name) for item in made}
    poll(emulator, run_cli)
    results = workdir / "batch" / "results"
    files = {path.read_bytes() for path in results.iterdir() if not path.name.startswith(".")}
    assert files == expected
    assert len(list(results.iterdir())) == 2
    assert (results / "000.jsonl").stat().st_size > 0


def test_results_land_whole_without_hard_links(
    emulator: Emulator, workdir: Path, run_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_hard_links(monkeypatch)
    _lands_whole(emulator, workdir, run_cli)


def test_results_land_whole_without_links_or_noreplace_renames(
    emulator: Emulator, workdir: Path, run_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_hard_links(monkeypatch)
    monkeypatch.setattr(atomic, "rename_noreplace", lambda source, target: False)
    _lands_whole(emulator, workdir, run_cli)


def test_an_abandoned_empty_claim_is_not_taken_for_a_result(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    # What a run killed between its exclusive create and its rename leaves.
    made = make_jobs(emulator, workdir, 1)
    emulator.finish_all()
    expected = served(emulator, made[0].batch_name)
    results = workdir / "batch" / "results"
    results.mkdir(parents=True)
    (results / "000.jsonl").touch()
    (results / f".000.jsonl.{owner_token(dead_pid())}.abcd1234.claim.tmp").write_bytes(b"{}")

    poll(emulator, run_cli)
    assert sorted(p.name for p in results.iterdir()) == ["000.jsonl"]
    assert (results / "000.jsonl").read_bytes() == expected
