"""Crash safety of `gembatch submit`: SIGKILL real submit processes at many moments.

Each run submits every input (those already submitted are skipped, leftovers of
the killed run before are settled first) and is killed: at a random instant,
the moment an upload or a create has been carried out (the emulator's request
listener fires before the answer is sent, so the client never hears it), or
just after. After every kill the database passes integrity_check and
job-info.jsonl parses. A last run without kills finishes, and then every input
has exactly one live, tracked batch, no input got a batch twice, every batch
ever made is tracked, and no uploaded file is left that no job uses.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from jobfactory import request_lines

from gembatch.emulator import Emulator

INPUTS = 40
KILLS = 22
MODES = ("random", "upload", "create", "after-create")


def write_inputs(workdir: Path) -> list[str]:
    names = []
    for index in range(INPUTS):
        relative = f"batch/{index:03d}.jsonl"
        path = workdir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(request_lines(index, 2)) + "\n")
        names.append(relative)
    return names


def start_submit(emulator: Emulator, workdir: Path, inputs: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "GEMINI_API_KEY": "test-key"}
    env.pop("GOOGLE_API_KEY", None)
    env.pop("GEMBATCH_DB", None)
    command = [sys.executable, "-m", "gembatch", "submit", "--base-url", emulator.base_url]
    return subprocess.Popen(
        [*command, *inputs], cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


class Killer:
    """SIGKILLs the running submit when the emulator has carried out the n-th call of an
    endpoint: at once (the answer is never sent) or ``delay_s`` later."""

    def __init__(self, emulator: Emulator) -> None:
        self.pid: int | None = None
        self.endpoint = ""
        self.remaining = 0
        self.delay_s = 0.0
        self.fired = threading.Event()
        emulator.on_request(self._seen)

    def arm(self, pid: int, endpoint: str, nth: int, delay_s: float) -> None:
        self.fired.clear()
        self.endpoint, self.remaining, self.delay_s, self.pid = endpoint, nth, delay_s, pid

    def disarm(self) -> None:
        self.pid = None

    def _seen(self, record) -> None:  # type: ignore[no-untyped-def]
        if self.pid is None or record.endpoint != self.endpoint or record.status != 200:
            return
        self.remaining -= 1
        if self.remaining > 0:
            return
        pid, self.pid = self.pid, None
        if self.delay_s:
            time.sleep(self.delay_s)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self.fired.set()


def check_files(workdir: Path) -> None:
    db = workdir / "gembatch.db"
    if db.exists():
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    info = workdir / "job-info.jsonl"
    if info.exists():
        for number, line in enumerate(info.read_text(encoding="utf-8").splitlines(), 1):
            assert isinstance(json.loads(line), dict), f"job-info.jsonl:{number} is not whole"


def input_of(display_name: str | None) -> str:
    """``gembatch:batch/003.jsonl:1a2b3c4d5e`` -> ``batch/003.jsonl``."""
    assert display_name and display_name.startswith("gembatch:"), display_name
    return display_name.split(":", 1)[1].rsplit(":", 1)[0]


def check_settled(emulator: Emulator, workdir: Path, inputs: list[str]) -> Counter[str]:
    with sqlite3.connect(workdir / "gembatch.db") as conn:
        rows = conn.execute(
            "select input_file, batch_name, submit_state, uploaded_file_name, cleaned_at from jobs"
        ).fetchall()
    kept = [row for row in rows if row[2] == "submitted"]
    assert sorted(row[0] for row in kept) == sorted(inputs), "not exactly one job per input"
    alive = set(emulator.batch_names())
    assert {row[1] for row in kept} == alive, "the live batches are not the inputs' jobs"
    created = emulator.created_batches()
    per_input = Counter(input_of(batch.display_name) for batch in created)
    assert set(per_input) == set(inputs)
    assert all(count == 1 for count in per_input.values()), f"created twice: {per_input}"
    assert {batch.name for batch in created} <= {row[1] for row in rows}, "an untracked batch"
    used = {row[3] for row in kept}
    results = {emulator.result_file(batch.name) for batch in created}
    stranded = set(emulator.file_names()) - used - results
    assert not stranded, f"uploaded files no job uses: {sorted(stranded)}"
    return per_input


@pytest.mark.slow
def test_sigkill_submit_at_many_moments(emulator: Emulator, workdir: Path) -> None:
    inputs = write_inputs(workdir)
    # Slow enough that each run gets only part of the way before it is killed.
    emulator.faults.configure(latency_s=0.05)
    rng = random.Random(20261201)
    killer = Killer(emulator)
    kills: Counter[str] = Counter()
    settled: Counter[str] = Counter()  # how later runs settled the killed runs' intents
    for attempt in range(KILLS):
        mode = MODES[attempt % len(MODES)]
        process = start_submit(emulator, workdir, inputs)
        if mode == "random":
            time.sleep(rng.uniform(0.3, 1.5))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills[mode] += 1
        else:
            endpoint = "files.upload_data" if mode == "upload" else "batches.create"
            delay = rng.uniform(0.0, 0.05) if mode == "after-create" else 0.0
            killer.arm(process.pid, endpoint, rng.randint(1, 3), delay)
            process.wait(timeout=120)
            if killer.fired.is_set():
                kills[mode] += 1
            killer.disarm()
        output = process.communicate(timeout=120)[0].decode()
        settled["adopted"] += output.count("found after an interruption")
        settled["undone"] += output.count("nothing was created")
        check_files(workdir)
    killer.disarm()

    emulator.faults.clear()
    final = start_submit(emulator, workdir, inputs)
    output = final.communicate(timeout=120)[0].decode()
    assert final.returncode == 0, output
    check_files(workdir)
    check_settled(emulator, workdir, inputs)
    creates = emulator.count("batches.create")
    print(
        f"\nsubmit crash test: {sum(kills.values())} kills ({dict(kills)}), "
        f"{creates} creates for {INPUTS} inputs, "
        f"{emulator.count('files.upload')} uploads started; leftovers adopted "
        f"{settled['adopted']}, undone {settled['undone']}"
    )
    assert sum(kills.values()) >= KILLS - 4
    assert creates == INPUTS
    # Both kinds of leftover came up: a batch made but never heard of, and none made.
    assert settled["adopted"] > 0 and settled["undone"] > 0
