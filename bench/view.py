"""How long one live-dashboard frame takes for N jobs, and the database reads behind it.

    python bench/view.py [N]        (default 5,000; target: a frame in under 50 ms)

Figures (best of a few runs each):

- frame, cold: a new snapshot arrived (a change): order every job by attention,
  fold, lay out and render one 200×60 frame (and one 80×24 frame);
- frame, tick: the once-a-second countdown redraw (same rows, new clock);
- database reads: the full snapshot read (once per cycle in ``poll``, every
  interval in ``watch``) and the incremental read of 16 changed jobs that
  most redraws use instead;
- baseline: the whole unfolded status table for the same jobs, i.e. what a
  view that printed every row would cost. The ratio is frame / baseline.
"""

from __future__ import annotations

import io
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from fleet import NOW, best_of, fill, make_jobs
from rich.console import Console
from rich.screen import Screen

from gembatch.common import states
from gembatch.common.snapshot import Snapshot
from gembatch.store.database import open_store
from gembatch.store.snapshots import read_jobs, read_snapshot
from gembatch.view.dashboard import render_dashboard
from gembatch.view.dashboard_summary import DashboardInfo
from gembatch.view.status import render_status

TARGET_S = 0.050
_MIX = [states.SUCCEEDED] * 88 + [states.FAILED] * 3 + [states.CANCELLED] * 2
_MIX += [states.EXPIRED, states.RUNNING, states.RUNNING, states.RUNNING, states.PENDING]
_MIX += [states.PENDING, None]


def console(width: int, height: int) -> Console:
    return Console(
        file=io.StringIO(),
        width=width,
        height=height,
        force_terminal=True,
        color_system="truecolor",
        legacy_windows=False,
    )


def bench_view(n: int = 5_000, repeat: int = 5) -> dict[str, float]:
    """Print and return the timings (seconds, best of ``repeat``)."""
    jobs = make_jobs(n, _MIX)
    snapshot = Snapshot.from_jobs(jobs)
    checking = frozenset(range(1, n + 1, max(1, n // 16)))
    info = DashboardInfo(
        newly_completed=12, last_update=NOW, next_poll_in=21.5, db_name="gembatch.db"
    )

    def frame_cold(width: int, height: int) -> None:
        # As the live view draws: inside Screen, on a terminal of that size.
        frame = render_dashboard(snapshot, NOW, checking=checking, info=info)
        console(width, height).print(Screen(frame))

    warm = render_dashboard(snapshot, NOW, checking=checking, info=info)
    console(200, 60).print(Screen(warm))  # plans the rows once, as the first frame does

    def frame_tick() -> None:
        console(200, 60).print(Screen(warm.tick(NOW + timedelta(seconds=1), 20.5)))

    figures = {
        "frame_cold_200x60": best_of(repeat, lambda: frame_cold(200, 60)),
        "frame_cold_80x24": best_of(repeat, lambda: frame_cold(80, 24)),
        "frame_tick_200x60": best_of(repeat, frame_tick),
        "baseline_full_table": best_of(
            2, lambda: console(200, 60).print(render_status(snapshot, NOW))
        ),
    }
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            fill(store, jobs)
            changed = sorted(checking)[:16]

            def full_read() -> None:
                read_snapshot(store)

            def incremental_read() -> None:
                snapshot.updated(read_jobs(store, changed))

            figures["db_full_read"] = best_of(repeat, full_read)
            figures["db_read_16_changed"] = best_of(repeat, incremental_read)
        finally:
            store.dispose()

    ms = {name: value * 1000 for name, value in figures.items()}
    print(f"live dashboard, {n:,} jobs (best of {repeat}):")
    print(f"  frame, cold (order + fold + render) 200x60  {ms['frame_cold_200x60']:8.1f} ms")
    print(f"  frame, cold                          80x24  {ms['frame_cold_80x24']:8.1f} ms")
    print(f"  frame, countdown tick                200x60  {ms['frame_tick_200x60']:8.1f} ms")
    print(f"  baseline: whole unfolded status table        {ms['baseline_full_table']:8.1f} ms")
    ratio = figures["frame_cold_200x60"] / figures["baseline_full_table"]
    print(f"  frame / baseline                             {ratio:8.3f}x")
    print(f"  database: full snapshot read (SQLite)        {ms['db_full_read']:8.1f} ms")
    print(f"  database: 16 changed jobs re-read + merged   {ms['db_read_16_changed']:8.1f} ms")
    verdict = "OK" if figures["frame_cold_200x60"] < TARGET_S else "OVER TARGET"
    print(f"  target: a cold frame under {TARGET_S * 1000:.0f} ms: {verdict}")
    return figures


if __name__ == "__main__":
    bench_view(int(sys.argv[1]) if len(sys.argv) > 1 else 5_000)
