"""What one poll cycle costs at fleet sizes a week of batch work reaches.

Run: ``python bench/scale.py`` (``--sizes 1000,10000`` for a shorter run).

For each size N: N inline batches are made on the emulator through the real
SDK, all RUNNING and none finishing, tracked in a fresh SQLite database by
``gembatch import``. One unmeasured cycle confirms them (as a first
``gembatch poll`` would), then the emulator answers with ``--latency`` per
request and one cycle is measured, in its own process:

- its wall time (the whole cycle as ``gembatch poll`` runs it: job-info
  merged first, exported after changes), next to the API floor measured in the same run: the same
  listing pages read back to back at the same latency, which no poller that
  learns every state can beat (the pages are chained by their tokens);
- API calls per job;
- database statements that write (INSERT/UPDATE/DELETE) and transactions
  committed in the cycle;
- the peak RSS of the cycle's process (``wait4``).

The emulator runs in a process of its own, as in the other benchmarks.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from poll import KEY, MODEL, EmulatorProcess, client

# Runs in the measured process: one cycle, counting what it writes.
CYCLE = r"""
import json, sys, time
from sqlalchemy import event
from gembatch.common.locations import resolve
from gembatch.engine.poller import PollOptions
from gembatch.engine.progress import QuietReporter
from gembatch.engine.session import make_poller
from gembatch.remote.client import Gemini
from gembatch.store.database import open_store

info, url, key = sys.argv[1], sys.argv[2], sys.argv[3]
locations = resolve(info, None)
store = open_store(locations.db_url)
counts = {"writes": 0, "commits": 0}

def on_execute(conn, cursor, statement, parameters, context, executemany):
    if statement.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
        counts["writes"] += 1

def on_commit(conn):
    counts["commits"] += 1

event.listen(store.engine, "before_cursor_execute", on_execute)
event.listen(store.engine, "commit", on_commit)
gemini = Gemini(key, base_url=url)
poller = make_poller(store, gemini, locations, PollOptions(), QuietReporter())
started = time.perf_counter()
result = poller.run_cycle()
elapsed = time.perf_counter() - started
calls = sum(gemini.calls.values())
print(json.dumps({"elapsed": elapsed, "calls": calls, "claimed": result.claimed,
                  "changes": result.state_changes, **counts}))
"""

FLOOR = r"""
import json, sys, time
from gembatch.remote.client import Gemini
url, key, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
gemini = Gemini(key, base_url=url)
started = time.perf_counter()
seen = sum(1 for _ in gemini.list_batches(page_size=size))
print(json.dumps({"elapsed": time.perf_counter() - started, "seen": seen,
                  "calls": sum(gemini.calls.values())}))
"""


def make_fleet(emu: EmulatorProcess, n: int, threads: int = 8) -> list[str]:
    sdk = client(emu.url)
    request = {"contents": [{"parts": [{"text": "q"}], "role": "user"}]}

    def make(index: int) -> str:
        job = sdk.batches.create(
            model=MODEL, src=[request], config={"display_name": f"scale-{index:06d}"}
        )
        return str(job.name)

    with ThreadPoolExecutor(threads) as pool:
        names = list(pool.map(make, range(n)))
    sdk.close()
    return names


def write_job_info(path: Path, names: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for index, name in enumerate(names):
            line = {
                "input_file": f"batch/scale-{index:06d}.jsonl",
                "count": 1,
                "batch": {"name": name, "model": MODEL, "state": "JOB_STATE_RUNNING"},
            }
            handle.write(json.dumps(line) + "\n")


def peak_of(script: str, args: list[str], cwd: Path) -> tuple[dict[str, float], float]:
    """As :func:`run_measured`, but the peak of this child alone (``wait4``)."""
    process = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    _, status, usage = os.wait4(process.pid, 0)
    out, err = process.stdout.read(), process.stderr.read()
    code = os.waitstatus_to_exitcode(status)
    process.returncode = code
    if code != 0:
        raise SystemExit(f"measured process failed ({code}):\n{err}")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 1024


def bench_size(n: int, latency: float) -> dict[str, float]:
    emu = EmulatorProcess("--pending-s", "0", "--running-s", "100000000", "--jitter-s", "0")
    try:
        with tempfile.TemporaryDirectory(prefix="gembatch-bench-scale-") as tmp:
            workspace = Path(tmp)
            started = time.perf_counter()
            names = make_fleet(emu, n)
            info = workspace / "job-info.jsonl"
            write_job_info(info, names)
            subprocess.run(
                [sys.executable, "-m", "gembatch", "import", str(info)],
                cwd=workspace,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            made = time.perf_counter() - started
            # The first cycle confirms every job (unmeasured, without latency).
            peak_of(CYCLE, [str(info), emu.url, KEY], workspace)
            emu.control("faults", {"latency_s": latency})
            floor, _ = peak_of(FLOOR, [emu.url, KEY, "100"], workspace)
            cycle, peak = peak_of(CYCLE, [str(info), emu.url, KEY], workspace)
    finally:
        emu.stop()
    pages = math.ceil(n / 100)
    return {
        "n": n,
        "made": made,
        "cycle": cycle["elapsed"],
        "floor": floor["elapsed"],
        "floor_pages": floor["calls"],
        "pages": pages,
        "calls_per_job": cycle["calls"] / n,
        "writes": cycle["writes"],
        "commits": cycle["commits"],
        "claimed": cycle["claimed"],
        "changes": cycle["changes"],
        "peak_mb": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    print(
        f"one poll cycle, every job RUNNING and none finishing, {args.latency * 1000:.0f} ms "
        "of API latency per request"
    )
    header = (
        f"{'N':>7} | {'cycle':>8} | {'API floor':>9} | {'ratio':>6} | {'calls/job':>9} | "
        f"{'writes':>6} | {'commits':>7} | {'claimed':>7} | {'peak RSS':>8} | fleet made in"
    )
    print(header)
    print("-" * len(header))
    for n in (int(size) for size in args.sizes.split(",")):
        row = bench_size(n, args.latency)
        print(
            f"{row['n']:>7,} | {row['cycle']:>6.2f} s | {row['floor']:>7.2f} s | "
            f"{row['cycle'] / row['floor']:>5.2f}x | {row['calls_per_job']:>9.3f} | "
            f"{row['writes']:>6} | {row['commits']:>7} | {row['claimed']:>7} | "
            f"{row['peak_mb']:>5.0f} MB | {row['made']:.0f} s ({row['floor_pages']:.0f} pages)",
            flush=True,
        )


if __name__ == "__main__":
    main()
