"""Indexing one result file of 1,000,000 lines into the ``requests`` table, and
joining it back to its input (``gembatch results``): time, lines per second and
peak memory, next to the floor of merely parsing the same lines.

    python bench/index.py [--lines 1000000] [--postgres URL] [--no-join] [--keep DIR]

Target (issue 14): 1,000,000 lines indexed in at most 30 s, memory flat (it must
not grow with the file). Each measurement runs in a fresh process, so its peak
RSS is its own; "growth" is that peak minus the RSS just before the measured call
(interpreter, SQLAlchemy and the open store already loaded).

Printed side by side:

- index: ``store.indexing.index_file`` into a new SQLite database (and, with
  ``--postgres``, into a schema of its own on that server): every line read,
  hashed, classified and inserted, the job's figures computed by SQL, all in
  one transaction;
- floor: the same file read line by line and ``json.loads``-ed, nothing kept
  (what any reader of the file pays);
- naive: the earlier tools' way, ``f.read().splitlines()`` then ``json.loads``
  per line into a list (run on a tenth of the file: it holds everything);
- join: ``gembatch results --format csv -o FILE`` over the indexed file and a
  1,000,000-line input, as a user runs it.

Result lines are the shape of ``bench/report.py``'s (the live service's, §4.5):
keys in varying order, 2% error lines, some with thinking tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import result_line  # the same line shapes as the report bench


def _rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _peak_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def generate(root: Path, lines: int) -> tuple[Path, Path]:
    batch = root / "batch"
    (batch / "results").mkdir(parents=True, exist_ok=True)
    source, result = batch / "big.jsonl", batch / "results" / "big.jsonl"
    if source.exists() and result.exists():
        return source, result
    rng = random.Random(14)
    with open(source, "w", encoding="utf-8") as inputs, open(result, "w", encoding="utf-8") as out:
        for n in range(lines):
            key = f"req-{n}"
            inputs.write(
                json.dumps({"key": key, "request": {"contents": [{"parts": [{"text": key}]}]}})
                + "\n"
            )
            out.write(result_line(rng, key) + "\n")
    return source, result


def _store_with_job(url: str, result: Path) -> tuple[object, int]:
    from gembatch.common.hashing import file_sha256
    from gembatch.common.timeutil import now
    from gembatch.store.database import open_store
    from gembatch.store.models import Job

    store = open_store(url)
    with store.transaction() as session:
        job = Job(
            input_file="batch/big.jsonl",
            result_path="batch/results/big.jsonl",
            result_sha256=file_sha256(result),
            result_size=result.stat().st_size,
            state="JOB_STATE_SUCCEEDED",
            added_at=now(),
        )
        session.add(job)
        session.flush()
        return store, job.id


def _time_write_locks(store: object) -> list[float]:
    """How long each write transaction lasts (on SQLite: holds the write lock)."""
    from sqlalchemy import event

    spans: list[float] = []
    opened: dict[int, float] = {}
    engine = store.engine  # type: ignore[attr-defined]

    @event.listens_for(engine, "begin")
    def _begin(conn: object) -> None:
        options = conn.get_execution_options()  # type: ignore[attr-defined]
        if options.get("sqlite_begin", "BEGIN IMMEDIATE") == "BEGIN IMMEDIATE":
            opened[id(conn)] = time.perf_counter()

    def _end(conn: object) -> None:
        started = opened.pop(id(conn), None)
        if started is not None:
            spans.append(time.perf_counter() - started)

    event.listen(engine, "commit", _end)
    event.listen(engine, "rollback", _end)
    return spans


def child(kind: str, root: Path, url: str | None) -> dict[str, float]:
    result = root / "batch" / "results" / "big.jsonl"
    figures: dict[str, float] = {}
    if kind == "index":
        from gembatch.store.indexing import index_file

        store, job_id = _store_with_job(url or f"sqlite:///{root / 'gembatch.db'}", result)
        # As poll does it: the hash and size it recorded when the file landed.
        from gembatch.common.hashing import file_sha256

        sha = file_sha256(result)
        locked = _time_write_locks(store)
        before = _rss_kb()
        started = time.perf_counter()
        outcome = index_file(
            store,  # type: ignore[arg-type]
            job_id,
            result,
            sha256=sha,
            size=result.stat().st_size,
        )
        figures["seconds"] = time.perf_counter() - started
        assert outcome.indexed, outcome
        figures["lines"] = outcome.rows
        figures["growth_kb"] = _peak_kb() - before
        figures["write_lock_s"] = max(locked, default=0.0)
        store.dispose()  # type: ignore[attr-defined]
    elif kind == "floor":
        before = _rss_kb()
        started = time.perf_counter()
        count = 0
        with open(result, "rb") as stream:
            for raw in stream:
                json.loads(raw)
                count += 1
        figures["seconds"] = time.perf_counter() - started
        figures["lines"] = count
        figures["growth_kb"] = _peak_kb() - before
    elif kind == "naive":
        tenth = root / "tenth.jsonl"
        with open(result, "rb") as stream, open(tenth, "wb") as out:
            for n, raw in enumerate(stream):
                if n % 10 == 0:
                    out.write(raw)
        before = _rss_kb()
        started = time.perf_counter()
        with open(tenth, encoding="utf-8") as handle:
            parsed = [json.loads(line) for line in handle.read().splitlines()]
        figures["seconds"] = time.perf_counter() - started
        figures["lines"] = len(parsed)
        figures["growth_kb"] = _peak_kb() - before
    return figures


def measure(kind: str, root: Path, url: str | None = None) -> dict[str, float]:
    args = [sys.executable, __file__, "--child", kind, "--root", str(root)]
    if url:
        args += ["--postgres", url]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_join(root: Path) -> dict[str, float]:
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "gembatch", "results", "--format", "csv", "-o", "joined.csv"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    errors = process.stderr.read()
    # wait4: this child's own peak RSS (RUSAGE_CHILDREN would be the largest of all).
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"gembatch results failed: {errors.decode(errors='replace')}")
    with open(root / "joined.csv", encoding="utf-8") as joined:
        rows = sum(1 for _ in joined) - 1
    return {"seconds": seconds, "lines": rows, "peak_kb": usage.ru_maxrss}


def _pg_schema(url: str) -> tuple[str, object]:
    import uuid

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    name = f"gembatch_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    scoped = make_url(url).update_query_dict({"options": f"-csearch_path={name}"})
    return scoped.render_as_string(hide_password=False), (admin, name)


def _row(name: str, figures: dict[str, float], floor: float | None) -> str:
    per_s = figures["lines"] / figures["seconds"] if figures["seconds"] else 0.0
    memory = figures.get("growth_kb", figures.get("peak_kb", 0)) / 1024
    ratio = f"{figures['seconds'] / floor:5.2f}×" if floor else "     "
    return (
        f"{name:<28} {figures['lines']:>10,.0f} lines {figures['seconds']:8.2f} s "
        f"{per_s:>11,.0f} lines/s {memory:8.1f} MB  {ratio}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--postgres", metavar="URL", help="Also index into PostgreSQL at URL.")
    parser.add_argument("--no-join", action="store_true", help="Skip `gembatch results`.")
    parser.add_argument("--keep", type=Path, help="Generate into DIR and keep it (reused).")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.root, args.postgres)))
        return

    with tempfile.TemporaryDirectory(prefix="gembatch-bench-index-") as scratch:
        root = args.keep or Path(scratch)
        started = time.perf_counter()
        _, result = generate(root, args.lines)
        size = result.stat().st_size
        print(
            f"result file: {args.lines:,} lines, {size / 1e6:,.0f} MB "
            f"(made in {time.perf_counter() - started:.0f} s)"
        )
        for leftover in ("gembatch.db", "gembatch.db-wal", "gembatch.db-shm", "joined.csv"):
            (root / leftover).unlink(missing_ok=True)
        floor = measure("floor", root)
        index = measure("index", root)
        naive = measure("naive", root)
        print(f"{'':<28} {'':>16} {'time':>10} {'speed':>19} {'memory':>11}  vs floor")
        print(_row("floor: read + json.loads", floor, None))
        print(_row("index (SQLite)", index, floor["seconds"]))
        print(
            f"{'':<28} longest write transaction (SQLite: the lock): {index['write_lock_s']:.2f} s"
        )
        if args.postgres:
            url, (admin, name) = _pg_schema(args.postgres)
            try:
                print(_row("index (PostgreSQL)", measure("index", root, url), floor["seconds"]))
            finally:
                with admin.begin() as conn:  # type: ignore[attr-defined]
                    conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
        print(_row("naive, 1/10 of the file", naive, floor["seconds"] / 10))
        print(
            f"memory: index grows {index['growth_kb'] / 1024:.1f} MB for a {size / 1e6:,.0f} MB "
            f"file; naive grows {naive['growth_kb'] / 1024:.0f} MB for a tenth of it "
            f"(≈ {naive['growth_kb'] * 10 / 1024:,.0f} MB for all)"
        )
        target = "met" if index["seconds"] <= 30 * args.lines / 1_000_000 else "MISSED"
        print(f"target ≤ 30 s per 1,000,000 lines: {target} ({index['seconds']:.1f} s)")
        if not args.no_join:
            print(_row("join: gembatch results csv", measure_join(root), floor["seconds"]))
            print("(join memory is the whole process's peak RSS)")


if __name__ == "__main__":
    main()
