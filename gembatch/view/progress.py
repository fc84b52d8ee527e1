"""Requests done of each job and of the whole run, and the time left at the rate seen.

The counts are the API's ``batchStats`` as the poller last stored them
(:class:`~gembatch.common.snapshot.JobView`'s ``api_*_count``). Two ways to guess
the time left, and each screen says which it uses:

- the live view and ``watch`` see the run's done count change from one read of
  the database to the next: :class:`RateMeter` smooths those observed rates;
- a one-shot ``status`` has a single read: each running job's requests done
  since the API created it give that job's rate (:func:`status_eta`).

Pure: times come in as arguments; the bars are rich's own :class:`rich.bar.Bar`.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.bar import Bar
from rich.console import Console
from rich.text import Text

from gembatch.common import states
from gembatch.common.snapshot import JobView
from gembatch.common.timeutil import ensure_utc

# Cells of a job's bar on a wide table, and on a tighter one; of the run's bar.
BAR_WIDTH = 8
NARROW_BAR_WIDTH = 4
RUN_BAR_WIDTH = 20
# How much each new observed rate moves the smoothed one (0..1).
SMOOTHING = 0.3
# What each screen's time left is computed from (said on screen and in --json).
STATUS_ETA_BASIS = "requests done by each running job since it was created"
LIVE_ETA_BASIS = "the run's requests done between reads of the database"

# A cell of several styled pieces: (text, style) each.
Pieces = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class JobProgress:
    """The API's counts for one job."""

    total: int
    succeeded: int
    failed: int
    pending: int

    @property
    def done(self) -> int:
        return self.succeeded + self.failed

    def as_json(self) -> dict[str, int]:
        return {
            "total": self.total,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "pending": self.pending,
        }


def job_progress(job: JobView) -> JobProgress | None:
    """What the API last said about a job's requests; None when it never said."""
    counts = (job.api_succeeded_count, job.api_failed_count, job.api_pending_count)
    if job.api_request_count is None and all(count is None for count in counts):
        return None
    succeeded = job.api_succeeded_count or 0
    failed = job.api_failed_count or 0
    total = job.api_request_count
    if total is None:
        total = succeeded + failed + (job.api_pending_count or 0)
    pending = job.api_pending_count
    if pending is None:
        pending = max(0, total - succeeded - failed)
    return JobProgress(total=total, succeeded=succeeded, failed=failed, pending=pending)


def in_flight_progress(job: JobView) -> JobProgress | None:
    """A job's counts while it still runs (what a table row shows), else None."""
    if job.state is None or states.is_terminal(job.state):
        return None
    return job_progress(job)


@dataclass(frozen=True, slots=True)
class RunProgress:
    """The whole run's requests. A job that ended counts whole as done (nothing more
    will happen to its requests); a job in flight counts what the API says is done."""

    total: int
    done: int
    failed: int
    # Requests of jobs in flight that are not done yet: what the time left is for.
    remaining: int
    # Some job in flight has the API's counts: the run's figure means something.
    reported: bool

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    def as_json(self) -> dict[str, int]:
        return {
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "remaining": self.remaining,
        }


def run_progress(jobs: Iterable[JobView]) -> RunProgress:
    total = done = failed = remaining = 0
    reported = False
    for job in jobs:
        counts = job_progress(job)
        size = counts.total if counts is not None else (job.request_count or 0)
        total += size
        if counts is not None:
            failed += counts.failed
        elif job.state == states.FAILED:
            failed += size
        if states.is_terminal(job.state):
            done += size
            continue
        finished = counts.done if counts is not None else 0
        reported = reported or counts is not None
        done += min(finished, size)
        remaining += max(0, size - finished)
    return RunProgress(total, done, failed, remaining, reported)


class RateMeter:
    """Requests per second, from the run's done count observed over time.

    Each time the count grows, the rate since the previous growth is folded into
    an exponentially weighted average; reads that saw no change add nothing (the
    poller writes counts once per cycle, however often the screen reads them).
    No rate until two observations show progress. Times are monotonic seconds.
    """

    def __init__(self, smoothing: float = SMOOTHING) -> None:
        self._smoothing = smoothing
        self._last: tuple[float, int] | None = None
        self._rate: float | None = None

    @property
    def rate(self) -> float | None:
        return self._rate

    def observe(self, at: float, done: int) -> None:
        last = self._last
        if last is None or done < last[1]:
            # First look, or fewer done than before (jobs removed): count from here.
            self._last = (at, done)
            return
        then, before = last
        if done == before or at <= then:
            return
        sample = (done - before) / (at - then)
        rate = self._rate
        self._rate = sample if rate is None else rate + self._smoothing * (sample - rate)
        self._last = (at, done)

    def eta(self, remaining: int) -> float | None:
        """Seconds left for ``remaining`` requests at the smoothed rate (None: unknown)."""
        if remaining <= 0:
            return 0.0
        if not self._rate:
            return None
        return remaining / self._rate


def job_eta(job: JobView, now: datetime) -> float | None:
    """Seconds left for a running job at its own average rate since creation."""
    counts = in_flight_progress(job)
    if counts is None or job.create_time is None or counts.done <= 0:
        return None
    elapsed = (ensure_utc(now) - ensure_utc(job.create_time)).total_seconds()  # type: ignore[operator]
    if elapsed <= 0:
        return None
    return counts.pending / (counts.done / elapsed)


def status_eta(jobs: Iterable[JobView], now: datetime) -> float | None:
    """The run's time left for a one-shot read: jobs run side by side, so the run
    ends with its slowest running job (None when no running job has progress)."""
    etas = [eta for job in jobs if (eta := job_eta(job, now)) is not None]
    return max(etas) if etas else None


# --- bars ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _bar_console() -> Console:
    # A Bar renders the same on any console; one private console makes it a string.
    return Console(file=io.StringIO(), width=80, color_system=None, legacy_windows=False)


@functools.lru_cache(maxsize=512)
def _bar_cells(width: int, eighths: int) -> str:
    console = _bar_console()
    bar = Bar(size=width * 8, begin=0, end=eighths, width=width)
    options = console.options.update_width(width)
    return "".join(seg.text for seg in console.render(bar, options) if seg.text != "\n")


def bar_text(done: int, total: int, width: int) -> str:
    """``███▍    ``: ``done`` of ``total`` as a bar ``width`` cells wide (rich's Bar)."""
    if total <= 0:
        return " " * width
    # Quantised to eighths of a cell: at most 8 * width + 1 different bars, cached.
    eighths = min(width * 8, max(0, done) * width * 8 // total)
    return _bar_cells(width, eighths)


def progress_pieces(counts: JobProgress, bar_width: int, count_width: int) -> Pieces:
    """``███▍      412/1,000 ✗3``: bar, done of total (right-aligned to ``count_width``),
    failures in red. ``bar_width`` 0 leaves the bar out."""
    figures = f"{counts.done:,}/{counts.total:,}".rjust(count_width)
    pieces: list[tuple[str, str]] = []
    if bar_width:
        style = "green" if not counts.failed else "yellow"
        pieces.append((bar_text(counts.done, counts.total, bar_width), style))
        pieces.append((" ", ""))
    pieces.append((figures, ""))
    if counts.failed:
        pieces.append((f" ✗{counts.failed:,}", "red"))
    return tuple(pieces)


def figures_width(counts: Iterable[JobProgress | None]) -> int:
    return max((len(f"{c.done:,}/{c.total:,}") for c in counts if c is not None), default=0)


def eta_json(eta: float | None) -> Any:
    return None if eta is None else round(eta, 1)


def eta_text(eta: float | None) -> str:
    """``about 2h 10m left`` (two units: it is a guess), or ``time left —``."""
    if eta is None:
        return "time left —"
    seconds = math.ceil(eta)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        text = f"{days}d {hours}h"
    elif hours:
        text = f"{hours}h {minutes}m"
    elif minutes:
        text = f"{minutes}m"
    else:
        text = f"{secs}s"
    return f"about {text} left"


def run_line(
    run: RunProgress,
    eta: float | None,
    width: int | None = None,
    *,
    rate: float | None = None,
    basis: str | None = None,
) -> Text:
    """``requests ████▍  41,200/52,000 (79%) · ✗ 130 failed · 12/s · about 3m left``.

    Always one terminal line, whatever the width (the dashboard's height budget
    counts on it): to fit ``width`` the basis goes first, then the bar narrows,
    then it goes, and what still does not fit is cut with ``…``. ``rate``
    (requests per second) when observed; ``basis`` says where the time left
    comes from.
    """
    line = _run_line(run, eta, rate, basis, RUN_BAR_WIDTH)
    if width is not None:
        for bar, said in ((RUN_BAR_WIDTH, None), (RUN_BAR_WIDTH // 2, None), (0, None)):
            if line.cell_len <= width:
                break
            line = _run_line(run, eta, rate, said, bar)
    return line


def _run_line(
    run: RunProgress, eta: float | None, rate: float | None, basis: str | None, bar: int
) -> Text:
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append("requests ", style="bold")
    if bar:
        style = "green" if not run.failed else "yellow"
        line.append(bar_text(run.done, run.total, bar), style=style)
        line.append("  ")
    line.append(f"{run.done:,}/{run.total:,} ({math.floor(run.fraction * 100)}%)")
    if run.failed:
        line.append(" · ", style="dim")
        line.append(f"✗ {run.failed:,} failed", style="red")
    if run.remaining:
        if rate is not None:
            line.append(" · ", style="dim")
            line.append(f"{_rate_text(rate)}/s")
        line.append(" · ", style="dim")
        line.append(eta_text(eta), style="bold" if eta is not None else "dim")
        if basis:
            line.append(f" ({basis})", style="dim")
    return line


def _rate_text(rate: float) -> str:
    return f"{rate:,.1f}" if rate < 10 else f"{rate:,.0f}"
