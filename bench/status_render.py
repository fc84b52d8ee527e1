"""How long ``gembatch status`` takes to load and render N jobs, next to a baseline.

    python bench/status_render.py [N]        (default 10,000; target: under 1 s)

Baseline: a plain rich ``Table`` of the same rows, strings already formatted,
none of gembatch's logic (states, durations, ordering, fitting). The ratio is
what gembatch's rendering costs on top of rich itself. Also timed: loading the
snapshot from a SQLite file, and the folded live-view variant (``max_rows=40``).
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

from fleet import NOW, best_of, fill, make_jobs
from rich.console import Console
from rich.table import Table

from gembatch.common import states
from gembatch.common.snapshot import JobView, Snapshot
from gembatch.store.database import open_store
from gembatch.store.snapshots import read_snapshot
from gembatch.view.status import render_status

WIDTH = 160
_MIX = [states.SUCCEEDED] * 90 + [states.FAILED] * 3 + [states.CANCELLED] * 2
_MIX += [states.EXPIRED, states.RUNNING, states.RUNNING, states.PENDING, None]


def _fill_db(url: str, jobs: list[JobView]) -> None:
    store = open_store(url)
    try:
        fill(store, jobs)
    finally:
        store.dispose()


def _console() -> Console:
    return Console(file=io.StringIO(), width=WIDTH, force_terminal=True, color_system="truecolor")


def _baseline(jobs: list[JobView]) -> None:
    table = Table()
    for header in ("#", "input file", "requests", "state", "created", "ended", "duration"):
        table.add_column(header)
    for j in jobs:
        table.add_row(
            str(j.id),
            j.input_file,
            str(j.request_count),
            str(j.state),
            str(j.create_time),
            str(j.end_time),
            "",
        )
    _console().print(table)


def bench_status(n: int = 10_000, repeat: int = 3) -> dict[str, float]:
    """Print and return the timings (seconds, best of ``repeat``)."""
    jobs = make_jobs(n, _MIX)
    snapshot = Snapshot.from_jobs(jobs)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        _fill_db(url, jobs)
        store = open_store(url)
        try:

            def load() -> None:
                read_snapshot(store)

            load_s = best_of(repeat, load)
        finally:
            store.dispose()
    figures = {
        "load_snapshot": load_s,
        "render_status": best_of(repeat, lambda: _console().print(render_status(snapshot, NOW))),
        "render_folded_40": best_of(
            repeat, lambda: _console().print(render_status(snapshot, NOW, max_rows=40))
        ),
        "baseline_plain_table": best_of(repeat, lambda: _baseline(jobs)),
    }
    ratio = figures["render_status"] / figures["baseline_plain_table"]
    print(f"status rendering, {n:,} jobs, width {WIDTH} (best of {repeat}):")
    print(f"  load_snapshot (SQLite)      {figures['load_snapshot']:8.3f} s")
    print(f"  render_status (full table)  {figures['render_status']:8.3f} s")
    print(f"  render_status max_rows=40   {figures['render_folded_40']:8.3f} s")
    print(f"  baseline: plain rich Table  {figures['baseline_plain_table']:8.3f} s")
    print(f"  render_status / baseline    {ratio:8.2f}x")
    total = figures["load_snapshot"] + figures["render_status"]
    print(f"  load + render               {total:8.3f} s   (target < 1 s)")
    return figures


if __name__ == "__main__":
    bench_status(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
