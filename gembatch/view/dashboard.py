"""The live dashboard: one bordered frame holding the job table and the run's summary.

Pure, like :mod:`gembatch.render` whose pieces it reuses: a frame is a function of
a snapshot, ``now``, the ids being checked and a few facts about the run
(:class:`DashboardInfo`). Nothing here reads the clock, the database or the
terminal size on its own; :mod:`gembatch.live_view` owns the terminal, and tests
render frames into a recording console at fixed sizes.

Layout, top to bottom (the summary is always visible; the table gets what is left)::

    ╭─ gembatch ───────────────────────────────╮
    │ #  input file  requests  state  ...      │  header, rule, rows
    │ … 940 more: 930 ✓, 10 ⊘                  │  only when rows do not fit
    │ ──────────────────────────────────────── │
    │ total 1,000 · ✓ 930 succeeded · ...      │  summary lines
    ╰──────────────────────────────────────────╯
     database gembatch.db · Ctrl+C stops ...      footer
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from types import MappingProxyType
from typing import Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.filesize import decimal
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from gembatch.common import states
from gembatch.common.snapshot import JobView, Snapshot
from gembatch.common.timeutil import ensure_utc, format_duration
from gembatch.view.render import (
    clip_left,
    fit_columns,
    fold_line,
    order_jobs,
    state_look,
    status_columns,
    table_segments,
)

Mode = Literal["poll", "watch"]

TITLE = "gembatch"
# Lines the frame needs besides the table and the summary: the panel's top and
# bottom border, the rule above the summary, the footer under the panel.
_CHROME = 4
# Panel border (1) and padding (1) on each side.
_SIDES = 4
# More concurrent downloads than this are summed up in one line.
MAX_DOWNLOAD_LINES = 3
_BAR_WIDTH = 20
_CLOCK_FORMAT = "%H:%M:%S"
# Outcomes always shown in the summary, zero or not: the issue asks for each.
_OUTCOMES = (states.SUCCEEDED, states.FAILED, states.CANCELLED, states.EXPIRED)


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    """A result file being downloaded: bytes so far, size when known, bytes/s so far."""

    done: int
    total: int | None = None
    rate: float = 0.0


@dataclass(frozen=True, slots=True)
class DashboardInfo:
    """What the frame shows besides the jobs themselves."""

    # Jobs that reached a terminal state in the last cycle (watch: since the last read).
    newly_completed: int | None = None
    # When the last cycle ended (watch: the latest time the poller checked a job).
    last_update: datetime | None = None
    # Seconds until the next cycle; None while a cycle runs (or when done).
    next_poll_in: float | None = None
    downloads: Mapping[int, DownloadProgress] = field(default_factory=lambda: MappingProxyType({}))
    db_name: str = ""
    # The run is over: say so, and show the exit summary.
    finished: bool = False
    exit_summary: str | None = None
    # The latest message from the poller that is not about one job (e.g. listing failed).
    note: str | None = None
    mode: Mode = "poll"


def _line(text: Text) -> Text:
    # Every summary line is exactly one terminal line, whatever the width:
    # the height budget below counts on it.
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


def _clock(value: datetime | None, tz: tzinfo | None) -> str:
    if value is None:
        return "—"
    return ensure_utc(value).astimezone(tz).strftime(_CLOCK_FORMAT)  # type: ignore[union-attr]


def remaining_jobs(snapshot: Snapshot) -> int:
    """Jobs not in a terminal state (unknown and future states included)."""
    return sum(count for state, count in snapshot.totals.items() if not states.is_terminal(state))


def counts_line(snapshot: Snapshot, width: int) -> Text:
    """``total 23 · ✓ 18 succeeded · ✗ 2 failed · ⊘ 1 cancelled · ⧖ 0 expired · 2 remaining``.

    When that does not fit ``width``, zero counts lose their label (``⧖ 0``),
    then every count does (``✓ 18``).
    """
    remaining = remaining_jobs(snapshot)
    for labels in ("all", "nonzero", "none"):
        line = Text()
        line.append("total ", style="bold")
        line.append(f"{len(snapshot.jobs):,}", style="bold")
        for state in _OUTCOMES:
            look = state_look(state)
            count = snapshot.totals.get(state, 0)
            line.append(" · ", style="dim")
            labelled = labels == "all" or (labels == "nonzero" and count > 0)
            word = f"{look.symbol} {count:,}" + (f" {look.label}" if labelled else "")
            line.append(word, style=look.style if count else "dim")
        line.append(" · ", style="dim")
        line.append(f"{remaining:,} remaining", style="bold yellow" if remaining else "dim")
        if line.cell_len <= width:
            break
    return _line(line)


def _countdown(seconds: float) -> str:
    # Round up: "next poll in 1s" until it happens, never "in 0s" for a whole second.
    return format_duration(math.ceil(max(0.0, seconds)))


def cycle_line(info: DashboardInfo, tz: tzinfo | None) -> Text:
    """``last cycle: 3 newly completed · updated 14:03:12 · next poll in 25s``."""
    line = Text()
    watch = info.mode == "watch"
    newly = "—" if info.newly_completed is None else f"{info.newly_completed:,}"
    line.append("since last read: " if watch else "last cycle: ", style="dim")
    line.append(f"{newly} newly completed", style="bold" if info.newly_completed else "")
    line.append(" · ", style="dim")
    line.append(f"{'last poll' if watch else 'updated'} {_clock(info.last_update, tz)}")
    if info.next_poll_in is not None:
        line.append(" · ", style="dim")
        line.append(f"next {'read' if watch else 'poll'} in {_countdown(info.next_poll_in)}")
    elif not info.finished and not watch:
        line.append(" · ", style="dim")
        line.append("polling now…", style="yellow")
    return _line(line)


def downloads_block(
    downloads: Mapping[int, DownloadProgress], jobs: Mapping[int, JobView], width: int
) -> list[RenderableType]:
    """One line per download in flight: file, bar, bytes (of total), rate."""
    if not downloads:
        return []
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    grid.add_column(width=_BAR_WIDTH, no_wrap=True)
    grid.add_column(no_wrap=True, justify="right")
    grid.add_column(no_wrap=True, justify="right")
    ids = sorted(downloads)
    for job_id in ids[:MAX_DOWNLOAD_LINES]:
        progress = downloads[job_id]
        job = jobs.get(job_id)
        name = job.input_file if job is not None else f"job {job_id}"
        size = decimal(progress.done)
        if progress.total:
            size += f" / {decimal(progress.total)}"
        bar = ProgressBar(
            total=progress.total,
            completed=progress.done,
            width=_BAR_WIDTH,
            # Size unknown: a bar that would sit at 0 % says less than a pulse.
            pulse=progress.total is None,
        )
        grid.add_row(
            Text("↓ " + clip_left(name, max(8, width // 3)), style="cyan"),
            bar,
            size,
            f"{decimal(int(progress.rate))}/s",
        )
    block: list[RenderableType] = [grid]
    if len(ids) > MAX_DOWNLOAD_LINES:
        more = ids[MAX_DOWNLOAD_LINES:]
        done = sum(downloads[i].done for i in more)
        block.append(
            _line(Text(f"… {len(more)} more downloads, {decimal(done)} so far", style="cyan"))
        )
    return block


def _download_lines(downloads: Mapping[int, DownloadProgress]) -> int:
    count = len(downloads)
    return min(count, MAX_DOWNLOAD_LINES) + (1 if count > MAX_DOWNLOAD_LINES else 0)


def end_lines(snapshot: Snapshot, info: DashboardInfo) -> list[Text]:
    """``✓ all jobs completed`` and the exit summary, once the run is over."""
    if not info.finished:
        return []
    remaining = remaining_jobs(snapshot)
    if remaining == 0:
        head = Text("✓ all jobs completed", style="bold green")
    else:
        head = Text(f"■ stopped with {remaining:,} jobs not finished", style="bold yellow")
    lines = [_line(head)]
    if info.exit_summary:
        lines.append(_line(Text(info.exit_summary)))
    return lines


def footer_line(info: DashboardInfo, width: int) -> Text:
    """Names the database and says how to stop (and, for poll, how to resume)."""
    if info.mode == "watch":
        rest = " · read-only, never calls the API · Ctrl+C stops watching"
    elif info.finished:
        rest = " · `gembatch status` lists every job"
    else:
        rest = " · Ctrl+C stops; rerun `gembatch poll` to resume"
    prefix = "database "
    name = clip_left(info.db_name or "?", max(12, width - cell_len(prefix + rest) - 1))
    line = Text(" " + prefix, style="dim")
    line.append(name, style="dim bold")
    line.append(rest, style="dim")
    return _line(line)


class _Rows:
    """The table's header, rule and rows, drawn straight to segments.

    Cells are built here, at render time, from ``now``: the durations of running
    jobs grow on every redraw while the choice and order of rows stay as planned.
    """

    def __init__(
        self, jobs: list[JobView], now: datetime, checking: Collection[int], tz: tzinfo | None
    ) -> None:
        self.jobs = jobs
        self.now = now
        self.checking = checking
        self.tz = tz

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        columns = fit_columns(status_columns(self.jobs, self.now, self.tz), options.max_width)
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
    info: DashboardInfo = DashboardInfo()
    height: int | None = None
    width: int | None = None
    tz: tzinfo | None = None
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
        fold = _line(fold_line(folded)) if folded else None
        plan = self._plans[budget] = _Plan(shown, folded, fold)
        return plan

    def summary(self, width: int) -> list[RenderableType]:
        info = self.info
        lines: list[RenderableType] = [
            counts_line(self.snapshot, width),
            cycle_line(info, self.tz),
        ]
        if info.downloads:
            by_id = {job.id: job for job in self.snapshot.jobs if job.id in info.downloads}
            lines.extend(downloads_block(info.downloads, by_id, width))
        if info.note:
            lines.append(_line(Text(info.note, style="yellow")))
        lines.extend(end_lines(self.snapshot, info))
        return lines

    def summary_height(self) -> int:
        info = self.info
        count = 2 + _download_lines(info.downloads) + (1 if info.note else 0)
        if info.finished:
            count += 2 if info.exit_summary else 1
        return count

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = self.width or options.max_width
        height = self.height or options.height or options.size.height
        inner = max(1, width - _SIDES)
        summary = self.summary(inner)
        budget = height - _CHROME - self.summary_height()
        body: list[RenderableType] = []
        if not self.snapshot.jobs:
            if budget >= 1:
                body.append(Text("no jobs yet: import a job-info file or submit", style="dim"))
        else:
            plan = self.plan(budget)
            if plan.shown:
                body.append(_Rows(plan.shown, self.now, self.checking, self.tz))
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
    height: int | None = None,
    width: int | None = None,
    info: DashboardInfo | None = None,
    tz: tzinfo | None = None,
) -> Dashboard:
    """The dashboard frame for ``snapshot`` at ``now``.

    ``checking``: ids whose status is being fetched right now (red background).
    ``height``/``width``: the size to fit (default: the size it is rendered at,
    i.e. the terminal). ``tz``: display time zone (default: local time).
    """
    return Dashboard(
        snapshot=snapshot,
        now=now,
        checking=frozenset(checking),
        info=info or DashboardInfo(),
        height=height,
        width=width,
        tz=tz,
    )


__all__ = [
    "Dashboard",
    "DashboardInfo",
    "DownloadProgress",
    "counts_line",
    "cycle_line",
    "footer_line",
    "remaining_jobs",
    "render_dashboard",
]
