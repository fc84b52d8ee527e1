"""Import and export speed and memory for a large job-info.jsonl, next to baselines.

    python bench/store.py [--lines 100000] [--small 10000] [--baseline-lines 5000]

Targets: import and export of 100,000 job lines each under 5 s, with memory
that does not grow with the file. Every measurement runs in a fresh process,
so its peak RSS (``VmHWM``) is its own; "growth" is that peak minus the RSS
just before the operation (interpreter, SQLAlchemy and the open store already
loaded), i.e. what the operation itself needed.

Printed side by side, all in this one run:

- import and export of ``--lines`` and of ``--small`` lines: the same
  per-line speed and the same memory growth show that memory is flat;
- re-import of the unchanged file (what ``poll`` pays to pick up lines another
  program appended) and export with its merge (what ``poll`` pays per change);
- baselines: a naive ORM import, one job per transaction, of ``--baseline-lines``
  lines, and a naive export that loads every ``Job`` object then writes; ratios
  are per line.
- status rendering of 10,000 imported jobs (``gembatch.view.status.render_status``).
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

UTC = timezone.utc
_STATES = ["JOB_STATE_SUCCEEDED"] * 80 + ["JOB_STATE_FAILED"] * 5 + ["JOB_STATE_CANCELLED"] * 3
_STATES += ["JOB_STATE_EXPIRED", "JOB_STATE_RUNNING"] * 5 + ["JOB_STATE_PENDING"] * 2


# --- data -----------------------------------------------------------------------------


def job_line(i: int) -> str:
    """Job ``i`` as a line: mostly v0.3, some v0.2 and v0.1 (as real files mix them)."""
    created = datetime(2025, 7, 12, 8, 0, tzinfo=UTC) + timedelta(seconds=3 * i)
    name = f"batches/{i:08x}q7v8n2f9c5l1x3mdae0t"
    input_file = f"batch/{i // 1000:03d}/{'données-' if i % 7 == 0 else ''}{i:06d}.jsonl"
    if i % 10 == 9:
        return json.dumps(
            {
                "input_file": input_file,
                "job_name": name,
                "uploaded_file_name": f"files/u{i:010d}",
                "display_name": f"batch-job-{i:06d}",
                "created_at": created.replace(tzinfo=None).isoformat(),
            }
        )
    state = _STATES[i % len(_STATES)]
    ended = created + timedelta(seconds=300 + (i * 37) % 20000)
    batch: dict[str, Any] = {
        "name": name,
        "display_name": input_file,
        "model": "models/gemini-2.5-flash",
        "state": state,
        "create_time": created.isoformat(),
        "update_time": ended.isoformat(),
    }
    if state.endswith(("SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED")):
        batch["end_time"] = ended.isoformat()
    if state.endswith("SUCCEEDED"):
        batch["dest"] = {"file_name": f"files/batch-{i:08x}"}
    if i % 10 == 8:
        return json.dumps({"input_file": input_file, "batch": batch})
    return json.dumps(
        {
            "input_file": input_file,
            "count": 1000 + i % 17,
            "uploaded_file_name": f"files/u{i:010d}",
            "batch": batch,
        },
        ensure_ascii=False,
    )


def write_file(path: Path, lines: int) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for start in range(0, lines, 10_000):
            out.write("".join(job_line(i) + "\n" for i in range(start, min(lines, start + 10_000))))


# --- one measurement per process ------------------------------------------------------


def _rss_kib(field: str) -> int:
    try:
        for row in Path("/proc/self/status").read_text().splitlines():
            if row.startswith(field + ":"):
                return int(row.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _child(op: str, file: Path, db: Path) -> dict[str, Any]:
    from gembatch.common.locations import sqlite_url
    from gembatch.jobinfo.exporter import export_jobinfo
    from gembatch.jobinfo.importer import import_jobinfo
    from gembatch.store.database import open_store

    store = open_store(sqlite_url(db))
    # Warm up what the first statement loads lazily, so it does not count as growth.
    with store.reading() as session:
        session.connection()
    ops: dict[str, Callable[[], Any]] = {
        "import": lambda: import_jobinfo(store, file).new,
        "reimport": lambda: import_jobinfo(store, file).unchanged,
        "export": lambda: export_jobinfo(store, file.with_suffix(".out"), merge=False).lines,
        "export_merge": lambda: export_jobinfo(store, file).lines,
        "naive_import": lambda: _naive_import(store, file),
        "naive_export": lambda: _naive_export(store, file.with_suffix(".naive")),
    }
    before = _rss_kib("VmRSS")
    start = time.perf_counter()
    count = ops[op]()
    seconds = time.perf_counter() - start
    peak = _rss_kib("VmHWM")
    store.dispose()
    return {
        "op": op,
        "lines": count,
        "seconds": seconds,
        "peak_kib": peak,
        "growth_kib": peak - before,
    }


def _naive_import(store: Any, file: Path) -> int:
    """What one would write first: parse a line, add a Job, commit, repeat."""
    from gembatch.common.timeutil import now
    from gembatch.jobinfo.lines import parse_line
    from gembatch.store.models import Job

    count = 0
    with open(file, encoding="utf-8") as lines:
        for text in lines:
            record = parse_line(text)
            with store.transaction() as session:
                session.add(Job(**record.values(), added_at=now()))
            count += 1
    return count


def _naive_export(store: Any, out: Path) -> int:
    """Load every Job object, then write them (no streaming, no atomic rename)."""
    from sqlalchemy import select

    from gembatch.jobinfo.lines import record_from_row, to_line
    from gembatch.store.models import Job

    with store.reading() as session:
        jobs = session.scalars(select(Job).order_by(Job.id)).all()
        text = "".join(to_line(record_from_row(j)) + "\n" for j in jobs)
    out.write_text(text, encoding="utf-8")
    return len(jobs)


def measure(op: str, file: Path, db: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", op, str(file), str(db)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{op} failed:\n{done.stderr}")
    return json.loads(done.stdout)


# --- status rendering -----------------------------------------------------------------


def bench_status(db: Path, repeat: int = 3) -> dict[str, float] | None:
    """Load and render the jobs in ``db`` with gembatch's status renderer."""
    try:
        from rich.console import Console

        from gembatch.store.snapshots import read_snapshot
        from gembatch.view.status import render_status
    except ImportError:
        print("status rendering: gembatch.view.status is not available")
        return None
    from gembatch.common.locations import sqlite_url
    from gembatch.store.database import open_store

    store = open_store(sqlite_url(db))
    try:
        load_s = render_s = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            snapshot = read_snapshot(store)
            load_s = min(load_s, time.perf_counter() - start)
            start = time.perf_counter()
            console = Console(file=io.StringIO(), width=160, force_terminal=True)
            console.print(render_status(snapshot, datetime(2025, 7, 20, tzinfo=UTC)))
            render_s = min(render_s, time.perf_counter() - start)
    finally:
        store.dispose()
    print(f"status rendering of {len(snapshot.jobs):,} imported jobs (best of {repeat}):")
    print(f"  load_snapshot {load_s:7.3f} s   render_status {render_s:7.3f} s")
    return {"load_snapshot": load_s, "render_status": render_s}


# --- report ---------------------------------------------------------------------------


def _row(label: str, m: dict[str, Any]) -> str:
    per_line_us = m["seconds"] / max(1, m["lines"]) * 1e6
    return (
        f"  {label:<34} {m['lines']:>8,} {m['seconds']:8.2f} s {per_line_us:8.1f} µs"
        f" {m['peak_kib'] / 1024:8.1f} MiB {m['growth_kib'] / 1024:8.1f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--baseline-lines", type=int, default=5_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gembatch-bench-") as tmp:
        work = Path(tmp)
        big, small, base = work / "big.jsonl", work / "small.jsonl", work / "base.jsonl"
        start = time.perf_counter()
        write_file(big, args.lines)
        write_file(small, args.small)
        write_file(base, args.baseline_lines)
        size_mb = big.stat().st_size / 1e6
        took = time.perf_counter() - start
        print(f"generated {args.lines:,} lines ({size_mb:.1f} MB) in {took:.1f} s")

        results: dict[str, dict[str, Any]] = {}
        for key, op, file, db in [
            ("import", "import", big, work / "big.db"),
            ("reimport", "reimport", big, work / "big.db"),
            ("export", "export", big, work / "big.db"),
            ("export_merge", "export_merge", big, work / "big.db"),
            ("import_small", "import", small, work / "small.db"),
            ("export_small", "export", small, work / "small.db"),
            ("naive_import", "naive_import", base, work / "naive.db"),
            ("naive_export", "naive_export", big, work / "big.db"),
        ]:
            results[key] = measure(op, file, db)

        r = results
        print()
        print(
            f"  {'':<34} {'lines':>8} {'time':>10} {'per line':>11} {'peak RSS':>12} {'growth':>12}"
        )
        print(_row(f"import {args.lines:,} (new)", r["import"]))
        print(_row(f"re-import {args.lines:,} (unchanged)", r["reimport"]))
        print(_row(f"export {args.lines:,}", r["export"]))
        print(_row(f"export {args.lines:,} + merge (poll)", r["export_merge"]))
        print(_row(f"import {args.small:,} (new)", r["import_small"]))
        print(_row(f"export {args.small:,}", r["export_small"]))
        print(_row("baseline: naive ORM import", r["naive_import"]))
        print(_row(f"baseline: naive export {args.lines:,}", r["naive_export"]))

        def per_line(m: dict[str, Any]) -> float:
            return m["seconds"] / max(1, m["lines"])

        print()
        print("ratios:")
        print(
            f"  naive import / gembatch import, per line      "
            f"{per_line(r['naive_import']) / per_line(r['import']):7.1f}x"
        )
        print(
            f"  naive export / gembatch export, time          "
            f"{r['naive_export']['seconds'] / r['export']['seconds']:7.1f}x"
        )
        print(
            f"  naive export / gembatch export, memory growth "
            f"{r['naive_export']['growth_kib'] / max(1, r['export']['growth_kib']):7.1f}x"
        )
        scale = args.lines / args.small
        print(
            f"  memory growth {args.lines:,} / {args.small:,} lines ({scale:.0f}x the file):"
            f" import {r['import']['growth_kib'] / max(1, r['import_small']['growth_kib']):.2f}x,"
            f" export {r['export']['growth_kib'] / max(1, r['export_small']['growth_kib']):.2f}x"
        )
        ok_import = r["import"]["seconds"] < 5
        ok_export = r["export"]["seconds"] < 5
        print(
            f"  targets: import < 5 s {'met' if ok_import else 'MISSED'}, "
            f"export < 5 s {'met' if ok_export else 'MISSED'}"
        )
        print()
        bench_status(work / "small.db")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        print(json.dumps(_child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))))
    else:
        main()
