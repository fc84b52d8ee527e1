"""The status table: its columns, fitted to the width, drawn straight to segments.

The ``status`` command and the live dashboard both draw their job table with
these pieces, plus the fold line (the jobs left out) and the totals line. Pure:
the jobs, ``now`` and the width come in as arguments, so the output is
reproducible in tests (render into ``Console(file=io.StringIO(), width=...)``).
Colours are styles only; rich drops them itself for ``NO_COLOR`` or a pipe.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from gembatch.common.snapshot import JobView, Snapshot
from gembatch.common.timeutil import ensure_utc
from gembatch.view.looks import Duration, count_parts, job_duration, job_error, state_look

# White on red: a red ✗ or a red error would vanish on a red background.
CHECKING_STYLE = "bold white on red"
TIME_FORMAT = "%Y-%m-%d %H:%M"
COMPACT_TIME_FORMAT = "%m-%d %H:%M"

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


def fold_line(folded: Iterable[JobView]) -> Text:
    """``… 940 more: 930 ✓, 10 ⊘`` (``? unknown`` and future states by name)."""
    counts: Counter[str | None] = Counter(job.state for job in folded)
    line = Text(f"… {sum(counts.values()):,} more: ")
    line.append_text(count_parts(counts, labels=False))
    return line


def totals_line(snapshot: Snapshot) -> Text:
    """``1,000 jobs, 52,000 requests: 930 ✓ succeeded · 10 ⊘ cancelled · 60 ● running``."""
    jobs = len(snapshot.jobs)
    line = Text(f"{jobs:,} job{'s' if jobs != 1 else ''}", style="bold")
    line.append(f", {snapshot.total_requests:,} requests")
    if jobs:
        line.append(": ")
        line.append_text(count_parts(Counter(snapshot.totals), labels=True))
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
