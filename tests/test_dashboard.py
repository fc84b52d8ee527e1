"""The live dashboard, rendered without a terminal.

Frames are rendered into a recording console at fixed sizes (80×24, 200×60) for
23, 200 and 5,000 jobs, with a frozen clock and UTC display times, and read back
as text and styled segments. The live view's machinery (redraw coalescing,
incremental reads, terminal restore) runs against a real SQLite database and a
console writing to a string.
"""

from __future__ import annotations

import io
import re
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from rich.console import Console
from rich.segment import Segment
from sqlalchemy import update

from gembatch.common import states
from gembatch.common.locations import sqlite_url
from gembatch.common.snapshot import JobView, Snapshot
from gembatch.store.database import Store, db_display_name, open_store
from gembatch.store.models import Job
from gembatch.view.dashboard import Dashboard, render_dashboard
from gembatch.view.dashboard_summary import DashboardInfo, DownloadProgress
from gembatch.view.live import LiveView
from gembatch.view.live_drivers import LiveReporter, wants_live

UTC = timezone.utc
NOW = datetime(2025, 7, 12, 20, 0, 0, tzinfo=UTC)
T0 = datetime(2025, 7, 12, 8, 0, 0, tzinfo=UTC)
SIZES = [(80, 24), (200, 60)]
COUNTS = [23, 200, 5000]
INFO = DashboardInfo(
    newly_completed=3,
    last_update=NOW - timedelta(seconds=5),
    next_poll_in=24.2,
    db_name="gembatch.db",
)

# --- a fleet of jobs with known states and times -------------------------------------------
# Job 1 finished after 3h 45m 30s; job 2 has been running for 45m 30s; job 3 failed
# after 12s. The rest follow a fixed pattern (by id) so every test can say which
# jobs are in which state without asking the code under test.


def pattern_state(i: int) -> str:
    if i % 10 == 3:
        return states.FAILED
    if i % 10 == 6:
        return states.CANCELLED
    if i % 10 == 9:
        return states.RUNNING
    if i % 20 == 8:
        return states.PENDING
    if i % 25 == 0:
        return states.EXPIRED
    return states.SUCCEEDED


def fleet(n: int) -> list[JobView]:
    jobs = [
        JobView(
            id=1,
            input_file="batch/0001.jsonl",
            state=states.SUCCEEDED,
            request_count=120,
            create_time=T0,
            end_time=T0 + timedelta(hours=3, minutes=45, seconds=30),
            update_time=T0 + timedelta(hours=3, minutes=45, seconds=30),
        ),
        JobView(
            id=2,
            input_file="batch/0002.jsonl",
            state=states.RUNNING,
            request_count=80,
            create_time=NOW - timedelta(minutes=45, seconds=30),
            update_time=NOW - timedelta(minutes=1),
        ),
        JobView(
            id=3,
            input_file="batch/0003.jsonl",
            state=states.FAILED,
            request_count=5,
            create_time=T0 + timedelta(minutes=1),
            end_time=T0 + timedelta(minutes=1, seconds=12),
            remote_error="INVALID_ARGUMENT: request 4 has no contents\nmore detail here",
        ),
    ]
    for i in range(4, n + 1):
        state = pattern_state(i)
        created = T0 + timedelta(seconds=5 * i)
        ended = None
        if states.is_terminal(state):
            # Finished long before NOW: none of them counts as "just finished".
            ended = created + timedelta(minutes=30, seconds=i % 60)
        jobs.append(
            JobView(
                id=i,
                input_file=f"batch/{i:04d}.jsonl",
                state=state,
                request_count=100 + i % 7,
                create_time=created,
                update_time=ended or created,
                end_time=ended,
            )
        )
    return jobs[:n]


def recording_console(width: int, height: int, **kw: object) -> Console:
    return Console(
        file=io.StringIO(),
        width=width,
        height=height,
        record=True,
        force_terminal=True,
        color_system="truecolor",
        legacy_windows=False,
        **kw,  # type: ignore[arg-type]
    )


class Frame:
    """One rendered frame: its text lines and styled segment lines."""

    def __init__(self, renderable: Dashboard, width: int, height: int) -> None:
        console = recording_console(width, height)
        self.segment_lines: list[list[Segment]] = console.render_lines(
            renderable, console.options, pad=False
        )
        console.print(renderable)
        self.lines = console.export_text().rstrip("\n").split("\n")
        self.text = "\n".join(self.lines)

    def rows(self) -> list[int]:
        """Job ids of the table rows, top to bottom."""
        ids = []
        for line in self.lines:
            match = re.match(r"│\s+(\d+)\s+\S*batch/", line)
            if match:
                ids.append(int(match.group(1)))
        return ids

    def row_line(self, job_id: int) -> str:
        for line in self.lines:
            if re.match(rf"│\s+{job_id}\s", line):
                return line
        raise AssertionError(f"no row for job {job_id} in:\n{self.text}")

    def row_segments(self, job_id: int) -> list[Segment]:
        for segs in self.segment_lines:
            if re.match(rf"│\s+{job_id}\s", "".join(s.text for s in segs)):
                return segs
        raise AssertionError(f"no row for job {job_id}")

    def line_with(self, text: str) -> str:
        found = [line for line in self.lines if text in line]
        assert found, f"{text!r} not in frame:\n{self.text}"
        return found[0]


def frame(
    jobs: list[JobView],
    width: int,
    height: int,
    *,
    checking: frozenset[int] = frozenset(),
    info: DashboardInfo = INFO,
    now: datetime = NOW,
) -> Frame:
    view = render_dashboard(
        Snapshot.from_jobs(jobs), now, checking=checking, info=info, tz=UTC, height=height
    )
    return Frame(view, width, height)


def symbol_counts(text: str) -> dict[str, int]:
    """``930 ✓, 10 ⊘`` → {"✓": 930, "⊘": 10}."""
    return {sym: int(num.replace(",", "")) for num, sym in re.findall(r"(\d[\d,]*) (\S)", text)}


def state_symbol(line: str) -> str:
    match = re.search(r"  ([✓✗⊘⧖●○?]) \w+", line)
    assert match, line
    return match.group(1)


# --- every size, every fleet ----------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), SIZES)
@pytest.mark.parametrize("n", COUNTS)
def test_frame_fits_the_terminal_and_accounts_for_every_job(
    n: int, width: int, height: int
) -> None:
    jobs = fleet(n)
    shot = frame(jobs, width, height, checking=frozenset({2}))

    # Fits: never taller than the terminal, no line wider, the summary and footer visible.
    assert len(shot.lines) <= height
    assert all(len(line) <= width for line in shot.lines)
    assert shot.lines[0].startswith("╭─ gembatch ")
    assert "Ctrl+C stops" in shot.lines[-1] and "gembatch.db" in shot.lines[-1]
    assert "next poll in 25s" in shot.line_with("last cycle:")

    # Summary numbers, counted here from the fleet, not by the code under test.
    expected = Counter(job.state for job in jobs)
    total = shot.line_with("total ")
    assert f"total {n:,} " in total
    assert f"✓ {expected[states.SUCCEEDED]:,}" in total
    assert f"✗ {expected[states.FAILED]:,}" in total
    assert f"⊘ {expected[states.CANCELLED]:,}" in total
    assert f"⧖ {expected[states.EXPIRED]:,}" in total
    remaining = expected[states.RUNNING] + expected[states.PENDING]
    assert f"{remaining:,} remaining" in total
    assert "3 newly completed" in shot.text
    assert "updated 19:59:55" in shot.text

    # Every job is either a row or counted in the fold line, and the fold line's
    # counts by state are exactly the states of the jobs without a row.
    rows = shot.rows()
    assert len(rows) == len(set(rows))
    by_id = {job.id: job for job in jobs}
    folded = [line for line in shot.lines if "more:" in line]
    if len(rows) == n:
        assert not folded
        # Everything fits: oldest first.
        assert rows == sorted(rows, key=lambda i: (by_id[i].create_time, i))
    else:
        assert len(folded) == 1
        more = int(re.search(r"… ([\d,]+) more:", folded[0]).group(1).replace(",", ""))  # type: ignore[union-attr]
        assert more == n - len(rows)
        hidden = Counter(by_id[i].state for i in by_id.keys() - set(rows))
        symbols = {
            states.SUCCEEDED: "✓",
            states.FAILED: "✗",
            states.CANCELLED: "⊘",
            states.EXPIRED: "⧖",
            states.RUNNING: "●",
            states.PENDING: "○",
        }
        assert symbol_counts(folded[0].split("more:")[1]) == {
            symbols[state]: count for state, count in hidden.items()
        }
        # The row being checked comes first.
        assert rows[0] == 2


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_23_jobs_rows_in_attention_order_when_folded(width: int, height: int) -> None:
    jobs = fleet(23)
    shot = frame(jobs, width, height, checking=frozenset({20}))
    rows = shot.rows()
    if height == 60:
        assert sorted(rows) == list(range(1, 24))
        return
    # 80×24: 24 lines - 4 (borders, rule, footer) - 2 summary lines - 2 (header, rule)
    # leaves 16 lines: 15 rows and the fold line.
    assert len(rows) == 15
    failed = [j.id for j in jobs if j.state == states.FAILED]
    running = sorted(
        (j for j in jobs if not states.is_terminal(j.state)), key=lambda j: j.create_time
    )
    # Being checked, then errors (latest first), then work in flight (oldest first).
    assert rows[0] == 20
    assert rows[1 : 1 + len(failed)] == sorted(
        failed,
        key=lambda i: -jobs[i - 1].end_time.timestamp(),  # type: ignore[union-attr]
    )
    assert rows[1 + len(failed) : 1 + len(failed) + len(running)] == [j.id for j in running]
    # Left out: the succeeded and cancelled jobs that ended longest ago.
    assert shot.line_with("… 8 more: 7 ✓, 1 ⊘")


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_200_jobs_errors_and_running_before_the_rest(width: int, height: int) -> None:
    jobs = fleet(200)
    shot = frame(jobs, width, height, checking=frozenset({150}))
    rows = shot.rows()
    assert rows[0] == 150
    ranks = []
    for job_id in rows[1:]:
        job = jobs[job_id - 1]
        ranks.append(
            0 if job.state == states.FAILED else 1 if not states.is_terminal(job.state) else 2
        )
    assert ranks == sorted(ranks)
    assert ranks[0] == 0
    if height == 60:  # 51 rows: 20 failed, 30 in flight
        assert ranks.count(0) == 20
        assert ranks.count(1) == 30


def test_5000_jobs_at_80x24_keeps_summary_and_folds_the_rest() -> None:
    jobs = fleet(5000)
    shot = frame(jobs, 80, 24, checking=frozenset({4999}))
    assert shot.rows()[0] == 4999
    assert len(shot.rows()) == 15
    assert shot.line_with("… 4,985 more:")
    assert len(shot.lines) == 24  # a full screen: rows fill the room the summary leaves
    assert shot.lines[-2].startswith("╰")


# --- styles -------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), SIZES)
@pytest.mark.parametrize("n", COUNTS)
def test_checked_row_has_a_red_background(n: int, width: int, height: int) -> None:
    shot = frame(fleet(n), width, height, checking=frozenset({2}))
    segs = shot.row_segments(2)
    # Every cell and the gaps between them; the panel's border and padding are not the row's.
    cells = [i for i, s in enumerate(segs) if s.text.strip() not in ("", "│")]
    inside = segs[cells[0] : cells[-1] + 1]
    assert len(cells) >= 4 and "●" in "".join(s.text for s in inside)
    for seg in inside:
        assert seg.style is not None and seg.style.bgcolor is not None, seg
        assert seg.style.bgcolor.name == "red", seg
    # Other rows have no background.
    other = next(i for i in shot.rows() if i != 2)
    assert all(s.style is None or s.style.bgcolor is None for s in shot.row_segments(other))


@pytest.mark.parametrize(
    ("job_id", "symbol", "label", "color"),
    [
        (1, "✓", "succeeded", "green"),
        (2, "●", "running", "yellow"),
        (3, "✗", "failed", "red"),
        (6, "⊘", "cancelled", "dark_orange"),
        (8, "○", "pending", "yellow"),
        (25, "⧖", "expired", "magenta"),
    ],
)
def test_state_symbols_and_colours(job_id: int, symbol: str, label: str, color: str) -> None:
    shot = frame(fleet(30), 200, 60)
    assert f"{symbol} {label}" in shot.row_line(job_id)
    seg = next(s for s in shot.row_segments(job_id) if s.text.strip() == f"{symbol} {label}")
    assert seg.style is not None and seg.style.color is not None
    assert seg.style.color.name == color


def test_expired_is_distinct_from_every_other_state() -> None:
    shot = frame(fleet(30), 200, 60)
    expired = next(s for s in shot.row_segments(25) if "expired" in s.text)
    others = [
        next(s for s in shot.row_segments(i) if s.text.strip().endswith(word))
        for i, word in ((1, "succeeded"), (3, "failed"), (6, "cancelled"), (2, "running"))
    ]
    assert all(o.style.color != expired.style.color for o in others)  # type: ignore[union-attr]
    assert all(not o.text.startswith("⧖") for o in others)


def test_no_color_keeps_symbols_and_drops_colours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    console = Console(file=io.StringIO(), width=120, height=40, force_terminal=True)
    console.print(render_dashboard(Snapshot.from_jobs(fleet(12)), NOW, info=INFO, tz=UTC))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "✓ succeeded" in out and "✗ failed" in out
    assert not re.search(r"\x1b\[[0-9;]*(3[0-7]|38;|4[0-7]|48;)", out), "colour codes present"


# --- durations and the clock ---------------------------------------------------------------


def test_durations_for_finished_and_running_jobs() -> None:
    shot = frame(fleet(23), 200, 60)
    assert shot.row_line(1).rstrip(" │").endswith("3h 45m 30s")
    assert shot.row_line(2).rstrip(" │").endswith("45m 30s")
    assert "12s" in shot.row_line(3)
    # Times are shown in the display zone given (UTC here), created and ended.
    assert "2025-07-12 08:00  2025-07-12 11:45" in shot.row_line(1)
    running = next(s for s in shot.row_segments(2) if s.text.strip() == "45m 30s")
    assert running.style is not None and running.style.color.name == "yellow"  # type: ignore[union-attr]


def test_tick_grows_running_durations_and_the_countdown_without_reordering() -> None:
    jobs = fleet(5000)
    first = render_dashboard(
        Snapshot.from_jobs(jobs), NOW, checking={2}, info=INFO, tz=UTC, height=60
    )
    before = Frame(first, 200, 60)
    later = first.tick(NOW + timedelta(seconds=90), 3.0)
    after = Frame(later, 200, 60)
    assert later._plans is first._plans  # the ordering is reused, not recomputed
    assert after.rows() == before.rows()
    assert "next poll in 3s" in after.text
    assert after.row_line(2).rstrip(" │").endswith("47m 0s")
    assert before.row_line(2).rstrip(" │").endswith("45m 30s")
    # A finished job's duration does not move with the clock.
    finished = next(i for i in before.rows() if jobs[i - 1].state == states.FAILED)
    assert before.row_line(finished) == after.row_line(finished)


def test_countdown_reads_like_a_duration() -> None:
    shot = frame(fleet(3), 120, 30, info=DashboardInfo(next_poll_in=125.0))
    assert "next poll in 2m 5s" in shot.text
    polling = frame(fleet(3), 120, 30, info=DashboardInfo(next_poll_in=None))
    assert "polling now…" in polling.text


# --- more on screen ------------------------------------------------------------------------


def test_last_error_is_shortened_on_its_row() -> None:
    jobs = fleet(10)
    jobs[4] = JobView(
        id=5,
        input_file="batch/0005.jsonl",
        state=states.RUNNING,
        create_time=NOW - timedelta(minutes=5),
        last_error="HTTP 503: " + "service unavailable " * 20 + "\nTraceback line 2",
        error_count=3,
    )
    shot = frame(jobs, 200, 60)
    line = shot.row_line(5)
    assert "×3 HTTP 503: service unavailable" in line
    assert "…" in line and "Traceback" not in line
    assert "INVALID_ARGUMENT: request 4 has no contents" in shot.row_line(3)


def test_download_progress_shows_a_bar_bytes_and_rate() -> None:
    info = DashboardInfo(
        downloads={
            1: DownloadProgress(done=12_300_000, total=40_000_000, rate=5_100_000),
            2: DownloadProgress(done=1_500_000, total=None, rate=750_000),
        },
        db_name="gembatch.db",
    )
    shot = frame(fleet(23), 200, 60, info=info)
    first = shot.line_with("↓ batch/0001.jsonl")
    assert "12.3 MB / 40.0 MB" in first and "5.1 MB/s" in first
    assert "━" in first
    second = shot.line_with("↓ batch/0002.jsonl")
    assert "1.5 MB" in second and "750.0 kB/s" in second
    # Two more summary lines: the table lost two rows at 80×24 and still fits.
    small = frame(fleet(23), 80, 24, info=info)
    assert len(small.lines) <= 24 and len(small.rows()) == 13


def test_many_downloads_are_summed_up() -> None:
    downloads = {i: DownloadProgress(done=1_000_000 * i) for i in range(1, 7)}
    shot = frame(fleet(23), 200, 60, info=DashboardInfo(downloads=downloads))
    assert len([line for line in shot.lines if "↓ batch/" in line]) == 3
    assert "… 3 more downloads, 15.0 MB so far" in shot.text


def test_finished_run_says_all_jobs_completed_and_the_exit_summary() -> None:
    done = [j for j in fleet(23) if states.is_terminal(j.state)]
    info = DashboardInfo(
        finished=True, exit_summary="15 succeeded, 3 failed; 15 result files written this run"
    )
    shot = frame(done, 80, 24, info=info)
    assert "✓ all jobs completed" in shot.text
    assert "15 result files written this run" in shot.text
    assert "Ctrl+C" not in shot.lines[-1]
    assert len(shot.lines) <= 24
    stopped = frame(fleet(23), 80, 24, info=info)
    assert "stopped with 4 jobs not finished" in stopped.text


def test_footer_names_the_database_and_how_to_stop_and_resume() -> None:
    shot = frame(fleet(3), 80, 24, info=DashboardInfo(db_name="/very/long/" * 10 + "jobs.db"))
    footer = shot.lines[-1]
    assert "jobs.db" in footer and "Ctrl+C stops" in footer and "resume" in footer
    assert len(footer) <= 80
    watch = frame(fleet(3), 80, 24, info=DashboardInfo(db_name="x.db", mode="watch"))
    assert "read-only" in watch.lines[-1] and "since last read" in watch.text


def test_tiny_terminal_still_shows_the_summary() -> None:
    shot = frame(fleet(200), 80, 9)
    assert len(shot.lines) <= 9
    assert shot.line_with("total 200")
    assert shot.line_with("… 200 more:")
    assert shot.rows() == []


def test_no_jobs_yet() -> None:
    shot = frame([], 80, 24)
    assert "no jobs yet" in shot.text and "total 0" in shot.text


def test_follows_the_size_it_is_rendered_at() -> None:
    view = render_dashboard(Snapshot.from_jobs(fleet(200)), NOW, info=INFO, tz=UTC)
    small, large = Frame(view, 80, 24), Frame(view, 200, 60)
    assert len(small.lines) == 24 and len(large.lines) == 60
    assert len(small.lines[0]) == 80 and len(large.lines[0]) == 200


# --- the live view, with a real database and a string for a terminal ------------------------


def fill(store: Store, jobs: list[JobView]) -> None:
    with store.transaction() as session:
        session.add_all(
            Job(
                id=j.id,
                input_file=j.input_file,
                state=j.state,
                request_count=j.request_count,
                create_time=j.create_time,
                update_time=j.update_time,
                end_time=j.end_time,
                added_at=j.create_time or NOW,
            )
            for j in jobs
        )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(sqlite_url(tmp_path / "gembatch.db"))
    fill(opened, fleet(40))
    yield opened
    opened.dispose()


def live_console() -> Console:
    return Console(
        file=io.StringIO(), width=120, height=40, force_terminal=True, color_system="truecolor"
    )


class CountingView(LiveView):
    frames: int = 0

    def _show(self, frame: Dashboard) -> None:
        self.frames += 1
        super()._show(frame)


def test_live_view_reads_only_changed_jobs_and_restores_the_terminal(store: Store) -> None:
    console = live_console()
    view = LiveView(store, console, clock=lambda: NOW)
    with view:
        first = view._frame
        assert first is not None and len(first.snapshot) == 40
        with store.transaction() as session:
            session.execute(update(Job).where(Job.id == 2).values(state=states.SUCCEEDED))
            session.execute(update(Job).where(Job.id == 9).values(state=states.FAILED))
        view.job_changed(2)
        view.redraw()
        snapshot = view._frame.snapshot  # type: ignore[union-attr]
        # Job 2 was re-read; job 9 changed too, but nobody said so: not re-read yet.
        assert snapshot.jobs[1].state == states.SUCCEEDED
        assert snapshot.jobs[8].state == states.RUNNING
        view.reload()
        view.redraw()
        assert view._frame.snapshot.jobs[8].state == states.FAILED  # type: ignore[union-attr]
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert out.count("\x1b[?1049h") == 1
    # Frames were drawn on the alternate screen, which was left after the last one.
    assert out.index("\x1b[?1049h") < out.rindex("total") < out.index("\x1b[?1049l")
    assert "\x1b[?25h" in out  # cursor shown again


def test_live_view_restores_the_terminal_on_ctrl_c(store: Store) -> None:
    console = live_console()
    view = LiveView(store, console)
    with pytest.raises(KeyboardInterrupt), view:
        raise KeyboardInterrupt
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[?1049l" in out and "\x1b[?25h" in out
    assert view._thread is not None and not view._thread.is_alive()


def test_reports_from_many_threads_are_coalesced_into_few_frames(store: Store) -> None:
    view = CountingView(store, live_console(), min_interval=0.2)
    reporter = LiveReporter(view)
    with view:
        start = view.frames

        def worker(base: int) -> None:
            for job_id in range(base, base + 10):
                reporter.checking(job_id, True)
                reporter.checking(job_id, False)

        threads = [threading.Thread(target=worker, args=(b,)) for b in range(1, 41, 10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        view.set_checking(7, True)
        # Wait (without a wall-clock assertion) until the view caught up.
        for _ in range(100):
            frame_now = view._frame
            if frame_now is not None and frame_now.checking == frozenset({7}):
                break
            threading.Event().wait(0.05)
        assert view._frame is not None and view._frame.checking == frozenset({7})
        # 81 reports; coalescing draws far fewer frames than that.
        assert view.frames - start < 20


def test_countdown_ticks_redraw_from_the_last_frame_without_reading(store: Store) -> None:
    view = CountingView(store, live_console(), clock=lambda: NOW)
    with view:
        view.cycle_done(newly_completed=2, next_in=10.0)
        view.redraw()
        frame_before = view._frame
        store.dispose()  # a tick that touched the database would fail now
        view.countdown(4.0)
        after = view._frame
    assert after is not None and frame_before is not None
    assert after.snapshot is frame_before.snapshot
    assert after.info.next_poll_in == 4.0
    assert after.info.newly_completed == 2


def test_download_progress_reaches_the_frame(store: Store) -> None:
    from gembatch.common.work import WorkItem

    item = WorkItem(
        id=5,
        batch_name="batches/x",
        input_file="batch/0005.jsonl",
        state=states.SUCCEEDED,
        dest_file_name="files/out",
        dest_inline=False,
        uploaded_file_name=None,
        downloaded=False,
        result_path=None,
        result_size=None,
        cleaned=False,
        error_count=0,
    )
    view = LiveView(store, live_console(), clock=lambda: NOW)
    reporter = LiveReporter(view)
    with view:
        reporter.download_progress(item, 1_000_000)
        reporter.download_progress(item, 3_000_000)
        view.redraw()
        info = view._frame.info  # type: ignore[union-attr]
        assert info.downloads[5].done == 3_000_000
        reporter.downloaded(item, Path("x"), 3_000_000)
        view.redraw()
        assert not view._frame.info.downloads  # type: ignore[union-attr]


def test_wants_live_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import pty

    assert not wants_live(io.StringIO())
    main, secondary = pty.openpty()
    try:
        with open(secondary, "w", closefd=False) as tty:
            monkeypatch.setenv("TERM", "xterm-256color")
            assert wants_live(tty)
            monkeypatch.setenv("TERM", "dumb")
            assert not wants_live(tty)
    finally:
        os.close(main)
        os.close(secondary)


def test_db_display_name_is_relative_in_the_working_directory(store: Store) -> None:
    assert db_display_name(store) == "gembatch.db"


# --- gembatch watch without a terminal --------------------------------------------------


def test_watch_without_a_terminal_prints_one_frame(workdir: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    opened = open_store(sqlite_url(workdir / "gembatch.db"))
    fill(opened, fleet(23))
    opened.dispose()
    result = run_cli("watch")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("╭─ gembatch ")
    assert "total 23" in result.output and "read-only" in result.output
    assert "batch/0001.jsonl" in result.output and "3h 45m 30s" in result.output
    assert "\x1b[" not in result.output


def test_poll_without_a_terminal_still_prints_plain_lines(
    emulator,  # type: ignore[no-untyped-def]
    workdir: Path,
    run_cli,
) -> None:
    from jobfactory import make_jobs

    make_jobs(emulator, workdir, 2)
    emulator.finish_all()
    result = run_cli(
        "poll",
        "--base-url",
        emulator.base_url,
        "--interval",
        "0.2",
        env={"GEMINI_API_KEY": "test-key"},
    )
    assert result.exit_code == 0, result.output
    assert "╭" not in result.output and "\x1b[" not in result.output
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d done: ", result.output, re.M)
