"""The ``status`` view: the job table, the fold line and the totals as one rich renderable.

Pure, like the table it is made of (:mod:`gembatch.view.table`): nothing here
reads the clock, the database or the terminal; ``now``, the snapshot and the ids
being checked come in as arguments.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

from gembatch.common.ages import DEFAULT_STUCK_AFTER
from gembatch.common.snapshot import JobView, Snapshot
from gembatch.view.attention import order_jobs
from gembatch.view.fit import Column, fit_columns
from gembatch.view.progress import run_line, run_progress, status_eta
from gembatch.view.table import fold_line, status_columns, table_segments, totals_line


@dataclass(frozen=True)
class StatusView:
    """The status view as a rich renderable: it fits its table to the width it is given."""

    snapshot: Snapshot
    shown: list[JobView]
    folded: list[JobView]
    now: datetime
    checking: frozenset[int] = frozenset()
    tz: tzinfo | None = None
    stuck_after: timedelta = DEFAULT_STUCK_AFTER

    def columns(self, width: int | None) -> list[Column]:
        columns = status_columns(self.shown, self.now, self.tz, stuck_after=self.stuck_after)
        return fit_columns(columns, width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not self.snapshot.jobs:
            yield Text("no jobs yet", style="dim")
            return
        if self.shown:
            columns = self.columns(options.max_width)
            yield from table_segments(self.shown, columns, checking=self.checking)
        if self.folded:
            yield fold_line(self.folded)
        yield totals_line(self.snapshot)
        run = run_progress(self.snapshot.jobs)
        if run.reported:
            # One read: the time left comes from each running job's own rate so far.
            eta = status_eta(self.snapshot.jobs, self.now)
            basis = "from each running job's rate so far"
            yield run_line(run, eta, options.max_width, basis=basis)


def render_status(
    snapshot: Snapshot,
    now: datetime,
    *,
    checking: Collection[int] = frozenset(),
    max_rows: int | None = None,
    tz: tzinfo | None = None,
    stuck_after: timedelta = DEFAULT_STUCK_AFTER,
) -> StatusView:
    """The status view: the jobs table, a fold line when ``max_rows`` hides some, totals.

    ``checking`` holds the ids of the jobs being checked right now (red background).
    ``tz`` is the display time zone (default: this machine's local time). A job in
    flight for longer than ``stuck_after`` is marked stuck. The result is a rich
    renderable; it lays itself out when printed.
    """
    shown, folded = order_jobs(snapshot.jobs, now, checking=checking, max_rows=max_rows)
    return StatusView(snapshot, shown, folded, now, frozenset(checking), tz, stuck_after)
