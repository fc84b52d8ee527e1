"""Pure rendering of a :class:`~gembatch.snapshot.Snapshot`: the ``status`` table and
the live view share every function here.

Nothing in this module reads the clock, the database or the terminal: ``now``,
the snapshot and the ids being checked come in as arguments, so the output is
reproducible in tests (render into ``Console(file=io.StringIO(), width=...)``).
Colours are styles only; rich drops them itself for ``NO_COLOR`` or a pipe.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from rich.cells import cell_len, set_cell_size
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from gembatch.common import states
from gembatch.common.snapshot import JobView, Snapshot
from gembatch.common.timeutil import ensure_utc, format_duration, format_timestamp

# A job that ended this recently still counts as news in a folded view.
JUST_FINISHED = timedelta(minutes=10)
# Errors are shortened to this many characters on a row.
ERROR_WIDTH = 60
# White on red: a red ✗ or a red error would vanish on a red background.
CHECKING_STYLE = "bold white on red"
TIME_FORMAT = "%Y-%m-%d %H:%M"
COMPACT_TIME_FORMAT = "%m-%d %H:%M"


@dataclass(frozen=True, slots=True)
class StateLook:
    symbol: str
    label: str
    style: str


_LOOKS: dict[str, StateLook] = {
    states.SUCCEEDED: StateLook("✓", "succeeded", "green"),
    states.FAILED: StateLook("✗", "failed", "red"),
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


def state_cell(state: str | None) -> Text:
    """``✓ succeeded`` in green, ``✗ failed`` in red, and so on."""
    look = state_look(state)
    return Text(f"{look.symbol} {look.label}", style=look.style)


def _state_sort_key(state: str | None) -> tuple[int, str]:
    if state in _LOOKS:
        return (0, f"{_STATE_ORDER.index(state):03d}")
    if state is None:
        return (2, "")
    return (1, state)


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


# --- ordering -------------------------------------------------------------------------

RANK_CHECKING, RANK_ERROR, RANK_ACTIVE, RANK_JUST_FINISHED, RANK_REST = range(5)


def attention_rank(job: JobView, now: datetime, checking: Collection[int]) -> int:
    """Lower needs more attention: being checked, errors, in flight, just finished, the rest."""
    if job.id in checking:
        return RANK_CHECKING
    if job.last_error or job.state == states.FAILED:
        return RANK_ERROR
    if not states.is_terminal(job.state):
        return RANK_ACTIVE
    finished = job.end_time or job.update_time
    if finished is not None and ensure_utc(now) - ensure_utc(finished) <= JUST_FINISHED:  # type: ignore[operator]
        return RANK_JUST_FINISHED
    return RANK_REST


def _ts(value: datetime | None) -> float:
    return ensure_utc(value).timestamp() if value is not None else 0.0  # type: ignore[union-attr]


def _latest(job: JobView) -> float:
    return max(
        _ts(job.end_time),
        _ts(job.update_time),
        _ts(job.last_polled_at),
        _ts(job.create_time),
        _ts(job.added_at),
    )


def _attention_key(job: JobView, now: datetime, checking: Collection[int]) -> tuple[Any, ...]:
    rank = attention_rank(job, now, checking)
    if rank == RANK_ACTIVE:
        # Oldest first: they are the ones due to finish.
        return (rank, job.create_time is None, _ts(job.create_time), job.id)
    if rank in (RANK_JUST_FINISHED, RANK_REST):
        return (rank, -_ts(job.end_time or job.update_time), -job.id)
    if rank == RANK_ERROR:
        return (rank, -_latest(job), -job.id)
    return (rank, job.id)


def _chronological_key(job: JobView) -> tuple[Any, ...]:
    created = job.create_time or job.added_at
    return (created is None, _ts(created), job.id)


def order_jobs(
    jobs: Iterable[JobView],
    now: datetime,
    *,
    checking: Collection[int] = frozenset(),
    max_rows: int | None = None,
) -> tuple[list[JobView], list[JobView]]:
    """Split jobs into (shown, folded).

    Everything fits: all jobs, oldest first. Too many: the ``max_rows`` that need
    attention most, in attention order (see :func:`attention_rank`); the rest fold.
    """
    if max_rows is not None and max_rows < 0:
        raise ValueError("max_rows must be >= 0")
    pool = list(jobs)
    if max_rows is None or len(pool) <= max_rows:
        return sorted(pool, key=_chronological_key), []
    ranked = sorted(pool, key=lambda job: _attention_key(job, now, checking))
    return ranked[:max_rows], ranked[max_rows:]


# --- rendering ------------------------------------------------------------------------

# Two spaces between columns, none at the edges (like rich's SIMPLE_HEAD box).
_GAP = "  "
_INPUT_MIN = 16
_ERROR_MIN = 16
# Dropped in this order when the terminal is too narrow: the duration and the
# create time still tell when a job ran.
_OPTIONAL = ("ended", "created", "requests")

_STYLE_CACHE: dict[str, Style] = {}


def _style(name: str) -> Style:
    # Parsing a style string costs more than rendering the cell; 70,000 cells
    # for 10,000 jobs share a dozen styles.
    style = _STYLE_CACHE.get(name)
    if style is None:
        style = _STYLE_CACHE[name] = Style.parse(name) if name else Style.null()
    return style


def _time_cell(value: datetime | None, tz: tzinfo | None, fmt: str = TIME_FORMAT) -> str:
    if value is None:
        return ""
    return ensure_utc(value).astimezone(tz).strftime(fmt)  # type: ignore[union-attr]


def _duration_style(duration: Duration) -> str:
    return "yellow" if duration.growing else ("dim" if duration.approximate else "")


def _count_parts(counts: Counter[str | None], *, labels: bool) -> Text:
    """``930 ✓, 10 ⊘`` (fold line) or ``930 ✓ succeeded · 10 ⊘ cancelled`` (totals)."""
    parts = Text()
    for state in sorted(counts, key=_state_sort_key):
        look = state_look(state)
        if parts:
            parts.append(" · " if labels else ", ")
        known = state in _LOOKS
        word = f"{look.symbol} {look.label}" if labels or not known else look.symbol
        parts.append(f"{counts[state]:,} ", style=look.style)
        parts.append(word, style=look.style)
    return parts


def fold_line(folded: Iterable[JobView]) -> Text:
    """``… 940 more: 930 ✓, 10 ⊘`` (``? unknown`` and future states by name)."""
    counts: Counter[str | None] = Counter(job.state for job in folded)
    line = Text(f"… {sum(counts.values()):,} more: ")
    line.append_text(_count_parts(counts, labels=False))
    return line


def totals_line(snapshot: Snapshot) -> Text:
    """``1,000 jobs, 52,000 requests: 930 ✓ succeeded · 10 ⊘ cancelled · 60 ● running``."""
    jobs = len(snapshot.jobs)
    line = Text(f"{jobs:,} job{'s' if jobs != 1 else ''}", style="bold")
    line.append(f", {snapshot.total_requests:,} requests")
    if jobs:
        line.append(": ")
        line.append_text(_count_parts(Counter(snapshot.totals), labels=True))
    return line


def clip_left(text: str, width: int) -> str:
    """``…/input/file-002.jsonl``: a path keeps its end, which names the file."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    return "…" + text[len(text) - width + 1 :]


def clip_right(text: str, width: int) -> str:
    """``INVALID_ARGUMENT: bad requ…``: an error keeps its start."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    return set_cell_size(text, width - 1) + "…"


@dataclass(slots=True)
class Column:
    """One column of the status table: plain cell strings and their styles."""

    name: str
    cells: list[str]
    styles: list[str]
    right: bool = False
    width: int = 0
    # Shorter cells to switch to before the column would be dropped (times without the year).
    compact: list[str] | None = None

    def natural(self) -> int:
        return max([cell_len(self.name), *(cell_len(cell) for cell in self.cells)])


def status_columns(jobs: list[JobView], now: datetime, tz: tzinfo | None) -> list[Column]:
    """Every column, widths not yet fitted; the error column only when a job has one."""
    looks = [state_look(job.state) for job in jobs]
    durations = [job_duration(job, now) for job in jobs]
    errors = [job_error(job) for job in jobs]
    n = len(jobs)
    columns = [
        Column("#", [str(job.id) for job in jobs], ["dim"] * n, right=True),
        Column("input file", [job.input_file for job in jobs], [""] * n),
        Column(
            "requests",
            ["" if job.request_count is None else f"{job.request_count:,}" for job in jobs],
            [""] * n,
            right=True,
        ),
        Column(
            "state", [f"{look.symbol} {look.label}" for look in looks], [lk.style for lk in looks]
        ),
        Column(
            "created",
            [_time_cell(job.create_time, tz) for job in jobs],
            [""] * n,
            compact=[_time_cell(job.create_time, tz, COMPACT_TIME_FORMAT) for job in jobs],
        ),
        Column(
            "ended",
            [_time_cell(job.end_time, tz) for job in jobs],
            [""] * n,
            compact=[_time_cell(job.end_time, tz, COMPACT_TIME_FORMAT) for job in jobs],
        ),
        Column(
            "duration",
            [str(d) for d in durations],
            [_duration_style(d) for d in durations],
            right=True,
        ),
    ]
    if any(errors):
        columns.append(Column("error", errors, ["red"] * n))
    return columns


def fit_columns(columns: list[Column], width: int | None) -> list[Column]:
    """Set each column's width for a table ``width`` cells wide; drop what cannot fit.

    Ids, counts, states, times and durations are never cut: on a narrow terminal
    the end time, then the create time, then the request count are left out.
    The input file and the error share the room left (each gets at least a
    useful minimum when it needs it), then get cut.
    """
    for column in columns:
        column.width = column.natural()
    if width is None:
        return columns
    kept = list(columns)
    flexible = {"input file", "error"}

    def room() -> int:
        fixed = sum(c.width for c in kept if c.name not in flexible)
        return width - fixed - len(_GAP) * (len(kept) - 1)

    wanted = sum(
        min(c.width, _INPUT_MIN if c.name == "input file" else _ERROR_MIN)
        for c in kept
        if c.name in flexible
    )
    if room() < wanted:
        for column in kept:
            if column.compact is not None:
                column.cells = column.compact
                column.width = column.natural()
    for name in _OPTIONAL:
        if room() >= wanted:
            break
        kept = [c for c in kept if c.name != name]
    space = room()
    inputs = next(c for c in kept if c.name == "input file")
    error = next((c for c in kept if c.name == "error"), None)
    if error is None:
        inputs.width = min(inputs.width, max(_INPUT_MIN, space))
    else:
        inputs.width = min(inputs.width, max(_INPUT_MIN, space - _ERROR_MIN))
        error.width = min(error.width, max(_ERROR_MIN, space - inputs.width))
    return kept


def _cell(column: Column, text: str) -> str:
    if column.name == "input file":
        text = clip_left(text, column.width)
    else:
        text = clip_right(text, column.width)
    pad = " " * (column.width - cell_len(text))
    return pad + text if column.right else text + pad


def table_segments(
    jobs: list[JobView],
    columns: list[Column],
    *,
    checking: Collection[int] = frozenset(),
) -> Iterator[Segment]:
    """Header, rule, one line per job.

    Drawn as segments, not with rich's ``Table``: the widths are already known,
    and a ``Table`` of 10,000 rows takes seconds to lay out.
    """
    bold = _style("bold")
    for index, column in enumerate(columns):
        if index:
            yield Segment(_GAP)
        header = _cell(column, column.name)
        yield Segment(header.rstrip() if index == len(columns) - 1 else header, bold)
    yield Segment.line()
    total = sum(c.width for c in columns) + len(_GAP) * (len(columns) - 1)
    yield Segment("─" * total, _style("dim"))
    yield Segment.line()
    highlight = _style(CHECKING_STYLE)
    last = len(columns) - 1
    for row, job in enumerate(jobs):
        row_style = highlight if job.id in checking else None
        for index, column in enumerate(columns):
            if index:
                yield Segment(_GAP, row_style)
            text = _cell(column, column.cells[row])
            if index == last and row_style is None:
                # No trailing blanks on plain rows (pipes, diffs); a checked row
                # keeps them so its red bar spans the table.
                text = text.rstrip()
            yield Segment(text, _style(column.styles[row]) + row_style)
        yield Segment.line()


@dataclass(frozen=True)
class StatusView:
    """The status view as a rich renderable: it fits its table to the width it is given."""

    snapshot: Snapshot
    shown: list[JobView]
    folded: list[JobView]
    now: datetime
    checking: frozenset[int] = frozenset()
    tz: tzinfo | None = None

    def columns(self, width: int | None) -> list[Column]:
        return fit_columns(status_columns(self.shown, self.now, self.tz), width)

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


def render_status(
    snapshot: Snapshot,
    now: datetime,
    *,
    checking: Collection[int] = frozenset(),
    max_rows: int | None = None,
    tz: tzinfo | None = None,
) -> StatusView:
    """The status view: the jobs table, a fold line when ``max_rows`` hides some, totals.

    ``checking`` holds the ids of the jobs being checked right now (red background).
    ``tz`` is the display time zone (default: this machine's local time). The
    result is a rich renderable; it lays itself out when printed.
    """
    shown, folded = order_jobs(snapshot.jobs, now, checking=checking, max_rows=max_rows)
    return StatusView(snapshot, shown, folded, now, frozenset(checking), tz)


# --- JSON -----------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return None if value is None else format_timestamp(value)


def job_json(job: JobView, now: datetime) -> dict[str, Any]:
    duration = job_duration(job, now)
    return {
        "id": job.id,
        "batch_name": job.batch_name,
        "input_file": job.input_file,
        "display_name": job.display_name,
        "model": job.model,
        "request_count": job.request_count,
        "state": job.state,
        "state_label": state_look(job.state).label,
        "terminal": states.is_terminal(job.state),
        "create_time": _iso(job.create_time),
        "update_time": _iso(job.update_time),
        "end_time": _iso(job.end_time),
        "duration_seconds": duration.seconds,
        "duration": str(duration) or None,
        "duration_approximate": duration.approximate,
        "last_error": job.last_error,
        "error_count": job.error_count,
        "remote_error": job.remote_error,
        "result_path": job.result_path,
        "downloaded_at": _iso(job.downloaded_at),
        "cleaned_at": _iso(job.cleaned_at),
    }


def status_json(snapshot: Snapshot, now: datetime) -> dict[str, Any]:
    """What ``status --json`` prints: every job (id order) and totals by state.

    Times are UTC ISO 8601, like the export; durations are also given in seconds.
    """
    requests: Counter[str | None] = Counter()
    for job in snapshot.jobs:
        requests[job.state] += job.request_count or 0
    totals = [
        {
            "state": state,
            "label": state_look(state).label,
            "jobs": snapshot.totals[state],
            "requests": requests[state],
        }
        for state in sorted(snapshot.totals, key=_state_sort_key)
    ]
    return {
        "generated_at": format_timestamp(now),
        "total_jobs": len(snapshot.jobs),
        "total_requests": snapshot.total_requests,
        "totals": totals,
        "jobs": [job_json(job, now) for job in snapshot.jobs],
    }
