"""Several pollers on one PostgreSQL database share a fleet, and none does a job twice.

Run: ``python bench/pollers.py`` (PostgreSQL on 127.0.0.1:5432, database
``test``, as the tests use; ``--pg URL`` for another server).

For each poller count K (default 1, then 4): a fresh fleet of N finished
batches on the emulator (results to download, batches and inputs to delete),
a fresh PostgreSQL database that tracks them (``gembatch import``), then K
``gembatch poll`` processes started together, as K hosts would run them. The
time is until the last one exits; the emulator's own counts then show that
every result was downloaded once and every batch and input deleted once (a
second delete of the same batch would be a 404). The figures of K=1 are the
baseline of the same run.

On this machine all pollers share two cores with the emulator, which hosts of
their own would not: the answers carry ``--latency`` so that a poller spends
its time waiting on the API, as it does against the real service.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from poll import KEY, EmulatorProcess, make_batches, write_job_info
from sqlalchemy import create_engine, text

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def fresh_database(admin_url: str) -> tuple[str, str]:
    name = f"gembatch_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}", name


def drop_database(admin_url: str, name: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def run_fleet(
    admin_url: str, n: int, pollers: int, latency: float, concurrency: int
) -> dict[str, float]:
    emu = EmulatorProcess("--pending-s", "0", "--running-s", "0", "--jitter-s", "0")
    url, name = fresh_database(admin_url)
    try:
        with tempfile.TemporaryDirectory(prefix="gembatch-bench-pollers-") as tmp:
            workspace = Path(tmp)
            made = make_batches(emu, workspace, n, "p")
            emu.control("finish-all", {})
            write_job_info(workspace / "job-info.jsonl", made)
            env = {**os.environ, "GEMINI_API_KEY": KEY, "GEMBATCH_DB": url}
            subprocess.run(
                [sys.executable, "-m", "gembatch", "import"],
                cwd=workspace,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            emu.control("reset-stats", {})
            emu.control("faults", {"latency_s": latency})
            command = [
                sys.executable,
                "-m",
                "gembatch",
                "poll",
                "--base-url",
                emu.url,
                "--interval",
                "0",
                "--concurrency",
                str(concurrency),
            ]
            started = time.perf_counter()
            processes = [
                subprocess.Popen(command, cwd=workspace, env=env, stdout=subprocess.PIPE, text=True)
                for _ in range(pollers)
            ]
            outs = [process.communicate()[0] for process in processes]
            elapsed = time.perf_counter() - started
            if any(process.returncode != 0 for process in processes):
                raise SystemExit(f"a poller failed:\n{outs}")
            stats = emu.control("stats")
    finally:
        emu.stop()
        drop_database(admin_url, name)
    counts = stats["counts"]  # type: ignore[index]
    shares = sorted(_written(out) for out in outs)
    return {
        "elapsed": elapsed,
        "downloads": _count(counts, "files.download", "200"),
        "batch_deletes": _count(counts, "batches.delete", "200"),
        "second_deletes": _count(counts, "batches.delete", "404"),
        "file_deletes": _count(counts, "files.delete", "200"),
        "shares": shares,  # type: ignore[dict-item]
    }


def _written(out: str) -> int:
    for line in reversed(out.splitlines()):
        if "result files written this run" in line:
            return int(line.split("; ")[-1].split()[0])
    return 0


def _count(counts: dict[str, dict[str, int]], endpoint: str, status: str) -> int:
    return int((counts.get(endpoint) or {}).get(status, 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--pollers", default="1,4")
    parser.add_argument("--latency", type=float, default=0.25)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--pg", default=DEFAULT_PG)
    args = parser.parse_args()
    print(
        f"{args.jobs} finished jobs on PostgreSQL, {args.latency * 1000:.0f} ms of API latency, "
        f"--concurrency {args.concurrency} per poller"
    )
    header = (
        f"{'pollers':>7} | {'time':>8} | {'speed-up':>8} | {'downloads':>9} | "
        f"{'batch deletes':>13} | {'second deletes':>14} | {'input deletes':>13} | "
        "results per poller"
    )
    print(header)
    print("-" * len(header))
    first: float | None = None
    for count in (int(k) for k in args.pollers.split(",")):
        row = run_fleet(args.pg, args.jobs, count, args.latency, args.concurrency)
        first = first or row["elapsed"]
        print(
            f"{count:>7} | {row['elapsed']:>6.2f} s | {first / row['elapsed']:>7.2f}x | "
            f"{row['downloads']:>9} | {row['batch_deletes']:>13} | {row['second_deletes']:>14} | "
            f"{row['file_deletes']:>13} | {json.dumps(row['shares'])}",
            flush=True,
        )


if __name__ == "__main__":
    main()
