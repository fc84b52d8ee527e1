"""The live dashboard's summary: the facts about the run and the lines that show them.

Below the job table, always visible whatever the height: the counts by outcome,
the last cycle and the countdown, downloads in flight, the poller's latest note,
the end of the run; and the footer under the frame. Pure, like the frame
(:mod:`gembatch.view.dashboard`): every fact comes in as a :class:`DashboardInfo`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from types import MappingProxyType
from typing import Literal

from rich.cells import cell_len
from rich.console import RenderableType
from rich.filesize import decimal
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from gembatch.common import states
from gembatch.common.snapshot import JobView, Snapshot
from gembatch.common.timeutil import ensure_utc, format_duration
from gembatch.view.looks import all_failed, state_look
from gembatch.view.progress import RunProgress, run_line
from gembatch.view.table import clip_left

Mode = Literal["poll", "watch"]

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
    # Requests per second the run was seen to settle at (None until two reads showed progress).
    rate: float | None = None


def one_line(text: Text) -> Text:
    # Every summary line is exactly one terminal line, whatever the width:
    # the frame's height budget (:func:`summary_height`) counts on it.
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
    # A succeeded job whose every request failed counts as failed.
    failed_all = sum(1 for job in snapshot.jobs if all_failed(job))
    moved = {states.SUCCEEDED: -failed_all, states.FAILED: failed_all}
    for labels in ("all", "nonzero", "none"):
        line = Text()
        line.append("total ", style="bold")
        line.append(f"{len(snapshot.jobs):,}", style="bold")
        for state in _OUTCOMES:
            look = state_look(state)
            count = snapshot.totals.get(state, 0) + moved.get(state, 0)
            line.append(" · ", style="dim")
            labelled = labels == "all" or (labels == "nonzero" and count > 0)
            word = f"{look.symbol} {count:,}" + (f" {look.label}" if labelled else "")
            line.append(word, style=look.style if count else "dim")
        line.append(" · ", style="dim")
        line.append(f"{remaining:,} remaining", style="bold yellow" if remaining else "dim")
        if line.cell_len <= width:
            break
    return one_line(line)


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
    return one_line(line)


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
            one_line(Text(f"… {len(more)} more downloads, {decimal(done)} so far", style="cyan"))
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
    lines = [one_line(head)]
    if info.exit_summary:
        lines.append(one_line(Text(info.exit_summary)))
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
    return one_line(line)


def progress_line(run: RunProgress, info: DashboardInfo, width: int) -> Text:
    """The run's requests done, failures, the observed rate and the time left at it."""
    eta = None
    if info.rate:
        eta = run.remaining / info.rate
    return one_line(run_line(run, eta, width, rate=info.rate))


def summary_lines(
    snapshot: Snapshot,
    info: DashboardInfo,
    width: int,
    tz: tzinfo | None,
    run: RunProgress | None = None,
) -> list[RenderableType]:
    """Every summary line, top to bottom, for a frame ``width`` cells wide inside.

    ``run``: the run's progress; its line is shown once a job in flight has the
    API's counts.
    """
    lines: list[RenderableType] = [counts_line(snapshot, width)]
    if run is not None and run.reported:
        lines.append(progress_line(run, info, width))
    lines.append(cycle_line(info, tz))
    if info.downloads:
        by_id = {job.id: job for job in snapshot.jobs if job.id in info.downloads}
        lines.extend(downloads_block(info.downloads, by_id, width))
    if info.note:
        lines.append(one_line(Text(info.note, style="yellow")))
    lines.extend(end_lines(snapshot, info))
    return lines


def summary_height(info: DashboardInfo, run: RunProgress | None = None) -> int:
    """How many lines :func:`summary_lines` returns (each is exactly one line)."""
    count = 2 + _download_lines(info.downloads) + (1 if info.note else 0)
    if run is not None and run.reported:
        count += 1
    if info.finished:
        count += 2 if info.exit_summary else 1
    return count


__all__ = [
    "DashboardInfo",
    "DownloadProgress",
    "Mode",
    "counts_line",
    "cycle_line",
    "footer_line",
    "one_line",
    "progress_line",
    "remaining_jobs",
    "summary_height",
    "summary_lines",
]
