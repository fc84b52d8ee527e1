"""The timeline is a pure function of its bars: rendered into a recording console."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

from rich.console import Console

from gembatch.common import states
from gembatch.view.timeline import Bar, render_timeline

T0 = datetime(2025, 7, 1, 12, 0, tzinfo=timezone.utc)


def draw(bars: list[Bar], width: int = 44, **kwargs: object) -> list[str]:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(render_timeline(bars, T0 + timedelta(hours=2), tz=timezone.utc, **kwargs))  # type: ignore[arg-type]
    return console.file.getvalue().splitlines()  # type: ignore[attr-defined]


def test_bars_share_one_axis() -> None:
    # Label width 2, then " ✓ ": the bar area is 44 - 2 - 4 = 38 cells for 2 hours.
    out = draw(
        [
            Bar("#1", states.SUCCEEDED, T0, T0 + timedelta(hours=1)),
            Bar(
                "#2",
                states.FAILED,
                T0 + timedelta(hours=1),
                T0 + timedelta(hours=2),
                running_at=T0 + timedelta(minutes=96),  # column 30.4
            ),
        ]
    )
    assert out[0] == "#1 ✓ " + "█" * 19
    assert out[1] == "#2 ✗ " + " " * 19 + "░" * 11 + "█" * 8
    assert out[2].strip() == "├" + "─" * 36 + "┤"
    assert out[3].strip().startswith("07-01 12:00") and out[3].endswith("07-01 14:00")
    assert "2h 0m 0s" in out[3]


def test_in_flight_runs_to_now_and_partial_success_is_marked() -> None:
    out = draw(
        [
            Bar("#1", states.SUCCEEDED, T0, T0 + timedelta(hours=1), partial=True),
            Bar("#2", states.RUNNING, T0 + timedelta(hours=1), None),
        ]
    )
    assert out[0].endswith("█" * 19)  # the red tail is still a block, coloured
    assert out[1].endswith("▶") and out[1].count("█") == 18


def test_colours_follow_the_state() -> None:
    console = Console(file=io.StringIO(), width=40, color_system="truecolor", record=True)
    console.print(
        render_timeline(
            [Bar("#1", states.FAILED, T0, T0 + timedelta(minutes=5))], T0 + timedelta(minutes=5)
        )
    )
    html = console.export_text(styles=True)
    assert "\x1b[31m" in html  # red for failed


def test_fold_beyond_max_rows() -> None:
    bars = [
        Bar(f"#{n}", states.SUCCEEDED, T0 + timedelta(minutes=n), T0 + timedelta(minutes=n + 5))
        for n in range(5)
    ]
    out = draw(bars, max_rows=2)
    assert out[0].startswith("#0") and out[1].startswith("#1")
    assert out[-1] == "… 3 more jobs not drawn"


def test_nothing_to_draw() -> None:
    assert draw([]) == ["no jobs with a create time to draw"]
