"""``gembatch report`` over 1,000 jobs with 1,000 result lines each: first (cold cache)
and second (warm) report times and peak memory, next to a naive baseline.

    python bench/report.py [--jobs 1000] [--lines 1000] [--big-lines 300000] [--keep DIR]

Target: the first report under 30 s; the second instant; memory that does not grow
with result file size. Each measurement runs in a fresh process so its peak RSS
is its own; "growth" is that peak minus the RSS just before the measured call
(interpreter, SQLAlchemy and the open store already loaded).

Printed side by side:

- report #1 (every result file parsed, stats cached) and report #2 (cache only),
  each building the figures and rendering the table, timeline and JSON;
- baseline: the same files parsed naively, ``f.read().splitlines()`` then
  ``json.loads`` per line, summing the same counters (no database);
- one big result file (``--big-lines``) parsed streaming versus naively: the
  memory that grows with file size, or does not.

Result lines are synthetic but shaped like the live service's (§4.5): a
response with candidates, usageMetadata (some with thoughtsTokenCount),
modelVersion and responseId, keys in varying order; 2% are error lines.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

UTC = timezone.utc
T0 = datetime(2025, 7, 12, 8, 0, tzinfo=UTC)
WORDS = [
    "the",
    "answer",
    "depends",
    "on",
    "context",
    "and",
    "scale",
    "so",
    "here",
    "is",
    "a",
    "careful",
    "summary",
    "with",
    "examples",
    "energy",
    "data",
    "model",
    "batch",
    "request",
    "result",
    "token",
    "output",
    "input",
    "system",
    "design",
    "trade",
    "offs",
]


def result_line(rng: random.Random, key: str) -> str:
    if rng.random() < 0.02:
        error = {"code": rng.choice([13, 8, 3]), "message": "Internal error encountered."}
        parts = [("error", error), ("key", key)]
    else:
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 160)))
        prompt, output = rng.randint(10, 400), rng.randint(40, 900)
        usage = {"promptTokenCount": prompt, "candidatesTokenCount": output}
        thinking = rng.randint(0, 500) if rng.random() < 0.3 else 0
        if thinking:
            usage["thoughtsTokenCount"] = thinking
        usage["totalTokenCount"] = prompt + output + thinking
        usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
        response = {
            "candidates": [
                {
                    "content": {"parts": [{"text": text}], "role": "model"},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": usage,
            "modelVersion": "gemini-2.5-flash",
            "responseId": f"{rng.getrandbits(64):016x}",
        }
        parts = [("response", response), ("key", key)]
    rng.shuffle(parts)
    return json.dumps(dict(parts), separators=(",", ":"))


def write_results(path: Path, lines: int, seed: int, prefix: str) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for n in range(lines):
            handle.write(result_line(rng, f"{prefix}-{n}") + "\n")


def generate(root: Path, jobs: int, lines: int) -> None:
    from sqlalchemy import insert

    from gembatch.common import states
    from gembatch.common.hashing import file_sha256
    from gembatch.common.locations import sqlite_url
    from gembatch.store.database import open_store
    from gembatch.store.models import EVENT_STATE_CHANGE, Event, Job

    results = root / "batch" / "results"
    results.mkdir(parents=True)
    rows, events = [], []
    for i in range(jobs):
        path = results / f"{i:04d}.jsonl"
        write_results(path, lines, seed=i, prefix=f"req-{i}")
        created = T0 + timedelta(seconds=20 * i)
        rows.append(
            {
                "id": i + 1,
                "batch_name": f"batches/bench{i:06d}",
                "input_file": f"batch/{i:04d}.jsonl",
                "request_count": lines,
                "model": "models/gemini-2.5-flash",
                "state": states.SUCCEEDED,
                "create_time": created,
                "update_time": created + timedelta(minutes=30 + i % 90),
                "end_time": created + timedelta(minutes=30 + i % 90),
                "result_path": str(path),
                "result_size": path.stat().st_size,
                # The real hash, as poll records it: a file that does not match
                # its recorded hash is read again by every report, and warned of.
                "result_sha256": file_sha256(path),
                "added_at": created,
                "dest_inline": False,
                "error_count": 0,
            }
        )
        events.append(
            {
                "job_id": i + 1,
                "at": created + timedelta(minutes=5 + i % 20),
                "kind": EVENT_STATE_CHANGE,
                "old_state": states.PENDING,
                "new_state": states.RUNNING,
            }
        )
    store = open_store(sqlite_url(root / "gembatch.db"))
    with store.transaction() as session:
        session.execute(insert(Job), rows)
        session.execute(insert(Event), events)
    store.dispose()


# --- measured in a child process ------------------------------------------------------


def _rss_kb() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _peak_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(kind: str, root: Path, big: Path | None) -> dict[str, float]:
    import io

    from rich.console import Console

    from gembatch.common.locations import sqlite_url
    from gembatch.report import build_report, render_report, report_json
    from gembatch.report.resultstats import parse_result_file
    from gembatch.store.database import open_store

    store = open_store(sqlite_url(root / "gembatch.db"))
    before = _rss_kb()
    start = time.perf_counter()
    figures: dict[str, float] = {}
    if kind == "report":
        report = build_report(store, T0 + timedelta(days=2))
        Console(file=io.StringIO(), width=160).print(render_report(report))
        json.dumps(report_json(report))
        figures["succeeded"] = report.succeeded
        figures["failed"] = report.failed
        figures["tokens"] = report.tokens.total
    elif kind == "naive":
        ok = failed = tokens = 0
        for path in sorted((root / "batch" / "results").glob("*.jsonl")):
            ok_, failed_, tokens_ = naive_parse(path)
            ok, failed, tokens = ok + ok_, failed + failed_, tokens + tokens_
        figures.update(succeeded=ok, failed=failed, tokens=tokens)
    elif kind == "big-stream":
        assert big is not None
        stats = parse_result_file(big)
        figures.update(succeeded=stats.succeeded, failed=stats.failed, tokens=stats.tokens.total)
    elif kind == "big-naive":
        assert big is not None
        ok, failed, tokens = naive_parse(big)
        figures.update(succeeded=ok, failed=failed, tokens=tokens)
    figures["seconds"] = time.perf_counter() - start
    figures["growth_mb"] = max(0, _peak_kb() - before) / 1024
    figures["peak_mb"] = _peak_kb() / 1024
    store.dispose()
    return figures


def naive_parse(path: Path) -> tuple[int, int, int]:
    ok = failed = tokens = 0
    with open(path, encoding="utf-8") as handle:
        for line in handle.read().splitlines():
            obj = json.loads(line)
            if "error" in obj:
                failed += 1
            else:
                ok += 1
                tokens += obj["response"]["usageMetadata"]["totalTokenCount"]
    return ok, failed, tokens


def measure(kind: str, root: Path, big: Path | None = None) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--root", str(root), "--big", str(big or "")],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--big-lines", type=int, default=300_000)
    parser.add_argument("--keep", type=Path, help="Generate into DIR and keep it.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--big", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        big = Path(args.big) if args.big else None
        print(json.dumps(child(args.child, args.root, big)))
        return

    with tempfile.TemporaryDirectory(prefix="gembatch-bench-report-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        generate(root, args.jobs, args.lines)
        big = root / "big.jsonl"
        write_results(big, args.big_lines, seed=-1, prefix="big")
        total = sum(p.stat().st_size for p in (root / "batch" / "results").glob("*.jsonl"))
        print(
            f"generated {args.jobs:,} jobs x {args.lines:,} result lines "
            f"({total / 1e6:,.0f} MB) and one {big.stat().st_size / 1e6:,.0f} MB file "
            f"in {time.perf_counter() - start:.1f} s"
        )
        first = measure("report", root)
        second = measure("report", root)
        naive = measure("naive", root)
        assert first["succeeded"] == second["succeeded"] == naive["succeeded"], (first, naive)
        assert first["tokens"] == second["tokens"] == naive["tokens"], (first, naive)
        big_stream = measure("big-stream", root, big)
        big_naive = measure("big-naive", root, big)
        assert big_stream["tokens"] == big_naive["tokens"]

        def row(name: str, fig: dict[str, float], base: dict[str, float] | None = None) -> None:
            ratio = f"{fig['seconds'] / base['seconds']:6.2f}x" if base else ""
            print(
                f"{name:<38} {fig['seconds']:8.2f} s {ratio:>8}"
                f" {fig['growth_mb']:9.1f} MB {fig['peak_mb']:9.1f} MB"
            )

        lines = args.jobs * args.lines
        print(f"\n{'':<38} {'time':>10} {'vs naive':>8} {'growth':>12} {'peak RSS':>12}")
        row(f"report #1, cold cache ({lines:,} lines)", first, naive)
        row("report #2, warm cache", second, naive)
        row("baseline: naive read().splitlines()", naive)
        row(f"one file, streaming ({args.big_lines:,} lines)", big_stream, big_naive)
        row("one file, naive read().splitlines()", big_naive)
        print(
            f"\nreport #1: {lines / first['seconds']:,.0f} lines/s;"
            f" report #2 is {first['seconds'] / max(second['seconds'], 1e-9):,.0f}x faster"
            f" (target: #1 < 30 s: {'met' if first['seconds'] < 30 else 'MISSED'})"
        )


if __name__ == "__main__":
    main()
