"""The live dashboard: one bordered frame holding the job table and the run's summary.

Pure, like :mod:`gembatch.view.table` whose pieces it reuses: a frame is a function
of a snapshot, ``now``, the ids being checked and a few facts about the run
(:class:`~gembatch.view.dashboard_summary.DashboardInfo`, shown by the summary
lines of :mod:`gembatch.view.dashboard_summary`). Nothing here reads the clock,
the database or the terminal size on its own; :mod:`gembatch.view.live` owns the
terminal, and tests render frames into a recording console at fixed sizes.

Layout, top to bottom (the summary is always visible; the table gets what is left)::

    ╭─ gembatch ───────────────────────────────╮
    │ #  input file  requests  state  ...      │  header, rule, rows
    │ … 940 more: 930 ✓, 10 ⊘                  │  only when rows do not fit
    │ ──────────────────────────────────────── │
    │ total 1,000 · ✓ 930 succeeded · ...      │  summary lines (the run's requests
    │ requests ████▍  41,200/52,000 · 3m left  │  once the API reported counts)
    ╰──────────────────────────────────────────╯
     database gembatch.db · Ctrl+C stops ...      footer
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.panel import Panel
from rich.text import Text

from gembatch.common.ages import DEFAULT_STUCK_AFTER
from gembatch.common.snapshot import JobView, Snapshot
from gembatch.view.attention import order_jobs
from gembatch.view.dashboard_summary import (
    DashboardInfo,
    footer_line,
    one_line,
    summary_height,
    summary_lines,
)
from gembatch.view.fit import fit_columns
from gembatch.view.progress import run_progress
from gembatch.view.table import fold_line, status_columns, table_segments

TITLE = "gembatch"
# Lines the frame needs besides the table and the summary: the panel's top and
# bottom border, the rule above the summary, the footer under the panel.
_CHROME = 4
# Panel border (1) and padding (1) on each side.
_SIDES = 4


class _Rows:
    """The table's header, rule and rows, drawn straight to segments.

    Cells are built here, at render time, from ``now``: the durations of running
    jobs grow on every redraw while the choice and order of rows stay as planned.
    """

    def __init__(
        self,
        jobs: list[JobView],
        now: datetime,
        checking: Collection[int],
        tz: tzinfo | None,
        stuck_after: timedelta,
    ) -> None:
        self.jobs = jobs
        self.now = now
        self.checking = checking
        self.tz = tz
        self.stuck_after = stuck_after

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        columns = status_columns(self.jobs, self.now, self.tz, stuck_after=self.stuck_after)
        columns = fit_columns(columns, options.max_width)
        segments = list(table_segments(self.jobs, columns, checking=self.checking))
        # table_segments ends every line with a newline; the group adds none of its own.
        yield from segments


@dataclass(frozen=True, slots=True)
class _Plan:
    shown: list[JobView]
    folded: list[JobView]
    fold: Text | None


@dataclass(frozen=True, eq=False)
class Dashboard:
    """One frame. Lays itself out for the size it is rendered at (or the fixed
    ``width``/``height``); the summary always fits, the table takes the rest."""

    snapshot: Snapshot
    now: datetime
    checking: frozenset[int] = frozenset()
    # Rows checked a moment ago: highlighted like ``checking``, but not moved up.
    held: frozenset[int] = frozenset()
    # Frozen, so one shared default instance is safe.
    info: DashboardInfo = DashboardInfo()  # noqa: RUF009
    height: int | None = None
    width: int | None = None
    tz: tzinfo | None = None
    stuck_after: timedelta = DEFAULT_STUCK_AFTER
    # Row plans by table height, shared by the frames :meth:`tick` derives: ordering
    # thousands of jobs is the costly part, and a tick changes nothing it depends on.
    _plans: dict[int, _Plan] = field(default_factory=dict, repr=False)

    def tick(
        self, now: datetime, next_poll_in: float | None, info: DashboardInfo | None = None
    ) -> Dashboard:
        """The same frame a moment later: new countdown and running durations,
        same rows in the same order (no re-sort, no database read).

        ``info`` replaces the summary figures too (the countdown still wins).
        """
        info = dataclasses.replace(info or self.info, next_poll_in=next_poll_in)
        return dataclasses.replace(self, now=now, info=info, _plans=self._plans)

    def plan(self, budget: int) -> _Plan:
        """Which jobs get a row when the table may use ``budget`` lines."""
        cached = self._plans.get(budget)
        if cached is not None:
            return cached
        jobs = self.snapshot.jobs
        if budget >= len(jobs) + 2:  # header + rule + every job
            shown, folded = order_jobs(jobs, self.now, checking=self.checking)
        elif budget >= 4:  # header + rule + at least one row + the fold line
            shown, folded = order_jobs(jobs, self.now, checking=self.checking, max_rows=budget - 3)
        else:
            shown, folded = [], list(jobs) if budget >= 1 else []
        fold = one_line(fold_line(folded)) if folded else None
        plan = self._plans[budget] = _Plan(shown, folded, fold)
        return plan

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = self.width or options.max_width
        height = self.height or options.height or options.size.height
        inner = max(1, width - _SIDES)
        run = run_progress(self.snapshot.jobs)
        summary = summary_lines(self.snapshot, self.info, inner, self.tz, run)
        budget = height - _CHROME - summary_height(self.info, run)
        body: list[RenderableType] = []
        if not self.snapshot.jobs:
            if budget >= 1:
                body.append(Text("no jobs yet: import a job-info file or submit", style="dim"))
        else:
            plan = self.plan(budget)
            if plan.shown:
                red = self.checking | self.held
                body.append(_Rows(plan.shown, self.now, red, self.tz, self.stuck_after))
            if plan.fold is not None:
                body.append(plan.fold)
        body.append(Text("─" * inner, style="dim"))
        body.extend(summary)
        yield Panel(
            Group(*body),
            title=Text(TITLE, style="bold"),
            title_align="left",
            subtitle=Text(self.info.mode, style="dim"),
            subtitle_align="right",
            box=box.ROUNDED,
            border_style="blue",
            padding=(0, 1),
            width=width,
        )
        yield footer_line(self.info, width)


def render_dashboard(
    snapshot: Snapshot,
    now: datetime,
    *,
    checking: Collection[int] = frozenset(),
    held: Collection[int] = frozenset(),
    height: int | None = None,
    width: int | None = None,
    info: DashboardInfo | None = None,
    tz: tzinfo | None = None,
    stuck_after: timedelta = DEFAULT_STUCK_AFTER,
) -> Dashboard:
    """The dashboard frame for ``snapshot`` at ``now``.

    ``checking``: ids whose status is being fetched right now (red background, and
    first when rows are folded). ``held``: ids checked a moment ago (red background).
    ``height``/``width``: the size to fit (default: the size it is rendered at,
    i.e. the terminal). ``tz``: display time zone (default: local time).
    ``stuck_after``: a job in flight longer than this is marked stuck.
    """
    return Dashboard(
        snapshot=snapshot,
        now=now,
        checking=frozenset(checking),
        held=frozenset(held),
        info=info or DashboardInfo(),
        height=height,
        width=width,
        tz=tz,
        stuck_after=stuck_after,
    )


__all__ = [
    "Dashboard",
    "render_dashboard",
]
