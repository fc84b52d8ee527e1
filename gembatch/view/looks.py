"""How one job reads on screen: its state's symbol, label and colour, its duration, its error.

Shared by the status table, the live dashboard, the timeline, the report and the
JSON output, so a state or a duration reads the same everywhere. Pure: ``now``
comes in as an argument.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from rich.text import Text

from gembatch.common import states
from gembatch.common.ages import Age, short_span
from gembatch.common.batch import all_requests_failed
from gembatch.common.snapshot import JobView
from gembatch.common.timeutil import ensure_utc, format_duration

# Errors are shortened to this many characters on a row.
ERROR_WIDTH = 60


@dataclass(frozen=True, slots=True)
class StateLook:
    symbol: str
    label: str
    style: str


# Not a stored state: how a SUCCEEDED job reads when every one of its requests
# failed (the API's batchStats say so). It produced nothing usable: a failure.
ALL_FAILED = "gembatch:all-failed"

_LOOKS: dict[str, StateLook] = {
    states.SUCCEEDED: StateLook("✓", "succeeded", "green"),
    states.FAILED: StateLook("✗", "failed", "red"),
    ALL_FAILED: StateLook("✗", "all failed", "red"),
    states.CANCELLED: StateLook("⊘", "cancelled", "dark_orange"),
    states.EXPIRED: StateLook("⧖", "expired", "magenta"),
    states.RUNNING: StateLook("●", "running", "yellow"),
    states.PENDING: StateLook("○", "pending", "yellow"),
}
_UNKNOWN = StateLook("?", "unknown", "dim")
# Display order for totals and the fold line: outcomes first, then work in flight.
_STATE_ORDER = list(_LOOKS)


def state_look(state: str | None) -> StateLook:
    """Symbol, label and style of a stored state.

    A state a future API adds is non-terminal (it keeps being polled), so it is
    shown like work in flight: its short name in yellow.
    """
    if state is None or not state.strip():
        return _UNKNOWN
    known = _LOOKS.get(state)
    if known is not None:
        return known
    return StateLook("•", states.short(state), "yellow")


def all_failed(job: JobView) -> bool:
    """SUCCEEDED, but the API counted every request as failed and none as succeeded."""
    return job.state == states.SUCCEEDED and all_requests_failed(
        job.api_request_count, job.api_succeeded_count, job.api_failed_count
    )


def display_state(job: JobView) -> str | None:
    """The state a job is shown (and counted) in: its own, or :data:`ALL_FAILED`."""
    return ALL_FAILED if all_failed(job) else job.state


def job_look(job: JobView) -> StateLook:
    return state_look(display_state(job))


# A job in flight that needs a look: stuck, or close to the service's 48 h limit.
STUCK_STYLE = "bold yellow"
EXPIRING_STYLE = "bold magenta"


def age_mark(age: Age | None) -> tuple[str, str] | None:
    """``("expires in 3h12m", style)`` or ``("stuck", style)``; None for nothing to say.

    Close to the limit wins: it is the more urgent of the two.
    """
    if age is None:
        return None
    if age.expires_in is not None:
        if not age.expires_in:
            return "expires now", EXPIRING_STYLE
        return f"expires in {short_span(age.expires_in)}", EXPIRING_STYLE
    if age.stuck:
        return "stuck", STUCK_STYLE
    return None


def state_cell(state: str | None) -> Text:
    """``✓ succeeded`` in green, ``✗ failed`` in red, and so on."""
    look = state_look(state)
    return Text(f"{look.symbol} {look.label}", style=look.style)


def state_sort_key(state: str | None) -> tuple[int, str]:
    if state in _LOOKS:
        return (0, f"{_STATE_ORDER.index(state):03d}")
    if state is None:
        return (2, "")
    return (1, state)


def count_parts(counts: Counter[str | None], *, labels: bool) -> Text:
    """``930 ✓, 10 ⊘`` (fold line) or ``930 ✓ succeeded · 10 ⊘ cancelled`` (totals)."""
    parts = Text()
    for state in sorted(counts, key=state_sort_key):
        look = state_look(state)
        if parts:
            parts.append(" · " if labels else ", ")
        # Only the plain outcomes go by symbol alone; "all failed" shares ✗ with failed.
        known = state in _LOOKS and state != ALL_FAILED
        word = f"{look.symbol} {look.label}" if labels or not known else look.symbol
        parts.append(f"{counts[state]:,} ", style=look.style)
        parts.append(word, style=look.style)
    return parts


@dataclass(frozen=True, slots=True)
class Duration:
    """How long a job ran, and how far to trust the number."""

    delta: timedelta | None
    # Terminal, but without an end time: measured to the last update instead.
    approximate: bool = False
    # Still in flight: measured to ``now`` and growing.
    growing: bool = False

    @property
    def seconds(self) -> float | None:
        return None if self.delta is None else max(0.0, self.delta.total_seconds())

    def __str__(self) -> str:
        if self.delta is None:
            return ""
        text = format_duration(self.delta)
        return f"~{text}" if self.approximate else text


def job_duration(job: JobView, now: datetime) -> Duration:
    """Duration from the stored create and end times.

    Finished: end - create. In flight (any non-terminal state, future ones too):
    now - create, growing. Terminal without an end time (some old job-info
    lines): update - create, marked approximate. Unknown state: end - create if
    the end is known, else nothing.
    """
    create = job.create_time
    if create is None:
        return Duration(None)
    if job.end_time is not None and (job.state is None or states.is_terminal(job.state)):
        return Duration(_delta(job.end_time, create))
    if job.state is None:
        return Duration(None)
    if not states.is_terminal(job.state):
        return Duration(_delta(now, create), growing=True)
    if job.update_time is not None:
        return Duration(_delta(job.update_time, create), approximate=True)
    return Duration(None)


def _delta(later: datetime, earlier: datetime) -> timedelta:
    # Clocks disagree (the API's versus ours): never show a negative duration.
    return max(timedelta(0), ensure_utc(later) - ensure_utc(earlier))  # type: ignore[operator]


def short_error(text: str | None, width: int = ERROR_WIDTH) -> str:
    """First line of an error, whitespace collapsed, cut to ``width`` with ``…``."""
    if not text:
        return ""
    first = next((line for line in text.splitlines() if line.strip()), "")
    flat = re.sub(r"\s+", " ", first).strip()
    return flat if len(flat) <= width else flat[: width - 1].rstrip() + "…"


def job_error(job: JobView) -> str:
    """gembatch's own last error first (it is what needs acting on), else the API's."""
    if job.last_error:
        text = short_error(job.last_error)
        return f"×{job.error_count} {text}" if job.error_count > 1 else text
    if job.remote_error and job.state != states.SUCCEEDED:
        return short_error(job.remote_error)
    return ""
