"""A :class:`~gembatch.report.figures.Report` on the terminal: rich tables and the timeline.

Pure: nothing here reads the database, the files or the clock.
"""

from __future__ import annotations

from datetime import tzinfo

from rich.console import Group as RichGroup
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from gembatch.common import states
from gembatch.common.timeutil import format_duration
from gembatch.report.figures import Group, JobReport, Report, Spread
from gembatch.report.pricing import ESTIMATE_NOTE
from gembatch.report.resultstats import error_label
from gembatch.view.looks import state_cell
from gembatch.view.timeline import Bar, render_timeline


def _dur(seconds: float | None) -> str:
    return "" if seconds is None else format_duration(seconds)


def _money(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def _num(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _spread_cells(spread: Spread) -> list[str]:
    return [_dur(spread.min), _dur(spread.median), _dur(spread.p90), _dur(spread.max)]


def summary_table(report: Report) -> Table:
    """The run at a glance: durations, span, throughput, outcomes, tokens, cost."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    d = report.durations
    approx = (
        f" ({report.approximate_durations} to last update, ~)"
        if report.approximate_durations
        else ""
    )
    table.add_row(
        "jobs",
        f"{len(report.jobs):,} ({d.count:,} finished{approx})",
    )
    if d.count:
        table.add_row(
            "duration",
            f"min {_dur(d.min)} · median {_dur(d.median)} · p90 {_dur(d.p90)} · max {_dur(d.max)}",
        )
    if report.span_seconds is not None:
        suffix = " so far (jobs in flight)" if report.span_growing else ""
        table.add_row("wall clock", f"{_dur(report.span_seconds)}{suffix}")
    if report.queued.count:
        table.add_row(
            "queued / running",
            f"median {_dur(report.queued.median)} queued, {_dur(report.running.median)} running"
            f" ({report.queued.count:,} jobs seen RUNNING by poll)",
        )
    table.add_row(
        "throughput",
        f"{_rate(report.requests_per_hour)} requests/h"
        f" ({_rate(report.succeeded_per_hour)} succeeded/h)",
    )
    outcome = Text()
    outcome.append(f"{report.succeeded:,} succeeded", style="green")
    outcome.append(" · ")
    outcome.append(f"{report.failed:,} failed", style="red" if report.failed else "")
    if report.not_run:
        outcome.append(" · ")
        outcome.append(f"{report.not_run:,} without result", style="magenta")
    table.add_row("requests", outcome)
    t = report.tokens
    table.add_row(
        "tokens",
        f"{t.prompt:,} prompt · {t.output:,} output · {t.thinking:,} thinking · {t.total:,} total",
    )
    cost = _money(report.cost)
    if report.unpriced_models:
        cost += f" (no price for {', '.join(report.unpriced_models)})"
    table.add_row("est. cost", cost)
    return table


def shown_jobs(report: Report, max_rows: int | None) -> list[JobReport]:
    """All jobs in id order, or the ``max_rows`` that need a look most: jobs with
    failed requests, requests without a result or warnings first (a rich table of
    1,000 rows takes most of a second to lay out; --csv/--json give every row)."""
    if max_rows is None or len(report.jobs) <= max_rows:
        return list(report.jobs)

    def attention(job: JobReport) -> tuple[int, int]:
        trouble = bool(job.failed or job.not_run or job.warnings)
        return (0 if trouble else 1, job.id)

    return sorted(sorted(report.jobs, key=attention)[:max_rows], key=lambda job: job.id)


def jobs_table(
    report: Report, tz: tzinfo | None = None, jobs: list[JobReport] | None = None
) -> Table:
    table = Table(header_style="bold", pad_edge=False, box=None)
    for name, right in (
        ("#", True),
        ("input file", False),
        ("model", False),
        ("state", False),
        ("created", False),
        ("duration", True),
        ("queued", True),
        ("ok", True),
        ("failed", True),
        ("no result", True),
        ("tokens", True),
        ("cost", True),
        ("retry of", True),
    ):
        table.add_column(name, justify="right" if right else "left", no_wrap=name != "input file")
    for job in report.jobs if jobs is None else jobs:
        created = (
            job.create_time.astimezone(tz).strftime("%Y-%m-%d %H:%M") if job.create_time else ""
        )
        failed = job.failed
        table.add_row(
            Text(str(job.id), style="dim"),
            Text(job.input_file),
            Text(_model(job.model)),
            state_cell(job.state),
            created,
            Text(str(job.duration), style="dim" if job.duration.approximate else ""),
            _dur(job.queued_seconds),
            _num(job.succeeded),
            Text(_num(failed), style="red" if failed else ""),
            Text(_num(job.not_run) if job.not_run else "", style="magenta"),
            _num(job.tokens.total) if job.stats is not None else "",
            _money(job.cost) if job.stats is not None else "",
            f"#{job.retry_of}" if job.retry_of else "",
        )
    return table


def _model(model: str | None) -> str:
    return (model or "").removeprefix("models/")


def group_table(title: str, groups: list[Group]) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold", pad_edge=False, box=None)
    for name in (title.split()[-1], "jobs", "requests", "ok", "failed", "no result"):
        table.add_column(name, justify="left" if name == title.split()[-1] else "right")
    for name in ("min", "median", "p90", "max", "tokens", "cost"):
        table.add_column(name, justify="right")
    for group in groups:
        table.add_row(
            _model(group.name),
            _num(group.jobs),
            _num(group.requests),
            _num(group.succeeded),
            _num(group.failed),
            _num(group.not_run),
            *_spread_cells(group.durations),
            _num(group.tokens.total),
            _money(group.cost),
        )
    return table


def errors_table(report: Report, limit: int = 10) -> Table:
    table = Table(title="request errors", title_justify="left", header_style="bold", box=None)
    table.add_column("count", justify="right")
    table.add_column("error")
    for code, message, count in report.errors[:limit]:
        table.add_row(f"{count:,}", Text(error_label(code, message), style="red"))
    if len(report.errors) > limit:
        table.add_row("", Text(f"… {len(report.errors) - limit} more kinds", style="dim"))
    return table


def timeline_bars(report: Report) -> list[Bar]:
    return [
        Bar(
            label=f"#{job.id} {job.input_file}",
            state=job.state,
            start=job.create_time,
            end=job.end if job.terminal else None,
            running_at=job.running_seen_at,
            partial=job.state == states.SUCCEEDED and bool(job.failed),
        )
        for job in report.jobs
        if job.create_time is not None and (job.end is not None or not job.terminal)
    ]


def render_report(
    report: Report,
    *,
    tz: tzinfo | None = None,
    by: tuple[str, ...] = ("model", "state"),
    timeline: bool = True,
    timeline_rows: int | None = 40,
    show_jobs: bool = True,
    job_rows_max: int | None = 50,
) -> RenderableType:
    """Summary, the per-job table, totals by model and state, errors, warnings, timeline."""
    parts: list[RenderableType] = [summary_table(report), Text("")]
    if show_jobs and report.jobs:
        shown = shown_jobs(report, job_rows_max)
        parts.append(jobs_table(report, tz, shown))
        if len(shown) < len(report.jobs):
            parts.append(
                Text(
                    f"… {len(report.jobs) - len(shown):,} more jobs without failures"
                    " (--all shows every job; --csv and --json always do)",
                    style="dim",
                )
            )
        parts.append(Text(""))
    if "model" in by and report.jobs:
        parts += [group_table("by model", report.by_model), Text("")]
    if "state" in by and report.jobs:
        parts += [group_table("by state", report.by_state), Text("")]
    if report.errors:
        parts += [errors_table(report), Text("")]
    if timeline and report.jobs:
        parts += [
            Text("timeline", style="bold"),
            render_timeline(timeline_bars(report), report.now, tz=tz, max_rows=timeline_rows),
            Text(""),
        ]
    for warning in report.warnings:
        parts.append(Text(f"warning: {warning}", style="yellow"))
    parts.append(Text(ESTIMATE_NOTE, style="dim"))
    return RichGroup(*parts)
