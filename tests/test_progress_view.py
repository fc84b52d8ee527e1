"""Per-job progress, the run's time left, stuck and expiring marks, "all failed", the
held highlight of a checked row, and a table whose file names are cut last.

Pure pieces render from hand-built snapshots with a frozen ``now`` into recording
consoles at fixed widths; the live view runs against a real SQLite database with a
fake monotonic clock; the commands run for real (click's runner, or the emulator
through the real google-genai client).
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import Result
from jobfactory import make_jobs
from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.segment import Segment
from sqlalchemy import update

from gembatch.common import states
from gembatch.common.ages import (
    DEFAULT_STUCK_AFTER,
    EXPIRY,
    job_age,
    parse_duration,
    short_span,
)
from gembatch.common.locations import sqlite_url
from gembatch.common.snapshot import JobView, Snapshot
from gembatch.emulator import Emulator
from gembatch.store.database import Store, open_store
from gembatch.store.models import Job
from gembatch.view.attention import RANK_ERROR, attention_rank
from gembatch.view.dashboard import render_dashboard
from gembatch.view.dashboard_summary import DashboardInfo
from gembatch.view.highlight import CheckHighlights
from gembatch.view.lines import LineReporter
from gembatch.view.live import LiveView
from gembatch.view.progress import (
    RateMeter,
    bar_text,
    job_progress,
    run_progress,
    status_eta,
)
from gembatch.view.status import render_status
from gembatch.view.status_json import status_json, status_rows

RunCli = Callable[..., Result]
UTC = timezone.utc
NOW = datetime(2026, 12, 1, 20, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def job(id: int, state: str | None = states.RUNNING, **kw: object) -> JobView:
    kw.setdefault("input_file", f"batch/{id:03d}.jsonl")
    kw.setdefault("create_time", NOW - HOUR)
    return JobView(id=id, state=state, **kw)  # type: ignore[arg-type]


def stats(total: int, ok: int, bad: int) -> dict[str, int]:
    return {
        "api_request_count": total,
        "api_succeeded_count": ok,
        "api_failed_count": bad,
        "api_pending_count": total - ok - bad,
    }


def plain(renderable: RenderableType, width: int = 200, height: int | None = None) -> str:
    con = Console(file=io.StringIO(), width=width, height=height, color_system=None)
    con.print(renderable)
    return con.file.getvalue()  # type: ignore[attr-defined]


def segments(renderable: RenderableType, width: int = 200) -> list[Segment]:
    con = Console(file=io.StringIO(), width=width, force_terminal=True, color_system="truecolor")
    return list(con.render(renderable, con.options))


def style_of(segs: list[Segment], text: str) -> str:
    for seg in segs:
        if seg.text.strip() == text:
            return str(seg.style)
    raise AssertionError(f"no segment {text!r}")


# --- durations and ages ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90m", 5400), ("24h", 86400), ("2d", 172800), ("3600", 3600), ("45s", 45), ("1.5h", 5400)],
)
def test_stuck_after_accepts_units_and_plain_seconds(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "abc", "-5m", "0", "10x", "1e3", "5 minutes", "9" * 30])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_short_spans() -> None:
    assert short_span(timedelta(hours=3, minutes=12, seconds=40)) == "3h12m"
    assert short_span(timedelta(minutes=45)) == "45m"
    assert short_span(timedelta(hours=6)) == "6h"
    assert short_span(timedelta(days=2, hours=3)) == "2d3h"
    assert short_span(timedelta(seconds=30)) == "30s"
    assert short_span(timedelta(seconds=-5)) == "0s"


def test_age_marks_stuck_after_the_threshold_and_expiring_near_48h() -> None:
    young = job_age(job(1, create_time=NOW - 23 * HOUR), NOW)
    assert young is not None and not young.stuck and not young.expiring
    stuck = job_age(job(2, states.PENDING, create_time=NOW - 25 * HOUR), NOW)
    assert stuck is not None and stuck.stuck and not stuck.expiring
    late = job_age(job(3, create_time=NOW - (44 * HOUR + timedelta(minutes=48))), NOW)
    assert late is not None and late.stuck and late.expiring
    assert late.expires_in == timedelta(hours=3, minutes=12)
    # Past the limit and still in flight here: the service is about to expire it.
    over = job_age(job(4, create_time=NOW - 50 * HOUR), NOW)
    assert over is not None and over.expires_in == timedelta(0)
    # The threshold is the caller's.
    assert job_age(job(5, create_time=NOW - 2 * HOUR), NOW, timedelta(minutes=90)).stuck  # type: ignore[union-attr]
    # Finished, never known, or not created yet: no age to speak of.
    assert job_age(job(6, states.SUCCEEDED, create_time=NOW - 50 * HOUR), NOW) is None
    assert job_age(job(7, None, create_time=NOW - 50 * HOUR), NOW) is None
    assert job_age(job(8, create_time=None), NOW) is None
    assert DEFAULT_STUCK_AFTER == 24 * HOUR and EXPIRY == 48 * HOUR


# --- progress and the time left ---------------------------------------------------------------


def test_job_progress_is_the_apis_counts_or_nothing() -> None:
    assert job_progress(job(1)) is None
    counts = job_progress(job(2, **stats(1000, 409, 3)))
    assert counts is not None and counts.done == 412
    assert counts.as_json() == {"total": 1000, "succeeded": 409, "failed": 3, "pending": 588}
    # Zero counters are left out on the wire; the total alone still says 0 done.
    only_total = job_progress(job(3, api_request_count=7))
    assert only_total is not None and only_total.as_json() == {
        "total": 7,
        "succeeded": 0,
        "failed": 0,
        "pending": 7,
    }


def test_run_progress_counts_ended_jobs_whole_and_running_jobs_by_their_counts() -> None:
    run = run_progress(
        [
            job(1, states.SUCCEEDED, request_count=100),  # no stats: whole, done
            job(2, states.FAILED, request_count=10),  # failed as a batch: all failed
            job(3, **stats(1000, 400, 12)),
            job(4, states.PENDING, request_count=50),  # not started, no stats
        ]
    )
    assert (run.total, run.done, run.failed, run.remaining) == (1160, 522, 22, 638)
    assert run.reported
    assert not run_progress([job(1, request_count=5)]).reported


def test_rate_meter_needs_two_observations_with_progress_then_smooths() -> None:
    meter = RateMeter(smoothing=0.5)
    assert meter.eta(100) is None
    meter.observe(0.0, 0)
    meter.observe(5.0, 0)  # a read with nothing new adds nothing
    assert meter.rate is None and meter.eta(100) is None
    meter.observe(10.0, 100)  # 100 in 10 s
    assert meter.rate == pytest.approx(10.0)
    assert meter.eta(50) == pytest.approx(5.0)
    meter.observe(12.0, 100)
    meter.observe(20.0, 300)  # 200 in the 10 s since the last growth: 20/s, halfway
    assert meter.rate == pytest.approx(15.0)
    assert meter.eta(0) == 0.0


def test_status_eta_is_the_slowest_running_job_at_its_own_rate() -> None:
    jobs = [
        job(1, create_time=NOW - HOUR, **stats(1000, 500, 0)),  # one more hour
        job(2, create_time=NOW - 2 * HOUR, **stats(100, 25, 0)),  # six more hours
        job(3, states.PENDING, create_time=NOW - HOUR, **stats(10, 0, 0)),  # no rate yet
    ]
    assert status_eta(jobs, NOW) == pytest.approx(6 * 3600)
    assert status_eta([job(4)], NOW) is None


def test_bars_are_richs_block_bars_quantised_to_eighths() -> None:
    assert bar_text(0, 100, 8) == " " * 8
    assert bar_text(100, 100, 8) == "█" * 8
    half = bar_text(412, 1000, 8)
    assert len(half) == 8 and half.startswith("███") and half.rstrip() != half


# --- the table: progress, marks, all failed -------------------------------------------------


def test_running_rows_show_a_bar_done_of_total_and_failures() -> None:
    snapshot = Snapshot.from_jobs(
        [job(1, request_count=1000, **stats(1000, 409, 3)), job(2, states.SUCCEEDED)]
    )
    text = plain(render_status(snapshot, NOW, tz=UTC), width=200)
    header, _, row1, row2, *_ = text.splitlines()
    assert "progress" in header
    assert re.search(r"███\S?\s+412/1,000 ✗3", row1), row1
    assert "/" not in row2.split("succeeded")[1]  # finished: no progress cell
    segs = segments(render_status(snapshot, NOW, tz=UTC))
    assert "red" in style_of(segs, "✗3")
    # The run's line: requests done of all, and the time left from each job's own rate.
    assert re.search(r"requests .*\b412/1,000 \(41%\) · ✗ 3 failed · about 1h 25m left", text)
    assert "from each running job's rate" in text


def test_no_progress_column_without_counts() -> None:
    text = plain(render_status(Snapshot.from_jobs([job(1), job(2, states.SUCCEEDED)]), NOW))
    assert "progress" not in text.splitlines()[0] and "\nrequests " not in text


def test_stuck_and_expiring_jobs_are_marked_in_the_table() -> None:
    snapshot = Snapshot.from_jobs(
        [
            job(1, create_time=NOW - 2 * HOUR),
            job(2, states.PENDING, create_time=NOW - 25 * HOUR),
            job(3, create_time=NOW - (44 * HOUR + timedelta(minutes=48))),
        ]
    )
    text = plain(render_status(snapshot, NOW, tz=UTC))
    rows = {int(line.split()[0]): line for line in text.splitlines()[2:5]}
    assert "stuck" not in rows[1] and "expires" not in rows[1]
    assert "○ pending · stuck" in rows[2]
    assert "● running · expires in 3h12m" in rows[3]
    segs = segments(render_status(snapshot, NOW, tz=UTC))
    assert style_of(segs, "● running · expires in 3h12m") == "bold magenta"
    assert style_of(segs, "○ pending · stuck") == "bold yellow"
    # A shorter threshold marks the two-hour-old job too.
    text = plain(render_status(snapshot, NOW, tz=UTC, stuck_after=timedelta(minutes=90)))
    assert "● running · stuck" in text


def test_a_succeeded_job_with_every_request_failed_reads_as_a_failure() -> None:
    failed_all = job(1, states.SUCCEEDED, end_time=NOW, **stats(3, 0, 3))
    partly = job(2, states.SUCCEEDED, end_time=NOW, **stats(3, 1, 2))
    snapshot = Snapshot.from_jobs([failed_all, partly])
    text = plain(render_status(snapshot, NOW, tz=UTC))
    row1 = next(line for line in text.splitlines() if "batch/001" in line)
    row2 = next(line for line in text.splitlines() if "batch/002" in line)
    assert "✗ all failed" in row1 and "✓" not in row1
    assert "✓ succeeded" in row2
    assert text.splitlines()[-1].endswith("1 ✓ succeeded · 1 ✗ all failed")
    segs = segments(render_status(snapshot, NOW, tz=UTC))
    assert style_of(segs, "✗ all failed") == "red"
    # The dashboard counts it with the failures; a folded view shows it with the errors.
    frame = plain(render_dashboard(snapshot, NOW, tz=UTC, height=20), width=120, height=20)
    assert "✓ 1 succeeded · ✗ 1 failed" in frame
    assert attention_rank(failed_all, NOW, frozenset()) == RANK_ERROR
    assert "1 ✗ all failed" in plain(render_status(snapshot, NOW, max_rows=0))


# --- the table fits, the file name is cut last ---------------------------------------------

NAMES = ("european-capitals", "geography-questions", "rivers-of-the-world", "mountain-heights")


def fleet(n: int = 23) -> list[JobView]:
    """A run like the one issue 13 saw: ~40-character names, a mix of states, errors,
    all started in the last day (nothing stuck)."""
    jobs = []
    for i in range(1, n + 1):
        state = (states.SUCCEEDED, states.RUNNING, states.PENDING, states.FAILED)[i % 4]
        created = NOW - timedelta(minutes=50 * i)
        extra: dict[str, object] = {}
        if state == states.RUNNING:
            extra = stats(1000, 40 * i, i % 4)
        if state == states.FAILED:
            extra["remote_error"] = "INVALID_ARGUMENT: request 3 is not valid JSON"
        jobs.append(
            job(
                i,
                state,
                input_file=f"inputs/part-{i:03d}-{NAMES[i % 4]}.jsonl",
                request_count=1000,
                create_time=created,
                end_time=created + HOUR if states.is_terminal(state) else None,
                **extra,
            )
        )
    return jobs


def table_lines(text: str, n: int) -> list[str]:
    return [line for line in text.splitlines() if re.search(r"\.jsonl\b", line)][:n]


@pytest.mark.parametrize("width", [80, 110, 160])
def test_status_table_fits_and_keeps_file_names(width: int) -> None:
    jobs = fleet()
    text = plain(render_status(Snapshot.from_jobs(jobs), NOW, tz=UTC), width=width)
    lines = text.splitlines()
    # Nothing wraps: header, rule, one line per job, all within the width.
    assert all(cell_len(line) <= width for line in lines[: len(jobs) + 2]), lines
    rows = table_lines(text, len(jobs))
    assert len(rows) == len(jobs) and all(re.match(r"\s*\d+ ", row) for row in rows)
    if width >= 110:
        for j in jobs:
            assert j.input_file in text
    else:
        # Cut from the left: each file's own name survives.
        for j in jobs:
            assert j.input_file.split("/")[-1] in text
    assert all(re.search(r"\d+s$", row.rstrip()) or "INVALID" in row for row in rows)


@pytest.mark.parametrize(("width", "height"), [(80, 40), (110, 40), (160, 40)])
def test_dashboard_table_fits_and_keeps_file_names(width: int, height: int) -> None:
    jobs = fleet()
    frame = render_dashboard(
        Snapshot.from_jobs(jobs), NOW, tz=UTC, height=height, info=DashboardInfo(db_name="x.db")
    )
    text = plain(frame, width=width, height=height)
    lines = text.splitlines()
    assert len(lines) <= height and all(cell_len(line) <= width for line in lines)
    rows = table_lines(text, len(jobs))
    assert len(rows) == len(jobs)
    if width >= 110:
        # Issue 13: at 110 columns the names were cut to 16 characters while both
        # times kept their year. Now the times give way first.
        for j in jobs:
            assert j.input_file in text, text
        assert "progress" in lines[1]
        assert len(re.findall(r"\d+/1,000 ✗", text)) == 6
    if width >= 160:
        assert re.search(r"[█▏▎▍▌▋▊▉]+\s+\d+/1,000", text), text
    assert "requests " in text  # the run's progress line


def test_times_shrink_before_the_name_is_cut() -> None:
    jobs = fleet()
    wide = plain(render_status(Snapshot.from_jobs(jobs), NOW, tz=UTC), width=250).splitlines()[0]
    assert "ended" in wide and "created" in wide and "requests" in wide
    tight = plain(render_status(Snapshot.from_jobs(jobs), NOW, tz=UTC), width=110)
    header = tight.splitlines()[0]
    assert "ended" not in header  # the end time goes before the create time
    assert f"{NOW:%Y}-" not in tight


# --- JSON and CSV -----------------------------------------------------------------------------


def test_status_json_carries_progress_marks_and_the_runs_time_left() -> None:
    snapshot = Snapshot.from_jobs(
        [
            job(1, request_count=1000, **stats(1000, 409, 3)),
            job(2, states.PENDING, create_time=NOW - 45 * HOUR),
            job(3, states.SUCCEEDED, end_time=NOW, **stats(3, 0, 3)),
        ]
    )
    data = status_json(snapshot, NOW)
    json.dumps(data)
    first, second, third = data["jobs"]
    assert first["progress"] == {"total": 1000, "succeeded": 409, "failed": 3, "pending": 588}
    assert first["stuck"] is False and first["expires_in_s"] is None
    assert first["eta_seconds"] == pytest.approx(588 / (412 / 3600), rel=1e-3)
    assert second["progress"] is None
    assert second["stuck"] is True and second["expiring"] is True
    assert second["expires_in_s"] == 3 * 3600
    assert third["all_failed"] is True and third["state"] == states.SUCCEEDED
    assert third["stuck"] is False and third["age_seconds"] is None
    assert data["progress"]["total"] == 1003 and data["progress"]["done"] == 415
    assert data["progress"]["eta_basis"].startswith("requests done by each running job")
    # The keys scripts already read are all still there.
    for key in ("id", "state", "state_label", "duration", "duration_seconds", "terminal"):
        assert key in first


def test_status_csv_spreads_progress_into_flat_columns() -> None:
    snapshot = Snapshot.from_jobs([job(1, **stats(10, 4, 1)), job(2)])
    columns, rows = status_rows(snapshot, NOW)
    listed = list(rows)
    assert "progress" not in columns
    index = {name: columns.index(name) for name in columns}
    for key, value in {"total": 10, "succeeded": 4, "failed": 1, "pending": 5}.items():
        assert listed[0][index[f"progress_{key}"]] == value
        assert listed[1][index[f"progress_{key}"]] is None
    assert len(columns) == len(listed[0])


# --- poll's plain lines ------------------------------------------------------------------------


def test_plain_lines_say_stuck_and_expiring_once_per_job() -> None:
    out = io.StringIO()
    reporter = LineReporter(out, clock=lambda: "T")
    jobs = [
        job(1, create_time=NOW - 25 * HOUR, batch_name="batches/one"),
        job(2, create_time=NOW - 2 * HOUR),
        job(3, states.PENDING, create_time=NOW - 44 * HOUR),
    ]
    reporter.ages(jobs, NOW)
    reporter.ages(jobs, NOW + timedelta(minutes=1))  # the next cycle: nothing new to say
    lines = out.getvalue().splitlines()
    assert lines == [
        "T batch/001.jsonl: stuck: running for 1d 1h 0m 0s, more than 1d (batches/one)",
        "T batch/003.jsonl: stuck: pending for 1d 20h 0m 0s, more than 1d",
        "T batch/003.jsonl: expires in 4h: the service ends a batch not done 48h after creation",
    ]
    # Later the first job comes close to the limit too (said once more, for that),
    # and the second one is stuck.
    reporter.ages(jobs, NOW + timedelta(hours=22, minutes=30))
    new = out.getvalue().splitlines()[3:]
    assert len(new) == 2, new
    assert "batch/001.jsonl: expires in 30m" in new[0]
    assert "batch/002.jsonl: stuck: running for 1d 0h 30m 0s" in new[1]


# --- the commands ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["status", "watch", "poll"])
@pytest.mark.parametrize("value", ["soon", "0", "-1h", "5y"])
def test_a_bad_stuck_after_is_a_usage_error(
    command: str, value: str, tmp_path: Path, run_cli: RunCli
) -> None:
    db = tmp_path / "jobs.db"
    result = run_cli("--db", str(db), command, "--stuck-after", value)
    assert result.exit_code == 2, result.output
    assert "--stuck-after" in result.output and "duration" in result.output
    assert "Traceback" not in result.output


def add_rows(store: Store) -> None:
    with store.transaction() as session:
        session.add_all(
            [
                Job(
                    input_file="batch/old.jsonl",
                    batch_name="batches/old",
                    state=states.RUNNING,
                    request_count=10,
                    create_time=datetime.now(UTC) - timedelta(hours=3),
                    api_request_count=10,
                    api_succeeded_count=4,
                    api_failed_count=1,
                    api_pending_count=5,
                    added_at=NOW,
                ),
                Job(
                    input_file="batch/bad.jsonl",
                    batch_name="batches/bad",
                    state=states.SUCCEEDED,
                    request_count=2,
                    create_time=datetime.now(UTC) - HOUR,
                    end_time=datetime.now(UTC),
                    api_request_count=2,
                    api_succeeded_count=0,
                    api_failed_count=2,
                    api_pending_count=0,
                    added_at=NOW,
                ),
            ]
        )


def test_status_command_marks_stuck_jobs_and_prints_json_and_csv(
    tmp_path: Path, run_cli: RunCli
) -> None:
    db = tmp_path / "jobs.db"
    store = open_store(sqlite_url(db))
    try:
        add_rows(store)
    finally:
        store.dispose()
    text = run_cli("--db", str(db), "status", "--stuck-after", "2h")
    assert text.exit_code == 0, text.output
    assert "● running · stuck" in text.output and "5/10 ✗1" in text.output
    assert "✗ all failed" in text.output
    data = json.loads(run_cli("--db", str(db), "status", "--json", "--stuck-after", "4h").output)
    assert [j["stuck"] for j in data["jobs"]] == [False, False]
    assert data["jobs"][0]["progress"] == {"total": 10, "succeeded": 4, "failed": 1, "pending": 5}
    assert data["jobs"][1]["all_failed"] is True
    assert data["stuck_after_seconds"] == 4 * 3600
    csv_out = run_cli("--db", str(db), "status", "--csv").output.splitlines()
    header = csv_out[0].split(",")
    assert "progress_total" in header and "stuck" in header and len(csv_out) == 3
    both = run_cli("--db", str(db), "status", "--json", "--csv")
    assert both.exit_code == 2


def test_poll_plain_lines_say_stuck_once_per_job_through_a_run(
    workdir: Path, run_cli: RunCli
) -> None:
    # Real batches through the real SDK: running for about a second, polled every
    # 0.1 s. Any age passes a threshold of a millisecond, so each job is said to be
    # stuck after the first cycle, and never again in the same run.
    with Emulator(pending_s=0.0, running_s=1.0, jitter_s=0.0) as emulator:
        make_jobs(emulator, workdir, 2)
        result = run_cli(
            "poll",
            "--base-url",
            emulator.base_url,
            "--interval",
            "0.1",
            "--plain",
            "--stuck-after",
            "0.001",
            env={"GEMINI_API_KEY": "test-key"},
        )
    assert result.exit_code == 0, result.output
    cycles = [line for line in result.output.splitlines() if " cycle: " in line]
    stuck = [line for line in result.output.splitlines() if ": stuck: " in line]
    assert len(cycles) >= 2, result.output
    assert sorted(re.search(r"batch/\d+", s).group(0) for s in stuck) == [  # type: ignore[union-attr]
        "batch/000",
        "batch/001",
    ], result.output


# --- the live view: the held highlight and the observed rate -----------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_highlights_are_held_after_the_check_ends() -> None:
    clock = FakeClock()
    marks = CheckHighlights(hold=0.6, monotonic=clock)
    marks.start(1)
    assert marks.shown() == {1} and marks.next_change() is None
    marks.end(1)
    assert marks.shown() == {1} and marks.active() == frozenset()
    assert marks.next_change() == pytest.approx(0.6)
    clock.now += 0.5
    assert marks.shown() == {1}
    marks.start(2)
    clock.now += 0.2
    assert marks.shown() == {2} and marks.next_change() is None
    marks.end(2)
    marks.clear()
    assert marks.shown() == frozenset()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = open_store(sqlite_url(tmp_path / "gembatch.db"))
    yield opened  # type: ignore[misc]
    opened.dispose()


def live_console() -> Console:
    return Console(file=io.StringIO(), width=120, height=30, force_terminal=True)


def test_live_view_keeps_a_checked_row_red_after_the_check(store: Store) -> None:
    with store.transaction() as session:
        session.add(Job(input_file="batch/a.jsonl", state=states.RUNNING, added_at=NOW))
    clock = FakeClock()
    view = LiveView(store, live_console(), db_name="x", monotonic=clock)
    view.redraw()
    view.set_checking(1, True)
    view.set_checking(1, False)  # a check of a few milliseconds
    view.redraw()
    assert view._frame is not None and view._frame.held == {1}
    assert "on red" in style_of(segments(view._frame, 120), "batch/a.jsonl")
    clock.now += 0.3
    view.redraw()
    assert view._frame.held == {1}
    clock.now += 0.4
    view.redraw()
    assert view._frame.held == frozenset() and view._frame.checking == frozenset()
    assert "on red" not in style_of(segments(view._frame, 120), "batch/a.jsonl")


def test_the_redraw_thread_redraws_when_the_hold_runs_out(store: Store) -> None:
    with store.transaction() as session:
        session.add(Job(input_file="batch/a.jsonl", state=states.RUNNING, added_at=NOW))
    clock = FakeClock()
    with LiveView(store, live_console(), db_name="x", monotonic=clock, min_interval=0) as view:
        view.set_checking(1, True)
        view.set_checking(1, False)
        until = time.monotonic() + 10
        while time.monotonic() < until and (view._frame is None or not view._frame.held):
            time.sleep(0.01)
        assert view._frame is not None and view._frame.held == {1}
        clock.now += 1.0  # the hold is over: no report comes, the thread must notice
        while time.monotonic() < until and view._frame.held:
            time.sleep(0.01)
        assert view._frame.held == frozenset()


def test_watch_estimates_the_time_left_from_the_rate_it_sees(store: Store) -> None:
    with store.transaction() as session:
        session.add(
            Job(
                input_file="batch/a.jsonl",
                state=states.RUNNING,
                request_count=1000,
                added_at=NOW,
                **stats(1000, 0, 0),
            )
        )
    clock = FakeClock()
    console = live_console()
    view = LiveView(store, console, mode="watch", db_name="x", monotonic=clock)
    view.redraw()
    assert "time left —" in plain(view._frame, width=120, height=30)  # type: ignore[arg-type]
    for done in (100, 300):
        clock.now += 10
        with store.transaction() as session:
            session.execute(update(Job).values(api_succeeded_count=done))
        view.reload()
        view.redraw()
    # 10/s, then 20/s: smoothed to 13/s; 700 left: 53.8 s.
    frame = plain(view._frame, width=120, height=30)  # type: ignore[arg-type]
    assert re.search(r"300/1,000 \(30%\) · 13/s · about 54s left", frame), frame


def test_a_run_whose_every_request_failed_reads_as_a_failure_end_to_end(
    workdir: Path, run_cli: RunCli
) -> None:
    # The emulator fails every request of the batch and still calls it SUCCEEDED,
    # counting them in batchStats, as the live service does.
    with Emulator(pending_s=0.0, running_s=0.0, jitter_s=0.0, request_error_rate=1.0) as emulator:
        make_jobs(emulator, workdir, 1, requests=3)
        polled = run_cli(
            "poll",
            "--once",
            "--plain",
            "--base-url",
            emulator.base_url,
            env={"GEMINI_API_KEY": "test-key"},
        )
    assert polled.exit_code == 1, polled.output
    assert "all 3 of its requests failed" in polled.output
    shown = run_cli("status")
    row = next(line for line in shown.output.splitlines() if "batch/000.jsonl" in line)
    assert "✗ all failed" in row and "✓" not in row
    data = json.loads(run_cli("status", "--json").output)
    assert data["jobs"][0]["all_failed"] is True
    assert data["jobs"][0]["progress"] == {"total": 3, "succeeded": 0, "failed": 3, "pending": 0}
