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
from datetime import datetime, timedelta, tzinfo

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from gembatch.common import states
from gembatch.common.ages import DEFAULT_STUCK_AFTER, job_age
from gembatch.common.snapshot import JobView, Snapshot
from gembatch.common.timeutil import ensure_utc
from gembatch.view.fit import GAP, Column, Form
from gembatch.view.looks import (
    ALL_FAILED,
    Duration,
    age_mark,
    all_failed,
    count_parts,
    display_state,
    job_duration,
    job_error,
    job_look,
)
from gembatch.view.progress import (
    BAR_WIDTH,
    NARROW_BAR_WIDTH,
    Pieces,
    figures_width,
    in_flight_progress,
    progress_pieces,
)

# White on red: a red ✗ or a red error would vanish on a red background.
CHECKING_STYLE = "bold white on red"
TIME_FORMAT = "%Y-%m-%d %H:%M"
COMPACT_TIME_FORMAT = "%m-%d %H:%M"
SHORT_TIME_FORMAT = "%H:%M"
SHORT_DATE_FORMAT = "%m-%d"

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
    """``… 940 more: 930 ✓, 10 ⊘`` (``? unknown``, ``✗ all failed`` and future states by name)."""
    counts: Counter[str | None] = Counter(display_state(job) for job in folded)
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
        counts = Counter(snapshot.totals)
        # A succeeded job with every request failed is counted as what it is.
        failed_all = sum(1 for job in snapshot.jobs if job.api_failed_count and all_failed(job))
        if failed_all:
            counts[states.SUCCEEDED] -= failed_all
            counts[ALL_FAILED] = failed_all
            counts = +counts
        line.append_text(count_parts(counts, labels=True))
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


def _short_time(value: datetime | None, now: datetime, tz: tzinfo | None) -> str:
    """``18:35`` today, ``12-01`` on another day: five cells either way."""
    if value is None:
        return ""
    local = ensure_utc(value).astimezone(tz)  # type: ignore[union-attr]
    today = ensure_utc(now).astimezone(tz).date()  # type: ignore[union-attr]
    return local.strftime(SHORT_TIME_FORMAT if local.date() == today else SHORT_DATE_FORMAT)


def _time_column(
    name: str, values: list[datetime | None], now: datetime, tz: tzinfo | None
) -> Column:
    n = len(values)
    return Column(
        name,
        [_time_cell(v, tz) for v in values],
        [""] * n,
        shorter=[
            Form([_time_cell(v, tz, COMPACT_TIME_FORMAT) for v in values]),
            Form([_short_time(v, now, tz) for v in values]),
        ],
    )


def _state_column(jobs: list[JobView], now: datetime, stuck_after: timedelta) -> Column:
    """``● running``, ``✗ all failed``, ``● running · stuck``; shorter: ``● stuck``."""
    cells, styles, short = [], [], []
    for job in jobs:
        look = job_look(job)
        mark = age_mark(job_age(job, now, stuck_after))
        if mark is None:
            cells.append(f"{look.symbol} {look.label}")
            styles.append(look.style)
            short.append(cells[-1])
        else:
            cells.append(f"{look.symbol} {look.label} · {mark[0]}")
            styles.append(mark[1])
            short.append(f"{look.symbol} {mark[0]}")
    return Column("state", cells, styles, shorter=[Form(short)] if short != cells else [])


def _progress_column(jobs: list[JobView]) -> Column | None:
    """Done of total with a bar, for jobs in flight the API reported counts for."""
    counts = [in_flight_progress(job) for job in jobs]
    if not any(counts):
        return None
    width = figures_width(counts)

    def form(bar: int) -> Form:
        pieces = [None if c is None else progress_pieces(c, bar, width) for c in counts]
        cells = ["" if p is None else "".join(text for text, _ in p) for p in pieces]
        return Form(cells, pieces)

    full, narrow, bare = form(BAR_WIDTH), form(NARROW_BAR_WIDTH), form(0)
    return Column(
        "progress", full.cells, [""] * len(jobs), pieces=full.pieces, shorter=[narrow, bare]
    )


def status_columns(
    jobs: list[JobView],
    now: datetime,
    tz: tzinfo | None,
    *,
    stuck_after: timedelta = DEFAULT_STUCK_AFTER,
) -> list[Column]:
    """Every column, widths not yet fitted; progress only when a job in flight has
    counts, the error column only when a job has an error."""
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
        _state_column(jobs, now, stuck_after),
    ]
    progress = _progress_column(jobs)
    if progress is not None:
        columns.append(progress)
    columns += [
        _time_column("created", [job.create_time for job in jobs], now, tz),
        _time_column("ended", [job.end_time for job in jobs], now, tz),
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
            yield Segment(GAP)
        header = _cell(column, column.name)
        yield Segment(header.rstrip() if index == len(columns) - 1 else header, bold)
    yield Segment.line()
    total = sum(c.width for c in columns) + len(GAP) * (len(columns) - 1)
    yield Segment("─" * total, _style("dim"))
    yield Segment.line()
    highlight = _style(CHECKING_STYLE)
    last = len(columns) - 1
    for row, job in enumerate(jobs):
        row_style = highlight if job.id in checking else None
        for index, column in enumerate(columns):
            if index:
                yield Segment(GAP, row_style)
            pieces = column.pieces[row] if column.pieces is not None else None
            if pieces:
                yield from _piece_segments(column, pieces, row_style, index == last)
                continue
            text = _cell(column, column.cells[row])
            if index == last and row_style is None:
                # No trailing blanks on plain rows (pipes, diffs); a checked row
                # keeps them so its red bar spans the table.
                text = text.rstrip()
            yield Segment(text, _style(column.styles[row]) + row_style)
        yield Segment.line()


def _piece_segments(
    column: Column, pieces: Pieces, row_style: Style | None, last: bool
) -> Iterator[Segment]:
    """A cell of several styled pieces (never cut: its forms are its widths), padded."""
    used = 0
    for text, style in pieces:
        used += cell_len(text)
        yield Segment(text, _style(style) + row_style)
    pad = column.width - used
    if pad > 0 and not (last and row_style is None):
        yield Segment(" " * pad, row_style)
