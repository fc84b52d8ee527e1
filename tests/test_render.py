"""The pure status renderer: states, durations, ordering, folding, layout, styles, JSON.

Everything renders from hand-built snapshots with a frozen ``now`` and a fixed
time zone into ``Console(file=io.StringIO())``; no database, no terminal.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone

import pytest
from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.segment import Segment
from rich.style import Style

from gembatch.common import states
from gembatch.common.snapshot import JobView, Snapshot
from gembatch.view.attention import order_jobs
from gembatch.view.looks import job_duration, short_error, state_cell
from gembatch.view.status import render_status
from gembatch.view.status_json import status_json
from gembatch.view.table import CHECKING_STYLE, clip_left, clip_right, fold_line

UTC = timezone.utc
NOW = datetime(2025, 7, 12, 20, 0, 0, tzinfo=UTC)
T0 = datetime(2025, 7, 12, 12, 0, 0, tzinfo=UTC)


def console(width: int = 200) -> Console:
    return Console(file=io.StringIO(), width=width, force_terminal=True, color_system="truecolor")


def segments(renderable: RenderableType, width: int = 200) -> list[Segment]:
    con = console(width)
    return list(con.render(renderable, con.options))


def plain(renderable: RenderableType, width: int = 200) -> str:
    con = Console(file=io.StringIO(), width=width, color_system=None)
    con.print(renderable)
    return con.file.getvalue()  # type: ignore[attr-defined]


def style_of(segs: list[Segment], text: str) -> Style:
    for seg in segs:
        if seg.text.strip() == text:
            assert seg.style is not None
            return seg.style
    raise AssertionError(f"no segment {text!r} in {[s.text for s in segs]}")


def job(id: int, state: str | None = states.SUCCEEDED, **kw: object) -> JobView:
    kw.setdefault("input_file", f"batch/{id:03d}.jsonl")
    return JobView(id=id, state=state, **kw)  # type: ignore[arg-type]


# --- states ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "text", "color"),
    [
        (states.SUCCEEDED, "✓ succeeded", "green"),
        (states.FAILED, "✗ failed", "red"),
        (states.CANCELLED, "⊘ cancelled", "dark_orange"),
        (states.EXPIRED, "⧖ expired", "magenta"),
        (states.RUNNING, "● running", "yellow"),
        (states.PENDING, "○ pending", "yellow"),
        ("JOB_STATE_PAUSED", "• paused", "yellow"),  # a state a future API adds
    ],
)
def test_state_cell(state: str, text: str, color: str) -> None:
    cell = state_cell(state)
    assert cell.plain == text
    assert Style.parse(str(cell.style)).color.name == color  # type: ignore[union-attr]


def test_unknown_state_is_a_question_mark() -> None:
    assert state_cell(None).plain == "? unknown"
    assert state_cell("").plain == "? unknown"


# --- durations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(3 * 3600 + 45 * 60 + 30, "3h 45m 30s"), (45 * 60 + 30, "45m 30s"), (12, "12s")],
)
def test_finished_duration_is_end_minus_create(seconds: int, text: str) -> None:
    finished = job(1, create_time=T0, end_time=T0 + timedelta(seconds=seconds))
    duration = job_duration(finished, NOW)
    assert str(duration) == text
    assert duration.seconds == seconds
    assert not duration.growing and not duration.approximate


def test_running_duration_grows_with_now() -> None:
    running = job(1, states.RUNNING, create_time=NOW - timedelta(minutes=5))
    assert str(job_duration(running, NOW)) == "5m 0s"
    assert str(job_duration(running, NOW + timedelta(seconds=7))) == "5m 7s"
    assert job_duration(running, NOW).growing
    # A state a future API adds is in flight too.
    paused = job(2, "JOB_STATE_PAUSED", create_time=NOW - timedelta(seconds=30))
    assert str(job_duration(paused, NOW)) == "30s"


def test_terminal_without_end_time_uses_update_time_marked_approximate() -> None:
    old = job(1, states.CANCELLED, create_time=T0, update_time=T0 + timedelta(seconds=12))
    duration = job_duration(old, NOW)
    assert str(duration) == "~12s"
    assert duration.approximate


@pytest.mark.parametrize(
    "view",
    [
        job(1, create_time=None, end_time=T0),
        job(2, states.SUCCEEDED, create_time=T0),  # no end, no update
        job(3, None, create_time=T0),  # state never known
    ],
)
def test_duration_unknown_is_blank(view: JobView) -> None:
    assert str(job_duration(view, NOW)) == ""
    assert job_duration(view, NOW).seconds is None


def test_clock_skew_never_gives_negative_durations() -> None:
    skewed = job(1, states.RUNNING, create_time=NOW + timedelta(seconds=3))
    assert str(job_duration(skewed, NOW)) == "0s"


# --- text helpers ---------------------------------------------------------------------


def test_clipping_keeps_file_name_and_error_start() -> None:
    assert clip_left("batch/deep/dir/file-002.jsonl", 15) == "…file-002.jsonl"
    assert clip_right("INVALID_ARGUMENT: bad line", 10) == "INVALID_A…"
    assert clip_left("short", 10) == "short"
    assert short_error("first line\n  second line") == "first line"
    assert short_error("a    b\tc") == "a b c"
    assert short_error("x" * 100, width=10) == "x" * 9 + "…"


# --- table ----------------------------------------------------------------------------


def sample() -> Snapshot:
    return Snapshot.from_jobs(
        [
            job(
                1,
                request_count=1000,
                create_time=T0,
                end_time=T0 + timedelta(hours=3, minutes=45, seconds=30),
            ),
            job(
                2,
                states.FAILED,
                request_count=20,
                create_time=T0,
                end_time=T0 + timedelta(minutes=45, seconds=30),
                remote_error="INVALID_ARGUMENT: request 3 is not valid JSON",
            ),
            job(3, states.CANCELLED, create_time=T0, end_time=T0 + timedelta(seconds=12)),
            job(
                4,
                states.RUNNING,
                create_time=NOW - timedelta(hours=1),
                last_error="HTTP 503 while polling\ntraceback noise",
                error_count=3,
            ),
            job(5, None),
        ]
    )


def test_table_rows_show_state_times_duration_and_error() -> None:
    text = plain(render_status(sample(), NOW, tz=UTC))
    lines = text.splitlines()
    assert lines[0].split() == [
        "#",
        "input",
        "file",
        "requests",
        "state",
        "created",
        "ended",
        "duration",
        "error",
    ]
    row1 = next(line for line in lines if "batch/001.jsonl" in line)
    assert "1,000" in row1
    assert "✓ succeeded" in row1
    assert "2025-07-12 12:00" in row1 and "2025-07-12 15:45" in row1
    assert "3h 45m 30s" in row1
    assert "45m 30s" in next(line for line in lines if "batch/002.jsonl" in line)
    assert "INVALID_ARGUMENT: request 3" in text
    assert "12s" in next(line for line in lines if "batch/003.jsonl" in line)
    row4 = next(line for line in lines if "batch/004.jsonl" in line)
    assert "1h 0m 0s" in row4 and "×3 HTTP 503 while polling" in row4
    assert "traceback noise" not in text
    assert "? unknown" in next(line for line in lines if "batch/005.jsonl" in line)
    assert lines[-1] == (
        "5 jobs, 1,020 requests: 1 ✓ succeeded · 1 ✗ failed · 1 ⊘ cancelled · "
        "1 ● running · 1 ? unknown"
    )


def test_times_are_shown_in_the_given_time_zone() -> None:
    plus2 = timezone(timedelta(hours=2))
    assert "2025-07-12 14:00" in plain(render_status(sample(), NOW, tz=plus2))


def test_everything_fits_in_id_order_without_fold() -> None:
    text = plain(render_status(sample(), NOW, tz=UTC, max_rows=5))
    ids = [line.split()[0] for line in text.splitlines()[2:7]]
    assert ids == ["1", "2", "3", "4", "5"]
    assert "more:" not in text


def test_state_colours_and_checked_row_background() -> None:
    segs = segments(render_status(sample(), NOW, tz=UTC, checking={2}))
    assert style_of(segs, "✓ succeeded").color.name == "green"  # type: ignore[union-attr]
    assert style_of(segs, "⊘ cancelled").color.name == "dark_orange"  # type: ignore[union-attr]
    assert style_of(segs, "? unknown").dim
    running = style_of(segs, "● running")
    assert running.color.name == "yellow" and running.bgcolor is None  # type: ignore[union-attr]
    # The row being checked: every cell on a red background (its ✗ in white so it stays visible).
    checked = style_of(segs, "✗ failed")
    assert checked.bgcolor.name == "red"  # type: ignore[union-attr]
    assert style_of(segs, "batch/002.jsonl").bgcolor.name == "red"  # type: ignore[union-attr]
    assert style_of(segs, "batch/001.jsonl").bgcolor is None
    assert style_of(segs, "1h 0m 0s").color.name == "yellow"  # type: ignore[union-attr]


def test_ansi_output_carries_the_colours() -> None:
    con = console()
    con.print(render_status(sample(), NOW, tz=UTC, checking={2}))
    out = con.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[32m✓ succeeded" in out  # green
    assert "\x1b[38;5;208m⊘ cancelled" in out  # orange
    assert Style.parse(CHECKING_STYLE).bgcolor.name == "red"  # type: ignore[union-attr]
    assert "\x1b[1;37;41m✗ failed" in out  # checked row: white on red


def test_no_color_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    con = Console(file=io.StringIO(), width=200, force_terminal=True)
    con.print(render_status(sample(), NOW, tz=UTC, checking={2}))
    out = con.file.getvalue()  # type: ignore[attr-defined]
    assert "✓ succeeded" in out
    assert "\x1b[32m" not in out and "41m" not in out


@pytest.mark.parametrize("width", [60, 80, 100, 120])
def test_table_fits_the_width(width: int) -> None:
    long_name = "batch/" + "very-long-directory/" * 4 + "part-0001.jsonl"
    snapshot = Snapshot.from_jobs(
        [
            job(
                1,
                input_file=long_name,
                request_count=123456,
                create_time=T0,
                end_time=T0 + timedelta(hours=3),
                last_error="x" * 200,
            ),
            *sample().jobs[1:],
        ]
    )
    text = plain(render_status(snapshot, NOW, tz=UTC), width=width)
    lines = text.splitlines()
    table = lines[: len(snapshot.jobs) + 2]
    assert all(cell_len(line) <= width for line in table), table
    # The file name survives the cut; states and durations are never cut.
    assert "part-0001.jsonl" in text
    assert "3h 0m 0s" in text and "✓ succeeded" in text
    if width <= 80:
        assert "ended" not in lines[0]  # dropped first on narrow terminals
    elif width <= 100:
        # Before dropping anything, times lose their year.
        assert "ended" in lines[0] and f"{T0:%Y}-" not in lines[2]


def test_wide_table_keeps_all_columns() -> None:
    header = plain(render_status(sample(), NOW, tz=UTC), width=200).splitlines()[0]
    for name in ("#", "input file", "requests", "state", "created", "ended", "duration"):
        assert name in header


def test_error_column_only_when_needed() -> None:
    quiet = Snapshot.from_jobs([job(1, create_time=T0, end_time=T0 + timedelta(seconds=12))])
    assert "error" not in plain(render_status(quiet, NOW, tz=UTC)).splitlines()[0]


def test_empty_snapshot() -> None:
    assert plain(render_status(Snapshot.from_jobs([]), NOW)).strip() == "no jobs yet"


# --- ordering and folding -------------------------------------------------------------


def crowd() -> tuple[Snapshot, int]:
    """950 jobs: 10 need attention (one of them is being checked), 940 do not."""
    old_end = NOW - timedelta(days=1)
    jobs: list[JobView] = []
    next_id = iter(range(1, 10_000))

    def add(state: str, count: int, **kw: object) -> list[int]:
        ids = []
        for _ in range(count):
            ids.append(next(next_id))
            jobs.append(job(ids[-1], state, **kw))
        return ids

    old_ok = add(states.SUCCEEDED, 931, create_time=old_end - timedelta(hours=2), end_time=old_end)
    add(states.CANCELLED, 10, create_time=old_end - timedelta(hours=1), end_time=old_end)
    for minutes in (3, 1, 2):
        add(
            states.SUCCEEDED,
            1,
            create_time=NOW - timedelta(hours=1),
            end_time=NOW - timedelta(minutes=minutes),
        )
    for hours in (4, 1, 3, 2):
        add(states.RUNNING, 1, create_time=NOW - timedelta(hours=hours))
    add(states.FAILED, 1, create_time=T0, end_time=T0 + timedelta(minutes=5))
    add(states.SUCCEEDED, 1, create_time=T0, end_time=T0, last_error="download failed: disk full")
    return Snapshot.from_jobs(jobs), old_ok[500]


def test_fold_line_counts_the_rest() -> None:
    snapshot, checked = crowd()
    text = plain(render_status(snapshot, NOW, tz=UTC, checking={checked}, max_rows=10))
    assert "… 940 more: 930 ✓, 10 ⊘" in text
    assert len([line for line in text.splitlines() if ".jsonl" in line]) == 10


def test_attention_order_when_folding() -> None:
    snapshot, checked = crowd()
    shown, folded = order_jobs(snapshot.jobs, NOW, checking={checked}, max_rows=10)
    by_id = {j.id: j for j in snapshot.jobs}
    assert shown[0].id == checked
    # Errors next (local error or failed state), then running oldest first,
    # then the just finished, newest first.
    assert {j.id for j in shown[1:3]} == {950, 949}
    running = shown[3:7]
    assert all(j.state == states.RUNNING for j in running)
    assert [j.create_time for j in running] == sorted(j.create_time for j in running)  # type: ignore[type-var]
    finished = shown[7:10]
    assert [by_id[j.id].end_time for j in finished] == [
        NOW - timedelta(minutes=1),
        NOW - timedelta(minutes=2),
        NOW - timedelta(minutes=3),
    ]
    assert len(folded) == 940


def test_max_rows_zero_folds_everything() -> None:
    text = plain(render_status(sample(), NOW, tz=UTC, max_rows=0))
    assert "… 5 more: 1 ✓, 1 ✗, 1 ⊘, 1 ●, 1 ? unknown" in text
    assert ".jsonl" not in text


def test_fold_line_names_future_states() -> None:
    line = fold_line([job(1, "JOB_STATE_PAUSED"), job(2, "JOB_STATE_PAUSED"), job(3)])
    assert line.plain == "… 3 more: 1 ✓, 2 • paused"


def test_negative_max_rows_is_an_error() -> None:
    with pytest.raises(ValueError):
        render_status(sample(), NOW, max_rows=-1)


# --- JSON -----------------------------------------------------------------------------


def test_status_json() -> None:
    data = status_json(sample(), NOW)
    json.dumps(data)  # serialisable as is
    assert data["total_jobs"] == 5
    assert data["total_requests"] == 1020
    assert data["generated_at"] == "2025-07-12T20:00:00+00:00"
    assert data["totals"][0] == {
        "state": states.SUCCEEDED,
        "label": "succeeded",
        "jobs": 1,
        "requests": 1000,
    }
    assert data["totals"][-1]["state"] is None and data["totals"][-1]["label"] == "unknown"
    first = data["jobs"][0]
    assert first["duration"] == "3h 45m 30s"
    assert first["duration_seconds"] == 13530
    assert first["create_time"] == "2025-07-12T12:00:00+00:00"
    assert first["terminal"] is True
    running = data["jobs"][3]
    assert running["duration_seconds"] == 3600 and running["terminal"] is False
    assert running["last_error"].startswith("HTTP 503")
