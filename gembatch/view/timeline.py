"""A terminal timeline: one bar per job from creation to end on a shared time axis.

Pure: bars, ``now`` and the time zone come in as arguments, the width comes from
the console at print time, so tests render into ``Console(file=io.StringIO())``.
The outcome is shown twice, as the bar's colour and as the state symbol before
it, so the chart still reads without colour (``NO_COLOR``, a pipe).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

from gembatch.common.timeutil import ensure_utc, format_duration
from gembatch.view.looks import state_look
from gembatch.view.table import clip_left

# Time queued (before poll first saw the job RUNNING) is drawn light, time running solid.
QUEUED = "░"
RUNNING = "█"
# A job still in flight runs to "now" and keeps growing.
GROWING_TIP = "▶"
LABEL_MAX = 28
TIME_FORMAT = "%m-%d %H:%M"


@dataclass(frozen=True, slots=True)
class Bar:
    """One job on the timeline."""

    label: str
    state: str | None
    start: datetime
    end: datetime | None  # None: still in flight, drawn up to ``now``
    running_at: datetime | None = None
    # Succeeded, but some of its requests failed: a red tail marks it.
    partial: bool = False


@dataclass(frozen=True, slots=True)
class Timeline:
    bars: tuple[Bar, ...]
    now: datetime
    tz: tzinfo | None = None
    folded: int = 0  # jobs left out (``max_rows``)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not self.bars:
            yield Text("no jobs with a create time to draw", style="dim")
            return
        starts = [ensure_utc(bar.start) for bar in self.bars]
        ends = [ensure_utc(bar.end) if bar.end else ensure_utc(self.now) for bar in self.bars]
        t0 = min(starts)
        t1 = max(max(ends), t0)  # type: ignore[type-var]
        span = (t1 - t0).total_seconds()  # type: ignore[operator]
        label_width = min(LABEL_MAX, max(cell_len(bar.label) for bar in self.bars))
        # label, space, symbol, space, bar
        area = max(10, options.max_width - label_width - 4)
        for bar, start, end in zip(self.bars, starts, ends, strict=True):
            yield _line(bar, start, end, t0, span, area, label_width)  # type: ignore[arg-type]
        yield _axis(t0, t1, span, area, label_width, self.tz)  # type: ignore[arg-type]
        if self.folded:
            yield Text(f"… {self.folded:,} more jobs not drawn", style="dim")


def _column(at: datetime, t0: datetime, span: float, area: int) -> float:
    if span <= 0:
        return 0.0
    return (at - t0).total_seconds() / span * area


def _clip_label(text: str, width: int) -> str:
    """Shorten from the left but keep a leading ``#id`` so rows stay identifiable."""
    prefix, space, rest = text.partition(" ")
    if space and prefix.startswith("#") and len(prefix) + 2 < width:
        return f"{prefix} {clip_left(rest, width - len(prefix) - 1)}"
    return clip_left(text, width)


def _line(
    bar: Bar, start: datetime, end: datetime, t0: datetime, span: float, area: int, label: int
) -> Text:
    look = state_look(bar.state)
    first = min(area - 1, math.floor(_column(start, t0, span, area)))
    last = max(first + 1, min(area, math.ceil(_column(end, t0, span, area))))
    split = first
    if bar.running_at is not None:
        split = min(last, max(first, round(_column(ensure_utc(bar.running_at), t0, span, area))))  # type: ignore[arg-type]
    line = Text(_clip_label(bar.label, label).ljust(label), style="")
    line.append(" ")
    line.append(look.symbol, style=look.style)
    line.append(" ")
    line.append(" " * first)
    line.append(QUEUED * (split - first), style=look.style)
    solid = last - split
    tip = GROWING_TIP if bar.end is None and solid > 0 else ""
    tail = 1 if bar.partial and solid > 1 else 0
    line.append(RUNNING * (solid - len(tip) - tail), style=look.style)
    if tail:
        line.append(RUNNING, style="red")
    line.append(tip, style=look.style)
    return line


def _axis(
    t0: datetime, t1: datetime, span: float, area: int, label: int, tz: tzinfo | None
) -> Text:
    left = t0.astimezone(tz).strftime(TIME_FORMAT)
    right = t1.astimezone(tz).strftime(TIME_FORMAT)
    middle = f" {format_duration(span)} "
    rule = "├" + "─" * max(0, area - 2) + "┤"
    axis = Text(" " * (label + 3) + rule, style="dim")
    room = area - len(left) - len(right)
    caption = left + " " * max(1, room) + right
    if room >= len(middle) + 2:
        at = len(left) + (room - len(middle)) // 2
        caption = caption[:at] + middle + caption[at + len(middle) :]
    axis.append("\n" + " " * (label + 3) + caption, style="dim")
    return axis


def render_timeline(
    bars: Sequence[Bar], now: datetime, *, tz: tzinfo | None = None, max_rows: int | None = None
) -> Timeline:
    """Bars in creation order; beyond ``max_rows`` the latest are left out and counted."""
    ordered = sorted(bars, key=lambda bar: (ensure_utc(bar.start), bar.label))
    folded = 0
    if max_rows is not None and len(ordered) > max_rows:
        folded = len(ordered) - max_rows
        ordered = ordered[:max_rows]
    return Timeline(tuple(ordered), now, tz, folded)
